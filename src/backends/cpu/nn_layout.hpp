// kiln_layout = "NHWC" on the CPU (the reference): the node's tensors are permuted to NCHW, the
// NCHW kernel runs, and the result is permuted back. Simple and exact; not a fast path.
#pragma once

#include <initializer_list>

#include "backends/cpu/cpu_kernel.hpp"

namespace kiln::cpu::nn {

// Runs `nchw_kernel` with input 0, the inputs listed in `layout_inputs` (all 4-D: [N, H, W, C] or
// Conv's [M, kH, kW, C/group]) and output 0 permuted to NCHW order. Other inputs pass unchanged.
void run_nhwc_as_nchw(KernelContext& ctx, std::initializer_list<size_t> layout_inputs,
                      KernelFn nchw_kernel);

}  // namespace kiln::cpu::nn
