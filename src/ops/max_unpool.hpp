// MaxUnpool (opsets 9, 11 and 22): the shape shared by its infer function and CPU kernel.
#pragma once

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

// The output MaxPool's inverse would have for X [N, C, spatial...] (which may hold kDynamicDim):
// per spatial axis (in - 1) * stride - pad_begin - pad_end + kernel, from the attributes
// kernel_shape (required), strides and pads. MaxUnpool's indices address this shape, flattened
// row-major. Fails kInvalidArgument naming the node for a missing or malformed attribute or a
// non-positive extent.
Shape max_unpool_inferred_shape(const NodeLabel& node, const AttributeMap& attrs, const Shape& x);

}  // namespace kiln::ops::nn
