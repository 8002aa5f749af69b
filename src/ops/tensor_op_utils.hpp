// Helpers shared by the tensor op families (elementwise, shape, data movement): typed attribute
// access that names the node, value-input reading, and the parameter resolution that both an op's
// infer function and its kernels need (Slice, Pad, Split, Reshape), so the two never disagree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "ops/op_registry.hpp"

namespace kiln::ops {

// Names a node in errors raised from code shared by infer functions and kernels.
struct NodeRef {
  std::string_view name;
  std::string_view op;

  template <typename... Parts>
  [[noreturn]] void fail(ErrorCode code, Parts&&... parts) const {
    kiln::fail(code, "node '", name, "' (", op, "): ", std::forward<Parts>(parts)...);
  }
};

inline NodeRef node_ref(const InferContext& ctx) {
  return NodeRef{ctx.node_name(), ctx.op()};
}

// Attribute getters whose kind errors name the node (AttributeMap's own errors do not).
int64_t int_attr(const InferContext& ctx, std::string_view name, int64_t fallback);
float float_attr(const InferContext& ctx, std::string_view name, float fallback);
std::string string_attr(const InferContext& ctx, std::string_view name, std::string fallback);
std::optional<std::vector<int64_t>> ints_attr(const InferContext& ctx, std::string_view name);

// Checks that input `index` is a 1-D int32/int64 tensor (or a scalar when allow_scalar) and
// returns its element count; kDynamicDim when the length is not known.
int64_t index_vector_length(const InferContext& ctx, size_t index, std::string_view what,
                            bool allow_scalar = false);
// Values of an int32/int64 input when known on the host; nullopt when absent or unknown.
std::optional<std::vector<int64_t>> known_indices(const InferContext& ctx, size_t index,
                                                  std::string_view what, bool allow_scalar = false);

// Fails unless `dtype` is one of `allowed` (listing the allowed names).
void require_dtype(const InferContext& ctx, std::string_view what, DType dtype,
                   std::initializer_list<DType> allowed);

// Slice as a strided copy of a dense input: the output shape, and for each input dim the element
// stride to step by (0 where the output has one element) plus the element offset of the first.
struct SliceGeometry {
  Shape output;
  std::vector<int64_t> strides;
  int64_t offset = 0;
};
// `axes` may be empty (0..n-1). Fails (kInvalidArgument, naming the node) for lists of different
// lengths, a zero step, or bad axes.
SliceGeometry resolve_slice(const NodeRef& node, const Shape& in, const std::vector<int64_t>& starts,
                            const std::vector<int64_t>& ends, const std::vector<int64_t>& axes,
                            const std::vector<int64_t>& steps);

// GatherND's geometry, shared by its infer function and kernels: batch_dims and the index tuple
// length k validated against the ranks, and the output shape (kDynamicDim where an input dim is).
struct GatherNdGeometry {
  size_t batch_dims = 0;
  size_t tuple_length = 0;
  Shape output;
};
// Fails (kInvalidArgument, naming the node) for ranks < 1, batch_dims out of range, an unknown or
// out-of-range tuple length, or known batch dims that differ.
GatherNdGeometry resolve_gather_nd(const NodeRef& node, const Shape& data, const Shape& indices, int64_t batch_dims);

// Output dims of Reshape. `in` may have dynamic dims; unknown output dims are kDynamicDim.
Shape reshape_output_shape(const NodeRef& node, const Shape& in, const std::vector<int64_t>& target,
                           bool allowzero);

// One dimension of a Slice: element `start`, then `count` elements `step` apart.
struct SliceDim {
  int64_t start = 0;
  int64_t step = 1;
  int64_t count = 0;
};
// Clamps start/end of one axis of (static) size `dim` the ONNX way.
SliceDim resolve_slice_dim(int64_t dim, int64_t start, int64_t end, int64_t step);
// Normalised, duplicate-free axes for Slice/Pad: `axes` may be empty (meaning 0..count-1).
std::vector<int64_t> resolve_axes(const NodeRef& node, const std::vector<int64_t>& axes,
                                  size_t count, int64_t rank, std::string_view what);

// Pads for every dimension: [begin_0..begin_{r-1}, end_0..end_{r-1}] from Pad's pads/axes inputs.
std::vector<int64_t> resolve_pads(const NodeRef& node, const std::vector<int64_t>& pads,
                                  const std::vector<int64_t>& axes, int64_t rank);

// Chunk sizes of Split along a dimension of static size `dim`. `split` is the optional input's
// value; num_outputs is the attribute (0 when absent).
std::vector<int64_t> resolve_split_sizes(const NodeRef& node, int64_t dim,
                                         const std::optional<std::vector<int64_t>>& split,
                                         int64_t num_outputs_attr, size_t num_outputs);

// Shape's [start, end) dims after ONNX's negative-index handling and clamping.
std::pair<int64_t, int64_t> shape_op_range(int64_t start, int64_t end, int64_t rank);

// Element count of Range(start, limit, delta), computed in the tensors' own dtype (int32, int64,
// float32 or float64). Fails for a zero delta.
int64_t range_length(const NodeRef& node, const TensorView& start, const TensorView& limit,
                     const TensorView& delta);

}  // namespace kiln::ops
