// Data movement ops: rearrange, select or pad elements without computing on them.
#include <algorithm>
#include <string>

#include "base/checked_math.hpp"
#include "ops/op_families.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::ops {
namespace {

void infer_transpose(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const auto rank = static_cast<int64_t>(data.shape.size());
  std::vector<int64_t> perm(static_cast<size_t>(rank));
  for (int64_t i = 0; i < rank; ++i) perm[static_cast<size_t>(i)] = rank - 1 - i;
  if (auto given = ints_attr(ctx, "perm")) perm = *given;
  if (static_cast<int64_t>(perm.size()) != rank) {
    ctx.fail("attribute 'perm' has ", perm.size(), " entries but the input has rank ", rank);
  }
  std::vector<bool> seen(static_cast<size_t>(rank), false);
  Shape out(static_cast<size_t>(rank));
  for (size_t i = 0; i < perm.size(); ++i) {
    if (perm[i] < 0 || perm[i] >= rank || seen[static_cast<size_t>(perm[i])]) {
      ctx.fail("attribute 'perm' is not a permutation of 0..", rank - 1);
    }
    seen[static_cast<size_t>(perm[i])] = true;
    out[i] = data.shape[static_cast<size_t>(perm[i])];
    ctx.link_dim(0, i, 0, static_cast<size_t>(perm[i]));
  }
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = out;
}

void infer_concat(InferContext& ctx) {
  const ValueInfo& first = ctx.input(0);
  const auto rank = static_cast<int64_t>(first.shape.size());
  if (!ctx.attrs().has("axis")) ctx.fail("missing required attribute 'axis'");
  const int64_t axis = normalize_axis(ctx, int_attr(ctx, "axis", 0), rank);
  Shape out = first.shape;
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    const ValueInfo& in = ctx.input(i);
    if (in.dtype != first.dtype) {
      ctx.fail("input ", i, " has dtype ", dtype_name(in.dtype), " but input 0 has ",
               dtype_name(first.dtype));
    }
    if (in.shape.size() != first.shape.size()) {
      ctx.fail("input ", i, " has rank ", in.shape.size(), " but input 0 has rank ", rank);
    }
    for (int64_t d = 0; d < rank; ++d) {
      const auto u = static_cast<size_t>(d);
      if (d == axis) {
        if (out[u] == kDynamicDim || in.shape[u] == kDynamicDim) {
          out[u] = kDynamicDim;
        } else if (const auto sum = add_no_overflow(out[u], in.shape[u])) {
          out[u] = *sum;
        } else {
          ctx.fail("the inputs' extents along axis ", axis,
                   " add up to more than 64-bit sizes hold");
        }
      } else if (out[u] == kDynamicDim) {
        out[u] = in.shape[u];
      } else if (in.shape[u] != kDynamicDim && in.shape[u] != out[u]) {
        ctx.fail("input ", i, " has shape ", shape_to_string(in.shape),
                 " which differs from input 0's ", shape_to_string(first.shape), " outside axis ",
                 axis);
      }
    }
  }
  ctx.output(0).dtype = first.dtype;
  ctx.output(0).shape = out;
  // Symbolic dims: outside the axis every input has the output's extent.
  for (int64_t d = 0; d < rank; ++d) {
    if (d == axis && ctx.num_inputs() > 1) continue;  // one input: the axis is its own
    std::vector<DimRef> sources;
    for (size_t i = 0; i < ctx.num_inputs(); ++i) sources.push_back(DimRef{i, static_cast<size_t>(d)});
    ctx.link_equal_dims(0, static_cast<size_t>(d), std::move(sources));
  }
}

