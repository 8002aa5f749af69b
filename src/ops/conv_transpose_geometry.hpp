// ConvTranspose's per-axis geometry (ONNX opsets 11-21), shared by its infer function and the
// CPU and CUDA kernels so that every one of them resolves pads and output extents the same way.
//
// Per spatial axis, the "full" output of a transposed convolution has extent
//   F = stride * (in - 1) + (kernel - 1) * dilation + 1,
// input position i and kernel tap k landing on full position i * stride + k * dilation. The op's
// output is full[pad_begin .. pad_begin + out), positions past F holding zeros (plus the bias):
//   out = F + output_padding - pad_begin - pad_end.
// With output_shape the output extent is given and the pads follow from it (total = F +
// output_padding - output_shape, clamped at 0 as ONNX Runtime does): SAME_UPPER puts total / 2 at
// the beginning, every other auto_pad puts total - total / 2 there. With SAME_UPPER/SAME_LOWER and
// no output_shape, the target is in * stride and the pads split the same way; where the full
// extent plus output_padding falls short of it, out is that shorter extent (ONNX Runtime's rule).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"
#include "ops/nn_window.hpp"

namespace kiln::ops::nn {

// The window fields mean what they mean for Conv (`output` is Y's extent), plus output_padding.
struct ConvTransposeGeometry : WindowGeometry {
  std::vector<int64_t> output_padding;
};

// Reads and validates strides, dilations, pads, output_padding, output_shape and auto_pad for
// `input_spatial` (X's spatial dims, may hold kDynamicDim) and `kernel` (W's spatial dims, or the
// kernel_shape attribute). Throws kInvalidArgument naming the node, the attribute, what was
// expected and what it got.
ConvTransposeGeometry resolve_conv_transpose(const NodeLabel& node, const AttributeMap& attrs,
                                             std::span<const int64_t> input_spatial,
                                             std::vector<int64_t> kernel);

}  // namespace kiln::ops::nn
