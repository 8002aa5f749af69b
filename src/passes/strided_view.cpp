#include "passes/strided_view.hpp"

#include <algorithm>
#include <numeric>
#include <string_view>

#include "base/host_tensor.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

using ir::kNoValue;
using ir::ValueId;

bool is_static(const Shape& shape) {
  return std::none_of(shape.begin(), shape.end(), [](int64_t d) { return d == kDynamicDim; });
}

const ir::Node* live_producer(const ir::Graph& graph, ValueId id) {
  const int32_t index = graph.value(id).producer;
  if (index < 0) return nullptr;
  const ir::Node& node = graph.nodes[static_cast<size_t>(index)];
  return node.removed ? nullptr : &node;
}

// How the output X of a data-movement node addresses its input Y: X's dim a is Y's dim
// `y_dim[a]`, and X's element at multi-index x is Y's element at `base + scatter(x)`.
struct DimMap {
  std::vector<size_t> y_dim;
  std::vector<int64_t> base;  // one start per Y dim
};

// A piece of a factor that stays inside one dim of the tensor it is expressed over.
struct Piece {
  size_t dim;
  int64_t size, step;  // `size` indices `step` apart along `dim`
};

// Splits factor `f` of a view over the row-major tensor `shape` into pieces each inside one dim,
// outermost first; nullopt when the factor does not line up with the dims.
std::optional<std::vector<Piece>> pieces_of(ViewFactor f, const Shape& shape) {
  const std::vector<int64_t> strides = dense_strides(shape);
  std::vector<Piece> pieces;
  int64_t size = f.size, stride = f.stride;
  while (size > 1) {
    size_t dim = shape.size();
    for (size_t a = shape.size(); a-- > 0;) {
      if (shape[a] > 1 && stride >= strides[a] && stride < strides[a] * shape[a]) {
        dim = a;
        break;
      }
    }
    if (dim == shape.size() || stride % strides[dim] != 0) return std::nullopt;
    const int64_t step = stride / strides[dim];
    if ((size - 1) * step < shape[dim]) {
      pieces.push_back({dim, size, step});
      break;
    }
    if (shape[dim] % step != 0 || size % (shape[dim] / step) != 0) return std::nullopt;
    const int64_t inner = shape[dim] / step;
    pieces.push_back({dim, inner, step});
    size /= inner;
    stride = strides[dim] * shape[dim];
  }
  std::reverse(pieces.begin(), pieces.end());
  return pieces;
}

// Drops size-1 factors and merges contiguous neighbours.
std::vector<ViewFactor> normalized(const std::vector<ViewFactor>& factors) {
  std::vector<ViewFactor> out;
  for (const ViewFactor& f : factors) {
    if (f.size == 1) continue;
    if (!out.empty() && out.back().stride == f.size * f.stride) {
      out.back() = {out.back().size * f.size, f.stride};
    } else {
      out.push_back(f);
    }
  }
  return out;
}

// Re-expresses `view` (over X, shape x_shape) over Y through `map`; nullopt when a factor does
// not line up with X's dims.
std::optional<StridedView> map_view(const StridedView& view, const Shape& x_shape,
                                    const Shape& y_shape, const DimMap& map, ValueId y) {
  const std::vector<int64_t> y_strides = dense_strides(y_shape);
  StridedView out;
  out.source = y;
  // The offset: X's multi-index, moved to Y.
  int64_t rest = view.offset;
  std::vector<int64_t> y_index = map.base;
  const std::vector<int64_t> x_strides = dense_strides(x_shape);
  for (size_t a = 0; a < x_shape.size(); ++a) {
    const int64_t digit = x_strides[a] == 0 ? 0 : rest / x_strides[a];
    rest -= digit * x_strides[a];
    y_index[map.y_dim[a]] += digit;
  }
  for (size_t d = 0; d < y_shape.size(); ++d) out.offset += y_index[d] * y_strides[d];
  for (const std::vector<ViewFactor>& dim : view.dims) {
    std::vector<ViewFactor> factors;
    for (const ViewFactor& f : dim) {
      const std::optional<std::vector<Piece>> pieces = pieces_of(f, x_shape);
      if (!pieces) return std::nullopt;
      for (const Piece& p : *pieces)
        factors.push_back({p.size, p.step * y_strides[map.y_dim[p.dim]]});
    }
    out.dims.push_back(normalized(factors));
  }
  return out;
}