void infer_split(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const auto rank = static_cast<int64_t>(data.shape.size());
  const auto axis = static_cast<size_t>(normalize_axis(ctx, int_attr(ctx, "axis", 0), rank));
  const int64_t num_outputs = int_attr(ctx, "num_outputs", 0);
  if (ctx.attrs().has("num_outputs") && num_outputs != static_cast<int64_t>(ctx.num_outputs())) {
    ctx.fail("attribute 'num_outputs' is ", num_outputs, " but the node has ", ctx.num_outputs(),
             " outputs");
  }
  if (ctx.has_input(1) && ctx.attrs().has("num_outputs")) {
    ctx.fail("give either the 'split' input or the 'num_outputs' attribute, not both");
  }
  std::vector<int64_t> sizes(ctx.num_outputs(), kDynamicDim);
  if (ctx.has_input(1)) {
    const int64_t count = index_vector_length(ctx, 1, "split");
    if (count != kDynamicDim && count != static_cast<int64_t>(ctx.num_outputs())) {
      ctx.fail("split has ", count, " entries but the node has ", ctx.num_outputs(), " outputs");
    }
    if (auto split = known_indices(ctx, 1, "split")) {
      if (data.shape[axis] == kDynamicDim) {
        sizes = *split;  // the sum is checked when the dim is known
      } else {
        sizes = resolve_split_sizes(node_ref(ctx), data.shape[axis], split, 0, ctx.num_outputs());
      }
    }
  } else if (data.shape[axis] != kDynamicDim) {
    sizes = resolve_split_sizes(node_ref(ctx), data.shape[axis], std::nullopt, num_outputs,
                                ctx.num_outputs());
  }
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    ctx.output(i).dtype = data.dtype;
    ctx.output(i).shape = data.shape;
    ctx.output(i).shape[axis] = sizes[i];
    for (size_t d = 0; d < data.shape.size(); ++d)
      if (d != axis) ctx.link_dim(i, d, 0, d);
  }
}

void infer_slice(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const auto rank = static_cast<int64_t>(data.shape.size());
  const int64_t count = index_vector_length(ctx, 1, "starts");
  if (index_vector_length(ctx, 2, "ends") != count) {
    ctx.fail("starts and ends must have the same length");
  }
  if (count == kDynamicDim) ctx.fail("the length of 'starts' must be known");
  for (size_t i : {size_t{3}, size_t{4}}) {
    if (ctx.has_input(i) && index_vector_length(ctx, i, i == 3 ? "axes" : "steps") != count) {
      ctx.fail(i == 3 ? "axes" : "steps", " must have the same length as starts");
    }
  }
  ctx.output(0).dtype = data.dtype;
  Shape out = data.shape;
  const auto starts = known_indices(ctx, 1, "starts");
  const auto ends = known_indices(ctx, 2, "ends");
  const auto axes_value = known_indices(ctx, 3, "axes");
  const auto steps = known_indices(ctx, 4, "steps");
  if (ctx.has_input(3) && !axes_value) {
    ctx.output(0).shape = Shape(out.size(), kDynamicDim);  // any dim may be sliced
    return;
  }
  const std::vector<int64_t> axes =
      resolve_axes(node_ref(ctx), axes_value.value_or(std::vector<int64_t>{}),
                   static_cast<size_t>(count), rank, "starts");
  const bool values_known = starts && ends && (steps || !ctx.has_input(4));
  // Symbolic dims: a dim no axis names keeps its extent, as does one sliced whole (from 0 to
  // INT64_MAX by 1, e.g. an export's x[:, 0:64] written for every axis).
  std::vector<bool> keeps(out.size(), true);
  for (size_t i = 0; i < axes.size(); ++i) {
    const auto axis = static_cast<size_t>(axes[i]);
    const int64_t step = steps ? (*steps)[i] : 1;
    if (step == 0) ctx.fail("steps must not contain 0");
    const bool whole = values_known && (*starts)[i] == 0 && (*ends)[i] == INT64_MAX && step == 1;
    keeps[axis] = keeps[axis] && whole;
    if (!values_known || out[axis] == kDynamicDim) {
      out[axis] = kDynamicDim;
    } else {
      out[axis] = resolve_slice_dim(out[axis], (*starts)[i], (*ends)[i], step).count;
    }
  }
  ctx.output(0).shape = out;
  for (size_t d = 0; d < out.size(); ++d)
    if (keeps[d]) ctx.link_dim(0, d, 0, d);
}

