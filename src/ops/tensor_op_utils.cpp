#include "ops/tensor_op_utils.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/checked_math.hpp"

namespace kiln::ops {
namespace {

const Attribute* find_attr(const InferContext& ctx, std::string_view name, Attribute::Kind kind) {
  const Attribute* attr = ctx.attrs().find(name);
  if (attr && attr->kind != kind) {
    ctx.fail("attribute '", name, "' should be ", attribute_kind_name(kind), ", got ",
             attribute_kind_name(attr->kind));
  }
  return attr;
}

}  // namespace

int64_t int_attr(const InferContext& ctx, std::string_view name, int64_t fallback) {
  const Attribute* attr = find_attr(ctx, name, Attribute::Kind::kInt);
  return attr ? attr->i : fallback;
}

float float_attr(const InferContext& ctx, std::string_view name, float fallback) {
  const Attribute* attr = find_attr(ctx, name, Attribute::Kind::kFloat);
  return attr ? attr->f : fallback;
}

std::string string_attr(const InferContext& ctx, std::string_view name, std::string fallback) {
  const Attribute* attr = find_attr(ctx, name, Attribute::Kind::kString);
  return attr ? attr->s : fallback;
}

std::optional<std::vector<int64_t>> ints_attr(const InferContext& ctx, std::string_view name) {
  const Attribute* attr = find_attr(ctx, name, Attribute::Kind::kInts);
  if (!attr) return std::nullopt;
  return attr->ints;
}

int64_t index_vector_length(const InferContext& ctx, size_t index, std::string_view what,
                            bool allow_scalar) {
  const ValueInfo& info = ctx.input(index);
  if (info.dtype != DType::kInt64 && info.dtype != DType::kInt32) {
    ctx.fail("input '", what, "' must be int64 or int32, got ", dtype_name(info.dtype));
  }
  if (info.shape.empty() && allow_scalar) return 1;
  if (info.shape.size() != 1) {
    ctx.fail("input '", what, "' must be a 1-D tensor, got shape ", shape_to_string(info.shape));
  }
  return info.shape[0];
}

std::optional<std::vector<int64_t>> known_indices(const InferContext& ctx, size_t index,
                                                  std::string_view what, bool allow_scalar) {
  if (!ctx.has_input(index)) return std::nullopt;
  index_vector_length(ctx, index, what, allow_scalar);
  const ValueInfo& info = ctx.input(index);
  if (!info.value) return std::nullopt;
  return read_indices(view_of(*info.value));
}

void require_dtype(const InferContext& ctx, std::string_view what, DType dtype,
                   std::initializer_list<DType> allowed) {
  if (std::find(allowed.begin(), allowed.end(), dtype) != allowed.end()) return;
  std::string names;
  for (DType d : allowed) {
    if (!names.empty()) names += ", ";
    names += dtype_name(d);
  }
  ctx.fail(what, " has dtype ", dtype_name(dtype), "; expected one of: ", names);
}

SliceGeometry resolve_slice(const NodeRef& node, const Shape& in, const std::vector<int64_t>& starts,
                            const std::vector<int64_t>& ends, const std::vector<int64_t>& axes_given,
                            const std::vector<int64_t>& steps) {
  if (ends.size() != starts.size() || steps.size() != starts.size()) {
    node.fail(ErrorCode::kInvalidArgument, "starts, ends and steps must have the same length");
  }
  const std::vector<int64_t> axes =
      resolve_axes(node, axes_given, starts.size(), static_cast<int64_t>(in.size()), "starts");
  SliceGeometry g;
  g.output = in;
  g.strides.assign(in.size(), 1);
  for (size_t d = in.size(); d-- > 1;) g.strides[d - 1] = g.strides[d] * in[d];
  const std::vector<int64_t> dense = g.strides;
  for (size_t i = 0; i < axes.size(); ++i) {
    const auto axis = static_cast<size_t>(axes[i]);
    if (steps[i] == 0) node.fail(ErrorCode::kInvalidArgument, "steps must not contain 0");
    const SliceDim dim = resolve_slice_dim(in[axis], starts[i], ends[i], steps[i]);
    g.output[axis] = dim.count;
    g.offset += dim.start * dense[axis];
    g.strides[axis] = dim.count > 1 ? dim.step * dense[axis] : 0;
  }
  return g;
}

GatherNdGeometry resolve_gather_nd(const NodeRef& node, const Shape& data, const Shape& indices, int64_t batch_dims) {
  const auto data_rank = static_cast<int64_t>(data.size());
  const auto indices_rank = static_cast<int64_t>(indices.size());
  if (data_rank < 1) node.fail(ErrorCode::kInvalidArgument, "data must have rank >= 1");
  if (indices_rank < 1) node.fail(ErrorCode::kInvalidArgument, "indices must have rank >= 1");
  if (batch_dims < 0 || batch_dims >= std::min(data_rank, indices_rank)) {
    node.fail(ErrorCode::kInvalidArgument, "attribute 'batch_dims' is ", batch_dims, "; expected 0..",
              std::min(data_rank, indices_rank) - 1, " for data rank ", data_rank, " and indices rank ", indices_rank);
  }
  const int64_t tuple_length = indices.back();
  if (tuple_length == kDynamicDim) {
    node.fail(ErrorCode::kInvalidArgument, "the last dimension of indices must be known (it decides the output rank)");
  }
  if (tuple_length < 1 || tuple_length > data_rank - batch_dims) {
    node.fail(ErrorCode::kInvalidArgument, "the last dimension of indices is ", tuple_length, "; expected 1..",
              data_rank - batch_dims, " (data rank ", data_rank, " - batch_dims ", batch_dims, ")");
  }
  GatherNdGeometry g;
  g.batch_dims = static_cast<size_t>(batch_dims);
  g.tuple_length = static_cast<size_t>(tuple_length);
  for (size_t i = 0; i < g.batch_dims; ++i) {
    const int64_t d = data[i], n = indices[i];
    if (d != kDynamicDim && n != kDynamicDim && d != n) {
      node.fail(ErrorCode::kInvalidArgument, "batch dimension ", i, " differs: data has ", d, " (shape ",
                shape_to_string(data), "), indices has ", n, " (shape ", shape_to_string(indices), ")");
    }
    g.output.push_back(d != kDynamicDim ? d : n);
  }
  g.output.insert(g.output.end(), indices.begin() + batch_dims, indices.end() - 1);
  g.output.insert(g.output.end(), data.begin() + batch_dims + tuple_length, data.end());
  return g;
}

Shape reshape_output_shape(const NodeRef& node, const Shape& in, const std::vector<int64_t>& target,
                           bool allowzero) {
  Shape out(target.size());
  int64_t inferred_axis = -1;
  bool out_known = true;  // product of the other output dims is known
  int64_t known_product = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t t = target[i];
    if (t == -1) {
      if (inferred_axis >= 0) node.fail(ErrorCode::kInvalidArgument, "shape has more than one -1");
      inferred_axis = static_cast<int64_t>(i);
      continue;
    }
    if (t < -1) node.fail(ErrorCode::kInvalidArgument, "shape has invalid dimension ", t);
    if (t == 0 && !allowzero) {
      if (i >= in.size()) {
        node.fail(ErrorCode::kInvalidArgument, "shape dimension ", i,
                  " is 0 (copy the input dim) but the input has rank ", in.size());
      }
      out[i] = in[i];
    } else {
      out[i] = t;
    }
    if (out[i] == kDynamicDim) {
      out_known = false;
    } else if (const auto product = mul_no_overflow(known_product, out[i])) {
      known_product = *product;
    } else {
      // No input can have that many elements (kiln's sizes are int64), so no reshape matches.
      node.fail(ErrorCode::kInvalidArgument, "shape ", shape_to_string(target),
                " has more elements than 64-bit sizes can count");
    }
  }
  if (allowzero && inferred_axis >= 0 && known_product == 0 && out_known) {
    node.fail(ErrorCode::kInvalidArgument, "shape has both -1 and 0 with allowzero=1");
  }
  const bool in_known = shape_is_static(in);
  const int64_t in_numel = in_known ? shape_numel(in) : -1;
  if (inferred_axis >= 0) {
    int64_t& dim = out[static_cast<size_t>(inferred_axis)];
    if (in_known && out_known) {
      if (known_product == 0 || in_numel % known_product != 0) {
        node.fail(ErrorCode::kInvalidArgument, "cannot reshape ", shape_to_string(in), " to ",
                  shape_to_string(target));
      }
      dim = in_numel / known_product;
    } else {
      dim = kDynamicDim;
    }
  } else if (in_known && out_known && known_product != in_numel) {
    node.fail(ErrorCode::kInvalidArgument, "cannot reshape ", shape_to_string(in), " (", in_numel,
              " elements) to ", shape_to_string(target), " (", known_product, " elements)");
  }
  return out;
}

