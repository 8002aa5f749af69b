// kiln builder, C++ API: compile an ONNX model into an engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/types.hpp"

namespace kiln {

enum class Precision { kFp32, kTf32, kFp16, kBf16 };

// The range of one input's dimensions for an engine with dynamic dimensions. Every dim of an
// input's ONNX shape that is symbolic (dim_param) or unknown must be covered by a profile, or by
// BuilderConfig::default_dynamic_range.
struct InputProfile {
  std::string name;
  Shape min, opt, max;
};

struct BuilderConfig {
  Precision precision = Precision::kFp32;
  std::string target = "cpu";        // "cpu" or "cuda"
  int device = 0;                    // cuda: the GPU whose architecture the engine targets
  // Bytes of scratch memory kernels may use. Only the default is accepted (kUnsupported otherwise):
  // the runtime offers kernels a fixed 1 GiB that an engine cannot change yet.
  uint64_t workspace_limit = uint64_t{1} << 30;
  // The build's memory ceiling in bytes: no tensor whose shape is static after optimisation, and
  // no static activation arena, may be larger (the build fails naming the node and the size).
  // 0: $KILN_MEMORY_LIMIT when set (e.g. "8G"), else this machine's physical memory. Constant
  // folding keeps ops whose outputs exceed 16 MiB in the engine instead of materialising them.
  uint64_t memory_limit = 0;
  std::vector<InputProfile> profiles;
  // Range given to dynamic dims that no profile covers: min, opt, max.
  int64_t default_dynamic_min = 1, default_dynamic_opt = 1, default_dynamic_max = 4096;
  std::string metadata_json = "{}";  // recorded in the engine; must be a JSON object
  // cuda: a timing-cache file ("" for none). Tactics found in it are reused instead of timed; the
  // tactics timed during the build are added to it (the file is created when missing).
  std::string timing_cache;
  // cuda: the directory of the on-disk cache of compiled generated kernels, reused across builds.
  // "" means the default ($KILN_KERNEL_CACHE, else $XDG_CACHE_HOME/kiln/kernels, else
  // ~/.cache/kiln/kernels); "off" disables it (every build compiles its kernels).
  std::string kernel_cache;
  // Records in the engine's metadata (under "kiln_build": "passes" and "fusion") what each pass
  // changed and, per node, which fusion group it joined or why it joined none (kiln build --explain).
  bool explain = false;
  // cuda: build for compute capability sm_<cuda_arch> (e.g. 90 for H100/H200) on a machine without
  // that GPU, or without any: passes and generated kernels are the same, but no candidate is timed,
  // so GEMM/convolution/generated-kernel tactics are chosen when the engine is first run on its
  // GPU. 0 (default): build on GPU `device` and time the tactics there.
  int cuda_arch = 0;
  // cuda: layers that no CUDA kernel of this kiln takes (an op, a dtype such as uint32 or float8,
  // an attribute choice) run on the host with the CPU kernel, their data copied between the GPU
  // and host memory; such an engine synchronises at each of them and runs without CUDA graphs.
  // They are listed in the metadata (kiln_build.host_layers). false: such a layer fails the build
  // (kUnsupported, listing every one and why the GPU does not run it).
  bool allow_host_layers = true;
};

// Imports, optimises and emits an engine. Throws kiln::Error: kNotFound/kIoError (paths),
// kCorruptFile (unparsable ONNX), kUnsupported (listing every unsupported op of the model with
// node name, op type, domain and opset), kInvalidArgument (shapes that do not fit, bad config).
std::vector<uint8_t> build_engine_from_onnx_file(const std::string& onnx_path, const BuilderConfig& config);
// `base_dir` is where external data files are looked up ("" for none).
std::vector<uint8_t> build_engine_from_onnx_bytes(const void* data, size_t size, const std::string& base_dir,
                                                  const BuilderConfig& config);

}  // namespace kiln