void infer_gather(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const ValueInfo& indices = ctx.input(1);
  require_dtype(ctx, "indices", indices.dtype, {DType::kInt32, DType::kInt64});
  const auto rank = static_cast<int64_t>(data.shape.size());
  if (rank == 0) ctx.fail("data must have rank >= 1");
  const auto axis = static_cast<size_t>(normalize_axis(ctx, int_attr(ctx, "axis", 0), rank));
  Shape out(data.shape.begin(), data.shape.begin() + static_cast<std::ptrdiff_t>(axis));
  out.insert(out.end(), indices.shape.begin(), indices.shape.end());
  out.insert(out.end(), data.shape.begin() + static_cast<std::ptrdiff_t>(axis) + 1,
             data.shape.end());
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = out;
  // Symbolic dims: data's dims around the axis, indices' dims in its place.
  const size_t index_rank = indices.shape.size();
  for (size_t d = 0; d < axis; ++d) ctx.link_dim(0, d, 0, d);
  for (size_t d = 0; d < index_rank; ++d) ctx.link_dim(0, axis + d, 1, d);
  for (size_t d = axis + 1; d < data.shape.size(); ++d) ctx.link_dim(0, d - 1 + index_rank, 0, d);
}

void infer_gather_elements(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const ValueInfo& indices = ctx.input(1);
  require_dtype(ctx, "indices", indices.dtype, {DType::kInt32, DType::kInt64});
  const auto rank = static_cast<int64_t>(data.shape.size());
  if (rank == 0) ctx.fail("data must have rank >= 1");
  if (indices.shape.size() != data.shape.size()) {
    ctx.fail("indices has rank ", indices.shape.size(), " but data has rank ", rank);
  }
  normalize_axis(ctx, int_attr(ctx, "axis", 0), rank);
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = indices.shape;
  ctx.link_same_shape(0, 1);
}

void infer_gather_nd(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const ValueInfo& indices = ctx.input(1);
  require_dtype(ctx, "indices", indices.dtype, {DType::kInt32, DType::kInt64});
  GatherNdGeometry geometry =
      resolve_gather_nd(node_ref(ctx), data.shape, indices.shape, int_attr(ctx, "batch_dims", 0));
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = std::move(geometry.output);
}

void infer_pad(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const auto rank = static_cast<int64_t>(data.shape.size());
  const std::string mode = string_attr(ctx, "mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap") {
    ctx.fail("attribute 'mode' must be constant, reflect, edge or wrap, got '", mode, "'");
  }
  const int64_t pads_length = index_vector_length(ctx, 1, "pads");
  if (ctx.has_input(2)) {
    const ValueInfo& value = ctx.input(2);
    if (value.dtype != data.dtype) {
      ctx.fail("constant_value has dtype ", dtype_name(value.dtype), " but data has ",
               dtype_name(data.dtype));
    }
    if (shape_is_static(value.shape) && shape_numel(value.shape) != 1) {
      ctx.fail("constant_value must hold one element, got shape ", shape_to_string(value.shape));
    }
  }
  ctx.output(0).dtype = data.dtype;
  Shape out = data.shape;
  const auto pads = known_indices(ctx, 1, "pads");
  const auto axes = known_indices(ctx, 3, "axes");
  if (!pads || (ctx.has_input(3) && !axes)) {
    if (axes && pads_length != kDynamicDim) {
      for (int64_t a : resolve_axes(node_ref(ctx), *axes, axes->size(), rank, "axes")) {
        out[static_cast<size_t>(a)] = kDynamicDim;
      }
    } else {
      out.assign(out.size(), kDynamicDim);
    }
    ctx.output(0).shape = out;
    return;
  }
  const std::vector<int64_t> full =
      resolve_pads(node_ref(ctx), *pads, axes.value_or(std::vector<int64_t>{}), rank);
  for (size_t i = 0; i < out.size(); ++i) {
    if (full[i] == 0 && full[i + out.size()] == 0) ctx.link_dim(0, i, 0, i);  // not padded
    if (out[i] == kDynamicDim) continue;
    const auto padded = add_no_overflow(out[i], full[i]);
    const auto total = padded ? add_no_overflow(*padded, full[i + out.size()]) : std::nullopt;
    if (!total) {
      ctx.fail("pads ", full[i], "/", full[i + out.size()], " on dimension ", i, " of extent ",
               out[i], " overflow 64-bit sizes");
    }
    out[i] = *total;
    if (out[i] < 0) {
      ctx.fail("pads ", full[i], "/", full[i + out.size()], " would make dimension ", i,
               " negative");
    }
    if (mode == "reflect" && (full[i] >= data.shape[i] || full[i + out.size()] >= data.shape[i]) &&
        (full[i] > 0 || full[i + out.size()] > 0)) {
      ctx.fail("reflect pads ", full[i], "/", full[i + out.size()],
               " must be smaller than the dimension size ", data.shape[i]);
    }
    if ((mode == "edge" || mode == "wrap") && data.shape[i] == 0 &&
        (full[i] > 0 || full[i + out.size()] > 0)) {
      ctx.fail(mode, " padding of an empty dimension ", i);
    }
  }
  ctx.output(0).shape = out;
}