DimMap identity_map(size_t x_rank, size_t y_rank) {
  DimMap map;
  map.y_dim.resize(x_rank);
  std::iota(map.y_dim.begin(), map.y_dim.end(), size_t{0});
  map.base.assign(y_rank, 0);
  return map;
}

int64_t normalized_axis(int64_t axis, size_t rank) {
  return axis < 0 ? axis + static_cast<int64_t>(rank) : axis;
}

// How X (output `out` of `node`) addresses its data input Y, for the ops that move whole
// sub-blocks; nullopt for anything else.
std::optional<DimMap> dim_map_of(const ir::Graph& graph, const ir::Node& node, size_t out) {
  const Shape& x = graph.value(node.outputs[out]).shape;
  const Shape& y = graph.value(node.inputs[0]).shape;
  const std::string_view op = node.op_type;
  if (op == "Transpose") {
    std::vector<int64_t> perm(y.size());
    std::iota(perm.rbegin(), perm.rend(), int64_t{0});
    if (node.attrs.has("perm")) perm = node.attrs.get_ints("perm");
    if (perm.size() != x.size()) return std::nullopt;
    DimMap map;
    map.base.assign(y.size(), 0);
    for (int64_t p : perm) {
      if (p < 0 || p >= static_cast<int64_t>(y.size())) return std::nullopt;
      map.y_dim.push_back(static_cast<size_t>(p));
    }
    return map;
  }
  if (op == "Slice") {
    if (x.size() != y.size() || node.inputs.size() < 3) return std::nullopt;
    const auto starts = constant_ints(graph, node.inputs[1]);
    if (!starts) return std::nullopt;
    std::vector<int64_t> axes(starts->size());
    std::iota(axes.begin(), axes.end(), int64_t{0});
    if (node.inputs.size() > 3 && node.inputs[3] != kNoValue) {
      const auto given = constant_ints(graph, node.inputs[3]);
      if (!given || given->size() != starts->size()) return std::nullopt;
      axes = *given;
    }
    if (node.inputs.size() > 4 && node.inputs[4] != kNoValue) {
      const auto steps = constant_ints(graph, node.inputs[4]);
      if (!steps || std::any_of(steps->begin(), steps->end(), [](int64_t s) { return s != 1; }))
        return std::nullopt;
    }
    DimMap map = identity_map(x.size(), y.size());
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t axis = normalized_axis(axes[i], y.size());
      if (axis < 0 || axis >= static_cast<int64_t>(y.size())) return std::nullopt;
      const int64_t dim = y[static_cast<size_t>(axis)];
      int64_t start = (*starts)[i] < 0 ? (*starts)[i] + dim : (*starts)[i];
      start = std::clamp<int64_t>(start, 0, dim);
      map.base[static_cast<size_t>(axis)] = start;
    }
    return map;
  }
  if (op == "Split") {
    if (x.size() != y.size()) return std::nullopt;
    const int64_t axis = normalized_axis(node.attrs.get_int_or("axis", 0), y.size());
    if (axis < 0 || axis >= static_cast<int64_t>(y.size())) return std::nullopt;
    DimMap map = identity_map(x.size(), y.size());
    for (size_t k = 0; k < out; ++k)
      map.base[static_cast<size_t>(axis)] +=
          graph.value(node.outputs[k]).shape[static_cast<size_t>(axis)];
    return map;
  }
  if (op == "Gather") {
    const auto index = constant_ints(graph, node.inputs.size() > 1 ? node.inputs[1] : kNoValue);
    if (!index || index->size() != 1) return std::nullopt;
    const Shape& index_shape = graph.value(node.inputs[1]).shape;
    const int64_t axis = normalized_axis(node.attrs.get_int_or("axis", 0), y.size());
    if (axis < 0 || axis >= static_cast<int64_t>(y.size())) return std::nullopt;
    const int64_t dim = y[static_cast<size_t>(axis)];
    const int64_t at = (*index)[0] < 0 ? (*index)[0] + dim : (*index)[0];
    if (at < 0 || at >= dim) return std::nullopt;
    DimMap map;
    map.base.assign(y.size(), 0);
    map.base[static_cast<size_t>(axis)] = at;
    if (index_shape.empty()) {  // the axis goes away
      if (x.size() + 1 != y.size()) return std::nullopt;
      for (size_t a = 0; a < x.size(); ++a)
        map.y_dim.push_back(static_cast<int64_t>(a) < axis ? a : a + 1);
    } else if (index_shape.size() == 1 && x.size() == y.size()) {
      map.y_dim.resize(x.size());
      std::iota(map.y_dim.begin(), map.y_dim.end(), size_t{0});
    } else {
      return std::nullopt;
    }
    return map;
  }
  return std::nullopt;
}

