// Axis handling shared by the Reduce* infer functions and CPU kernels.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

// True for the Reduce* ops that also accept int32/int64 data (Sum, Prod, Max, Min).
bool reduce_accepts_integers(std::string_view op);

// Which axes of a rank-`rank` input are reduced. Negative axes count from the end; an axis out of
// range or listed twice fails naming the node. Empty `axes` reduce every axis, or none when
// `noop_with_empty_axes` is set.
std::vector<bool> reduce_axis_mask(const NodeLabel& node, const std::vector<int64_t>& axes,
                                   size_t rank, bool noop_with_empty_axes);

// The output shape: reduced axes become 1 (keepdims) or disappear.
Shape reduced_shape(const Shape& input, const std::vector<bool>& mask, bool keepdims);

// Reads keepdims / noop_with_empty_axes, failing unless each is 0 or 1.
bool read_flag(const NodeLabel& node, const AttributeMap& attrs, const char* name, bool fallback);

}  // namespace kiln::ops::nn