SliceDim resolve_slice_dim(int64_t dim, int64_t start, int64_t end, int64_t step) {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  SliceDim out;
  out.step = step;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    out.count = end > start ? 1 + (end - start - 1) / step : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    // -INT64_MIN overflows; any step that large takes just the first element anyway.
    const int64_t stride =
        step == std::numeric_limits<int64_t>::min() ? std::numeric_limits<int64_t>::max() : -step;
    out.count = start > end ? 1 + (start - end - 1) / stride : 0;
  }
  out.start = out.count > 0 ? start : 0;
  return out;
}

std::vector<int64_t> resolve_axes(const NodeRef& node, const std::vector<int64_t>& axes,
                                  size_t count, int64_t rank, std::string_view what) {
  std::vector<int64_t> out(count);
  if (axes.empty()) {
    if (static_cast<int64_t>(count) > rank) {
      node.fail(ErrorCode::kInvalidArgument, what, " has ", count,
                " entries but the data has rank ", rank);
    }
    for (size_t i = 0; i < count; ++i) out[i] = static_cast<int64_t>(i);
    return out;
  }
  if (axes.size() != count) {
    node.fail(ErrorCode::kInvalidArgument, "axes has ", axes.size(), " entries but ", what, " has ",
              count);
  }
  std::vector<bool> seen(static_cast<size_t>(std::max<int64_t>(rank, 0)), false);
  for (size_t i = 0; i < count; ++i) {
    int64_t axis = axes[i];
    if (axis < -rank || axis >= rank) {
      node.fail(ErrorCode::kInvalidArgument, "axis ", axis, " is out of range for rank ", rank);
    }
    if (axis < 0) axis += rank;
    if (seen[static_cast<size_t>(axis)]) {
      node.fail(ErrorCode::kInvalidArgument, "axis ", axes[i], " is repeated");
    }
    seen[static_cast<size_t>(axis)] = true;
    out[i] = axis;
  }
  return out;
}

