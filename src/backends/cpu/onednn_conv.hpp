// Convolution on oneDNN: the CPU backend's fast path for Conv, a tactic beside the reference
// kernel (conv_kernels.cpp chooses between them) and checked against it by
// tests/unit/onednn_conv_test.cpp. The oneDNN code lives in libkiln_cpu_onednn.so (built when
// kiln found oneDNN: KILN_WITH_ONEDNN), which these calls load from the runtime's directory on
// first use; where it (or libdnnl) is missing every call here declines and the reference runs.
#pragma once

#include <string>

#include "backends/cpu/cpu_kernel.hpp"

namespace kiln::cpu::onednn {

// KILN_CPU_CONV: "reference" forces the reference kernels; "onednn" or unset (kAuto) runs oneDNN
// where kiln has it and it takes the call (try_run_conv), else the reference.
enum class ConvChoice { kAuto, kReference, kOnednn };

// Reads KILN_CPU_CONV (each call, so tests may switch it). Throws kInvalidArgument naming the
// variable and the accepted values for anything else.
ConvChoice requested_conv_choice();

// KILN_CPU_MATMUL, the same for MatMul (try_run_matmul).
ConvChoice requested_matmul_choice();

// True when libkiln_cpu_onednn.so (and the libdnnl it needs) loaded. Never throws.
bool available();

// One line for logs and tools: "oneDNN 2.6.3, ISA avx512_core_bf16" (the instruction set oneDNN
// dispatches to on this CPU, which ONEDNN_MAX_CPU_ISA may lower), or "oneDNN: not available (<why>)".
std::string describe();

// Runs Conv (with the builder's fused residual input 3 and kiln_activation Relu) on oneDNN and
// returns true, or returns false without touching the output when oneDNN does not take the call:
// kiln built without it, no layer state slot (ctx.state null), a dtype other than float32, an
// empty tensor, more than three spatial axes, or no oneDNN implementation for the case. The
// primitive (and the constant weights reordered into its layout) is built on a layer's first call
// and rebuilt when its shapes change, kept in *ctx.state. Throws kiln::Error naming the node for
// calls the reference rejects too (mismatched shapes), and kInternal when oneDNN fails to run.
bool try_run_conv(KernelContext& ctx);

// Runs MatMul A [.., M, K] x B [K, N] (+ the builder's fused bias input 2 and kiln_activation
// Relu) on oneDNN as one [rows, K] x [K, N] product with B packed once per context into oneDNN's
// blocked layout, and returns true; or returns false without touching the output: no layer state,
// B not an engine weight, a dtype other than float32, other shapes (batched B, vectors), or no
// oneDNN implementation. Relu runs as kiln's own pass (NaN stays NaN). Gemm too, where it is such
// a product: transA = 0, alpha = 1, B [K, N] or (transB) [N, K], C absent or a row of N with
// beta = 1. Throws kInternal when oneDNN fails to run.
bool try_run_matmul(KernelContext& ctx);

}  // namespace kiln::cpu::onednn
