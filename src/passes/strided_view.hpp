// Strided views: where the elements of a tensor that data-movement ops (Reshape, Transpose, Slice,
// Split, Gather, ...) computed live in the memory of a tensor further up the graph. A fused kernel
// that takes strides (FusedAttention) can then read that tensor in place instead of the copies the
// exporter's Transposes materialise.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "ir/graph.hpp"

namespace kiln::passes {

// `size` steps of `stride` elements.
struct ViewFactor {
  int64_t size = 1;
  int64_t stride = 0;
  bool operator==(const ViewFactor&) const = default;
};

// Element (i_0, ..., i_{r-1}) of a rank-r tensor lives at element
//   offset + sum over k of (the digits of i_k over dims[k]'s sizes, outermost first) · strides
// of the row-major memory of `source`. A dimension of size 1 has no factors; adjacent factors of a
// dimension that are contiguous with each other are merged, so a dimension with one stride has
// exactly one factor.
struct StridedView {
  ir::ValueId source = ir::kNoValue;
  int64_t offset = 0;
  std::vector<std::vector<ViewFactor>> dims;
};

// A point reached while walking up from a value: the view of the starting value relative to
// `view.source`, the product of the scalar factors passed on the way (Mul/Div by a one-element
// constant), and a group number: stops of one group are separated only by reshape-like ops, so
// their views address the same memory the same way.
struct ViewStop {
  StridedView view;
  double scale = 1.0;
  int group = 0;
};

// Walks up from `id` (static shape) through Reshape, Flatten, Squeeze, Unsqueeze, Identity, a
// Cast to the dtype it already has, Transpose, Slice (constant starts/ends/axes, steps 1), Split,
// Gather (a constant index of rank 0 or shape [1]) and, with `strip_scales`, Mul/Div by one-element
// floating constants that leave the shape alone. Stops at any other producer, a dynamic shape, or a
// step whose view has no strided form. Returns every stop, `id` itself (scale 1, group 0) first,
// deepest last.
std::vector<ViewStop> trace_view(const ir::Graph& graph, ir::ValueId id, bool strip_scales);

// The view of `id` on its own memory: one factor per dimension of size > 1, row-major strides.
StridedView identity_view(const ir::Graph& graph, ir::ValueId id);

// The value of a one-element floating constant (any rank), else nullopt.
std::optional<double> one_element_float(const ir::Graph& graph, ir::ValueId id);

// Row-major element strides of `shape`.
std::vector<int64_t> dense_strides(const Shape& shape);

}  // namespace kiln::passes
