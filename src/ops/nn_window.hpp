// Sliding-window geometry shared by Conv and the pooling ops: reads kernel_shape, strides,
// dilations, pads and auto_pad, validates them and computes the output extent of every spatial
// axis. Used by the infer functions (where input dims may be dynamic) and by the CPU kernels.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

struct WindowGeometry {
  std::vector<int64_t> kernel;  // per spatial axis; kDynamicDim when unknown (Conv weights)
  std::vector<int64_t> strides;
  std::vector<int64_t> dilations;
  std::vector<int64_t> pad_begin;  // resolved pads (auto_pad applied); 0 when not yet known
  std::vector<int64_t> pad_end;
  std::vector<int64_t> output;  // output extent; kDynamicDim when it depends on unknown dims
  // Per spatial axis: whether the output extent equals the input extent for every input extent
  // (stride 1 with SAME padding, or explicit pads that add up to the dilated kernel minus one),
  // which the builder's symbolic dims carry through (InferContext::link_dim).
  std::vector<bool> keeps_extent;
};

// `input_spatial` are the input's spatial dims (may hold kDynamicDim). `kernel` holds the window
// extents, taken from the kernel_shape attribute by the caller (Conv may take them from W).
// `ceil_mode` rounds the output extent up (pooling only); a window that would start in the end
// padding is dropped, as ONNX Runtime and PyTorch do. Throws kInvalidArgument naming the node and
// attribute for a malformed attribute or an input too small for the window.
WindowGeometry resolve_window(const NodeLabel& node, const AttributeMap& attrs,
                              std::span<const int64_t> input_spatial, std::vector<int64_t> kernel,
                              bool ceil_mode);

// "[1, 2, 3]" (negative entries printed as they are, unlike shape_to_string's "?").
std::string list_to_string(const std::vector<int64_t>& values);

enum class AutoPad { kNotSet, kSameUpper, kSameLower, kValid };
// The auto_pad attribute (NOTSET when absent); kInvalidArgument naming the node otherwise.
AutoPad read_auto_pad(const NodeLabel& node, const AttributeMap& attrs);

// A convolution's kernel extents: W's spatial dims (W is [*, *, k...]), or the kernel_shape
// attribute, which must then agree with W's known dims. Fails naming the node otherwise.
std::vector<int64_t> kernel_extents(const InferContext& ctx, const Shape& w);

// Reads an int list attribute that, when present, must have `expected_size` entries each >= `min`.
std::vector<int64_t> read_axis_attribute(const NodeLabel& node, const AttributeMap& attrs,
                                         const char* name, size_t expected_size, int64_t min,
                                         int64_t fallback);

}  // namespace kiln::ops::nn
