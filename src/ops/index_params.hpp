// Host-side parameter resolution for CumSum, ArgMax/ArgMin and TopK, shared by the infer functions
// (src/ops/index_ops.cpp) and the CPU and CUDA kernels so the backends can never disagree on
// attribute defaults, axis handling or the checks on K.
#pragma once

#include <cstdint>

#include "base/attributes.hpp"
#include "base/host_tensor.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::index {

// A tensor seen as [outer, length, inner] around one axis: element (o, i, n) of a line lies at
// (o * length + i) * inner + n, so a line along the axis has stride `inner`.
struct AxisLines {
  int64_t outer = 1;
  int64_t length = 1;
  int64_t inner = 1;
};
AxisLines lines_along(const Shape& shape, int64_t axis);

// float32, float16, bfloat16, int32, int64: the data dtypes the index ops accept.
bool is_index_data_dtype(DType dtype);
// Fails with kUnsupported naming the node, input 0 and its dtype otherwise.
void require_index_data_dtype(const nn::NodeLabel& node, DType dtype);

struct CumSumParams {
  int64_t axis = 0;  // normalised into [0, rank)
  bool exclusive = false;
  bool reverse = false;
};
// `axis` is CumSum's input 1: a scalar or 1-element int32/int64 tensor in [-rank, rank).
CumSumParams cumsum_params(const nn::NodeLabel& node, const AttributeMap& attrs, size_t rank,
                           const TensorView& axis);
// Checks input 1's dtype and shape (its value may be unknown).
void check_cumsum_axis_input(const nn::NodeLabel& node, DType dtype, const Shape& shape);

struct ArgReduceParams {
  int64_t axis = 0;  // normalised into [0, rank)
  bool keepdims = true;
  bool select_last_index = false;
};
// ArgMax/ArgMin attributes for an input of rank `rank` (>= 1).
ArgReduceParams arg_reduce_params(const nn::NodeLabel& node, const AttributeMap& attrs,
                                  size_t rank);
// The reduced axis becomes 1 (keepdims) or disappears.
Shape arg_reduce_shape(const Shape& input, const ArgReduceParams& params);

struct TopKParams {
  int64_t axis = 0;  // normalised into [0, rank)
  bool largest = true;
  bool sorted = true;  // kiln always returns sorted order (allowed when sorted = 0)
};
TopKParams topk_params(const nn::NodeLabel& node, const AttributeMap& attrs, size_t rank);
// Checks input 1's dtype (int64; int32 accepted) and shape (one element).
void check_topk_k_input(const nn::NodeLabel& node, DType dtype, const Shape& shape);
// K from input 1; fails (kInvalidArgument) when K < 0 or K > axis_length (when known, >= 0).
int64_t topk_k(const nn::NodeLabel& node, const TensorView& k, int64_t axis_length);

}  // namespace kiln::ops::index