// Ops that keep the elements in memory order (a Cast only when it keeps the dtype, which the
// caller checks: precision lowering leaves such Casts behind).
bool is_reshape_like(std::string_view op) {
  return op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" ||
         op == "Identity" || op == "Cast";
}

// Mul(X, c), Mul(c, X) or Div(X, c) with c a one-element constant and X of the output's shape:
// X and the factor, else nullopt.
std::optional<std::pair<ValueId, double>> scalar_scale(const ir::Graph& graph,
                                                       const ir::Node& node) {
  if ((node.op_type != "Mul" && node.op_type != "Div") || node.inputs.size() != 2)
    return std::nullopt;
  const Shape& result = graph.value(node.outputs[0]).shape;
  for (size_t side = 0; side < 2; ++side) {
    if (side == 0 && node.op_type == "Div") continue;  // c / X is no scale of X
    const std::optional<double> factor = one_element_float(graph, node.inputs[side]);
    const ValueId rest = node.inputs[1 - side];
    if (!factor || graph.value(rest).shape != result) continue;
    if (node.op_type == "Div") return std::make_pair(rest, 1.0 / *factor);
    return std::make_pair(rest, *factor);
  }
  return std::nullopt;
}

}  // namespace

std::optional<double> one_element_float(const ir::Graph& graph, ir::ValueId id) {
  if (id == kNoValue || !graph.is_constant(id)) return std::nullopt;
  const HostTensor& tensor = *graph.value(id).constant;
  if (!is_floating(tensor.dtype) || shape_numel(tensor.shape) != 1) return std::nullopt;
  return read_as_double(view_of(tensor), 0);
}

std::vector<int64_t> dense_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

StridedView identity_view(const ir::Graph& graph, ir::ValueId id) {
  const Shape& shape = graph.value(id).shape;
  const std::vector<int64_t> strides = dense_strides(shape);
  StridedView view;
  view.source = id;
  for (size_t d = 0; d < shape.size(); ++d)
    view.dims.push_back(normalized({ViewFactor{shape[d], strides[d]}}));
  return view;
}

std::vector<ViewStop> trace_view(const ir::Graph& graph, ir::ValueId id, bool strip_scales) {
  std::vector<ViewStop> stops;
  if (!is_static(graph.value(id).shape)) return stops;
  ViewStop stop{identity_view(graph, id), 1.0, 0};
  for (;;) {
    stops.push_back(stop);
    const ValueId current = stop.view.source;
    const ir::Node* node = live_producer(graph, current);
    if (node == nullptr || node->inputs.empty() || node->inputs[0] == kNoValue) break;
    if (strip_scales) {
      if (const auto scale = scalar_scale(graph, *node)) {
        stop.view.source = scale->first;
        stop.scale *= scale->second;
        ++stop.group;  // another tensor, laid out alike
        continue;
      }
    }
    const ValueId input = node->inputs[0];
    const Shape& y = graph.value(input).shape;
    if (!is_static(y) || graph.value(input).dtype != graph.value(current).dtype) break;
    if (is_reshape_like(node->op_type)) {
      if (shape_numel(y) != shape_numel(graph.value(current).shape)) break;
      stop.view.source = input;
      continue;
    }
    const auto out = static_cast<size_t>(
        std::find(node->outputs.begin(), node->outputs.end(), current) - node->outputs.begin());
    const std::optional<DimMap> map = dim_map_of(graph, *node, out);
    if (!map) break;
    std::optional<StridedView> mapped =
        map_view(stop.view, graph.value(current).shape, y, *map, input);
    if (!mapped) break;
    stop.view = std::move(*mapped);
    ++stop.group;
  }
  return stops;
}

}  // namespace kiln::passes