// What ScatterND and ScatterElements require alike: integer indices, a known reduction, updates
// of data's dtype.
void check_scatter_inputs(const InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const ValueInfo& indices = ctx.input(1);
  const ValueInfo& updates = ctx.input(2);
  require_dtype(ctx, "indices", indices.dtype, {DType::kInt32, DType::kInt64});
  const std::string reduction = string_attr(ctx, "reduction", "none");
  if (reduction != "none" && reduction != "add" && reduction != "mul" && reduction != "max" &&
      reduction != "min") {
    ctx.fail("attribute 'reduction' must be none, add, mul, max or min, got '", reduction, "'");
  }
  if (updates.dtype != data.dtype) {
    ctx.fail("updates has dtype ", dtype_name(updates.dtype), " but data has ",
             dtype_name(data.dtype));
  }
  if (reduction != "none") {
    // A reduction computes on the elements: numeric dtypes only (float16/bfloat16 in float32).
    require_dtype(ctx, std::string("data (reduction '").append(reduction).append("')"), data.dtype,
                  {DType::kFloat32, DType::kFloat64, DType::kFloat16, DType::kBFloat16,
                   DType::kInt8, DType::kInt16, DType::kInt32, DType::kInt64, DType::kUInt8,
                   DType::kUInt16, DType::kUInt32, DType::kUInt64});
  }
}

void infer_scatter_nd(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const ValueInfo& indices = ctx.input(1);
  const ValueInfo& updates = ctx.input(2);
  check_scatter_inputs(ctx);
  if (indices.shape.empty()) ctx.fail("indices must have rank >= 1");
  const int64_t k = indices.shape.back();
  if (k != kDynamicDim) {
    if (k < 1 || k > static_cast<int64_t>(data.shape.size())) {
      ctx.fail("indices' last dimension is ", k, "; expected 1..", data.shape.size());
    }
    const size_t expected_rank =
        indices.shape.size() - 1 + data.shape.size() - static_cast<size_t>(k);
    if (updates.shape.size() != expected_rank) {
      ctx.fail("updates has rank ", updates.shape.size(), "; expected ", expected_rank);
    }
  }
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = data.shape;
  ctx.link_same_shape(0, 0);
}