std::vector<int64_t> resolve_pads(const NodeRef& node, const std::vector<int64_t>& pads,
                                  const std::vector<int64_t>& axes, int64_t rank) {
  if (pads.size() % 2 != 0) {
    node.fail(ErrorCode::kInvalidArgument, "pads must have an even length, got ", pads.size());
  }
  const size_t n = pads.size() / 2;
  if (axes.empty() && static_cast<int64_t>(n) != rank) {
    node.fail(ErrorCode::kInvalidArgument, "pads has ", pads.size(), " entries; expected ",
              2 * rank, " for rank ", rank);
  }
  const std::vector<int64_t> dims = resolve_axes(node, axes, n, rank, "pads/2");
  std::vector<int64_t> full(static_cast<size_t>(2 * rank), 0);
  for (size_t i = 0; i < n; ++i) {
    full[static_cast<size_t>(dims[i])] = pads[i];
    full[static_cast<size_t>(dims[i] + rank)] = pads[i + n];
  }
  return full;
}

std::vector<int64_t> resolve_split_sizes(const NodeRef& node, int64_t dim,
                                         const std::optional<std::vector<int64_t>>& split,
                                         int64_t num_outputs_attr, size_t num_outputs) {
  if (split) {
    if (split->size() != num_outputs) {
      node.fail(ErrorCode::kInvalidArgument, "split has ", split->size(),
                " entries but the node has ", num_outputs, " outputs");
    }
    int64_t total = 0;
    for (int64_t s : *split) {
      if (s < 0) node.fail(ErrorCode::kInvalidArgument, "split has negative size ", s);
      const std::optional<int64_t> sum = add_no_overflow(total, s);
      if (!sum) node.fail(ErrorCode::kInvalidArgument, "split sizes overflow int64 (entry ", s, ")");
      total = *sum;
    }
    if (total != dim) {
      node.fail(ErrorCode::kInvalidArgument, "split sizes sum to ", total,
                " but the axis has size ", dim);
    }
    return *split;
  }
  const auto n = static_cast<int64_t>(num_outputs);
  // Opset 18: chunks of ceil(dim / n); the last one takes the remainder.
  const int64_t chunk = (dim + n - 1) / n;
  const int64_t last = dim - chunk * (n - 1);
  if (last < 0) {
    node.fail(ErrorCode::kInvalidArgument, "cannot split an axis of size ", dim, " into ", n,
              " chunks of ", chunk, " (num_outputs=", num_outputs_attr, ")");
  }
  std::vector<int64_t> sizes(num_outputs, chunk);
  sizes.back() = last;
  return sizes;
}

