// DeformConv's geometry, shared by the op's infer function and the CPU kernel.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/nn_common.hpp"
#include "ops/nn_window.hpp"

namespace kiln::ops::nn {

struct DeformConvGeometry {
  WindowGeometry window;   // 2 spatial axes: kernel, strides, dilations, pads, output extents
  int64_t group = 1;
  int64_t offset_group = 1;
};

// Checks DeformConv's attributes and its inputs' shapes against each other: X [N, C, H, W] (2-D
// only, as ONNX's reference and ONNX Runtime), W [oC, C/group, kH, kW], offset
// [N, offset_group*2*kH*kW, oH, oW], B [oC], mask [N, offset_group*kH*kW, oH, oW]; dims may be
// kDynamicDim (skipped). Throws kInvalidArgument (kUnsupported for other ranks) naming the node,
// the input and expected vs got.
DeformConvGeometry deform_conv_geometry(const NodeLabel& node, const AttributeMap& attrs,
                                        const Shape& x, const Shape& w, const Shape& offset,
                                        const Shape* bias, const Shape* mask);

}  // namespace kiln::ops::nn