// ScatterElements: data with the updates written (or reduced) at the positions indices names along
// `axis`; indices and updates share a shape of data's rank.
void infer_scatter_elements(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const ValueInfo& indices = ctx.input(1);
  const ValueInfo& updates = ctx.input(2);
  check_scatter_inputs(ctx);
  const auto rank = static_cast<int64_t>(data.shape.size());
  if (rank == 0) ctx.fail("data must have rank >= 1");
  if (indices.shape.size() != data.shape.size()) {
    ctx.fail("indices has rank ", indices.shape.size(), " but data has rank ", rank);
  }
  if (updates.shape != indices.shape && shape_is_static(updates.shape) && shape_is_static(indices.shape)) {
    ctx.fail("updates has shape ", shape_to_string(updates.shape), " but indices has ", shape_to_string(indices.shape));
  }
  normalize_axis(ctx, int_attr(ctx, "axis", 0), rank);
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = data.shape;
  ctx.link_same_shape(0, 0);
}

// ReverseSequence: each batch entry's first sequence_lens[b] steps along time_axis reversed.
void infer_reverse_sequence(InferContext& ctx) {
  const ValueInfo& input = ctx.input(0);
  const ValueInfo& lens = ctx.input(1);
  require_dtype(ctx, "sequence_lens", lens.dtype, {DType::kInt32, DType::kInt64});
  if (input.shape.size() < 2) ctx.fail("input must have rank >= 2, got ", shape_to_string(input.shape));
  const int64_t batch_axis = int_attr(ctx, "batch_axis", 1);
  const int64_t time_axis = int_attr(ctx, "time_axis", 0);
  if ((batch_axis != 0 && batch_axis != 1) || (time_axis != 0 && time_axis != 1) || batch_axis == time_axis) {
    ctx.fail("batch_axis and time_axis must be 0 and 1 in some order, got ", batch_axis, " and ", time_axis);
  }
  const int64_t batch = input.shape[static_cast<size_t>(batch_axis)];
  if (lens.shape.size() != 1 || (batch != kDynamicDim && lens.shape[0] != kDynamicDim && lens.shape[0] != batch)) {
    ctx.fail("sequence_lens must have shape [", batch, "] (the batch), got ", shape_to_string(lens.shape));
  }
  ctx.output(0).dtype = input.dtype;
  ctx.output(0).shape = input.shape;
  ctx.link_same_shape(0, 0);
}

void infer_trilu(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  if (data.shape.size() < 2)
    ctx.fail("input must have rank >= 2, got ", shape_to_string(data.shape));
  int_attr(ctx, "upper", 1);
  if (ctx.has_input(1)) index_vector_length(ctx, 1, "k", true);
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = data.shape;
  ctx.link_same_shape(0, 0);
}

OpDef def(std::string name, int min_inputs, int max_inputs, InferFn infer,
          std::vector<int> value_inputs = {}) {
  OpDef d;
  d.name = std::move(name);
  d.min_inputs = min_inputs;
  d.max_inputs = max_inputs;
  d.infer = infer;
  d.value_inputs = std::move(value_inputs);
  return d;
}

}  // namespace

void register_data_movement_ops(OpRegistry& registry) {
  registry.add(def("Transpose", 1, 1, infer_transpose));
  registry.add(def("Concat", 1, 1 << 20, infer_concat));
  OpDef split = def("Split", 1, 2, infer_split, {1});
  split.max_outputs = 1 << 20;
  registry.add(std::move(split));
  registry.add(def("Slice", 3, 5, infer_slice, {1, 2, 3, 4}));
  registry.add(def("Gather", 2, 2, infer_gather));
  registry.add(def("GatherElements", 2, 2, infer_gather_elements));
  registry.add(def("GatherND", 2, 2, infer_gather_nd));
  registry.add(def("Pad", 2, 4, infer_pad, {1, 3}));
  registry.add(def("ScatterND", 3, 3, infer_scatter_nd));
  registry.add(def("ScatterElements", 3, 3, infer_scatter_elements));
  registry.add(def("ReverseSequence", 2, 2, infer_reverse_sequence));
  registry.add(def("Trilu", 1, 2, infer_trilu));
}

}  // namespace kiln::ops