std::pair<int64_t, int64_t> shape_op_range(int64_t start, int64_t end, int64_t rank) {
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  return {start, std::max(start, end)};
}

int64_t range_length(const NodeRef& node, const TensorView& start, const TensorView& limit,
                     const TensorView& delta) {
  if (start.dtype == DType::kInt32 || start.dtype == DType::kInt64) {
    const int64_t s = read_index(start, 0), l = read_index(limit, 0), d = read_index(delta, 0);
    if (d == 0) node.fail(ErrorCode::kInvalidArgument, "delta must not be zero");
    // Exact ceil((l - s) / d); the operands are int32/int64 values so the difference of two
    // int64s could overflow only for absurd ranges, which the element limit below rejects.
    const auto span = static_cast<__int128>(l) - s;
    __int128 n = span / d;
    if (n * d != span && ((span < 0) == (d < 0))) ++n;
    if (n > (int64_t{1} << 40)) node.fail(ErrorCode::kInvalidArgument, "Range is too long");
    return n > 0 ? static_cast<int64_t>(n) : 0;
  }
  double count = 0;
  if (start.dtype == DType::kFloat32 || start.dtype == DType::kFloat16 ||
      start.dtype == DType::kBFloat16) {
    // 16-bit ranges are computed in float32 (Range's stash_type 1, its default).
    const auto s = static_cast<float>(read_as_double(start, 0)),
               l = static_cast<float>(read_as_double(limit, 0)),
               d = static_cast<float>(read_as_double(delta, 0));
    if (d == 0) node.fail(ErrorCode::kInvalidArgument, "delta must not be zero");
    count = std::ceil(static_cast<double>((l - s) / d));
  } else {
    const double s = read_as_double(start, 0), l = read_as_double(limit, 0),
                 d = read_as_double(delta, 0);
    if (d == 0) node.fail(ErrorCode::kInvalidArgument, "delta must not be zero");
    count = std::ceil((l - s) / d);
  }
  if (std::isnan(count) || count > static_cast<double>(int64_t{1} << 40)) {
    node.fail(ErrorCode::kInvalidArgument, "Range has an invalid or too large element count ",
              count);
  }
  return count > 0 ? static_cast<int64_t>(count) : 0;
}

}  // namespace kiln::ops
