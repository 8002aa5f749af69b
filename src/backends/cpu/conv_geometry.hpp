// The checked geometry of one Conv call, shared by the reference kernel (conv_kernels.cpp) and the
// oneDNN path (onednn_conv.cpp) so both accept and reject exactly the same calls.
#pragma once

#include <cstdint>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/nn_window3d.hpp"

namespace kiln::cpu::nn {

struct ConvGeometry {
  int64_t batch = 0;
  int64_t channels = 0;      // of X
  int64_t out_channels = 0;  // of W and Y
  int64_t group = 1;
  bool has_bias = false;
  Window3d window;
};

// Checks an NCHW-ordered Conv call (X [N, C, spatial...], W [M, C/group, k...], optional B [M],
// output 0 as the op infers it) and returns its geometry. Throws kiln::Error naming the node:
// kUnsupported for non-float32 tensors or more than three spatial axes, kInvalidArgument for
// shapes that do not match.
ConvGeometry check_conv_call(const KernelContext& ctx);

// Conv's and ConvTranspose's shared operand checks: X, W and Y float32, and B (input 2) when
// present. Returns whether B is present; throws naming the node otherwise.
bool require_float32_conv_operands(const KernelContext& ctx);

}  // namespace kiln::cpu::nn
