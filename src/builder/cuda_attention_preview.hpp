// A test hook: builds a CPU engine from a graph after the cuda target's attention passes
// (precision lowering, Attention lowering and fusion into FusedAttention, QKV packing), so tests
// on machines without a GPU can see which attention forms fuse (the engine's layers) and run the
// fused graph on the CPU reference kernels against the unfused one. It mirrors the attention part
// of builder.cpp's lower_for_cuda; the engine is for the CPU backend, which runs every op the
// passes leave, fp16/bf16 included.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ir/graph.hpp"
#include "kiln/kiln.h"

namespace kiln::builder {

enum class AttentionPreview {
  kNone,         // precision lowering only: the unfused reference
  kLowered,      // ONNX Attention lowered to plain ops (attention_lowering.hpp), nothing fused
  kTensorCores,  // fuse what the CUDA kernel runs, as `--target cuda` does
  kAny,          // fuse every form the matcher recognises (the CPU kernel runs them all)
};

// optimize_graph, then lower_precision to `precision` (float16/bfloat16; float32 leaves the
// graph's dtypes), then per `mode` lower_attention, or fuse_attention (which lowers first) and
// pack_qkv_projections with dead-code elimination after each; emitted and serialised for the CPU
// backend. Throws what the passes and the emitter throw.
std::vector<uint8_t> build_cpu_engine_with_cuda_attention_passes(ir::Graph graph, DType precision,
                                                                 AttentionPreview mode);

}  // namespace kiln::builder

extern "C" {
/* The same from ONNX bytes, for Python tests through ctypes (not part of kiln's public API).
 * `config_json`: NULL or {"precision": "fp32"|"fp16"|"bf16", "attention":
 * "none"|"lowered"|"tensor_cores"|"any"} (defaults fp16, tensor_cores). On success *engine points
 * to *size bytes to free with kiln_free. */
kiln_status kiln_testing_build_with_cuda_attention_passes(const void* onnx, size_t onnx_size,
                                                          const char* config_json, void** engine,
                                                          size_t* size);
}
