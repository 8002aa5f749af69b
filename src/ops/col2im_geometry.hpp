// Col2Im (opset 18) geometry, shared by its infer function and the CPU kernel.
//
// Input [N, C * prod(block_shape), L] holds, per sliding block of the image, the values of every
// window position; output [N, C, image_shape...] sums each of them into the image position it came
// from: block b (row-major over the block grid) and window position k (row-major over
// block_shape) land on b * stride - pad_begin + k * dilation per axis, when inside the image.
#pragma once

#include <cstdint>
#include <vector>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

struct Col2ImGeometry {
  std::vector<int64_t> image;      // per spatial axis: the output's extent
  std::vector<int64_t> block;      // per spatial axis: the window's extent
  std::vector<int64_t> strides;
  std::vector<int64_t> dilations;
  std::vector<int64_t> pad_begin;
  std::vector<int64_t> blocks;     // per spatial axis: how many sliding blocks fit
  int64_t channels = kDynamicDim;  // C, kDynamicDim when input dim 1 is unknown
  Shape output;                    // [N, C, image...]
};

// Reads strides, dilations and pads (each entry >= 1, pads >= 0) for image_shape and block_shape
// (one entry per spatial axis, each >= 1) and checks `input` (rank 3, dims maybe kDynamicDim)
// against them: dim 1 divisible by prod(block_shape), dim 2 equal to the number of sliding blocks,
// at least one block per axis. Throws kInvalidArgument naming the node and the attribute or input.
Col2ImGeometry resolve_col2im(const NodeLabel& node, const AttributeMap& attrs, const Shape& input,
                              const std::vector<int64_t>& image_shape,
                              const std::vector<int64_t>& block_shape);

}  // namespace kiln::ops::nn
