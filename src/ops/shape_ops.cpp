// Shape ops: ops that change or report shapes, and ops that create tensors from shapes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>

#include "base/checked_math.hpp"
#include "ops/op_families.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::ops {
namespace {

// Symbolic dims of a Reshape to a known `target`: a 0 (allowzero off) copies the input's dim; the
// -1 is the input's one dynamic dim when every other dim on both sides is static and the static
// products agree (then numel / product is that dim, whatever its size).
void link_reshape_dims(InferContext& ctx, const Shape& in, const std::vector<int64_t>& target, bool allowzero,
                       const Shape& out) {
  for (size_t i = 0; i < target.size(); ++i)
    if (target[i] == 0 && !allowzero) ctx.link_dim(0, i, 0, i);
  const auto minus_one = std::find(target.begin(), target.end(), -1);
  if (minus_one == target.end()) return;
  const auto k = static_cast<size_t>(minus_one - target.begin());
  if (out[k] != kDynamicDim) return;
  auto static_product = [](const Shape& shape, size_t skip, size_t* dynamic_at, size_t* dynamic_count) {
    std::optional<int64_t> product = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i == skip) continue;
      if (shape[i] == kDynamicDim) {
        *dynamic_at = i;
        ++*dynamic_count;
      } else if (product) {
        product = mul_no_overflow(*product, shape[i]);
      }
    }
    return product;
  };
  size_t in_dynamic = 0, in_count = 0, out_dynamic = 0, out_count = 0;
  const std::optional<int64_t> in_product = static_product(in, SIZE_MAX, &in_dynamic, &in_count);
  const std::optional<int64_t> out_product = static_product(out, k, &out_dynamic, &out_count);
  if (in_count == 1 && out_count == 0 && in_product && out_product && *in_product == *out_product && *in_product != 0) {
    ctx.link_dim(0, k, 0, in_dynamic);
  }
}

void infer_reshape(InferContext& ctx) {
  const int64_t allowzero = int_attr(ctx, "allowzero", 0);
  const ValueInfo& data = ctx.input(0);
  const int64_t rank = index_vector_length(ctx, 1, "shape");
  if (rank == kDynamicDim) ctx.fail("the length of the 'shape' input must be known");
  ctx.output(0).dtype = data.dtype;
  if (const auto target = known_indices(ctx, 1, "shape")) {
    ctx.output(0).shape = reshape_output_shape(node_ref(ctx), data.shape, *target, allowzero != 0);
    if (ctx.records_dim_links()) link_reshape_dims(ctx, data.shape, *target, allowzero != 0, ctx.output(0).shape);
  } else if (rank == 1 && shape_is_static(data.shape)) {
    ctx.output(0).shape = {shape_numel(data.shape)};
  } else {
    ctx.output(0).shape = Shape(static_cast<size_t>(rank), kDynamicDim);
  }
}

// Product of dims [begin, end), or kDynamicDim when one of them is dynamic.
int64_t dims_product(const Shape& shape, size_t begin, size_t end) {
  int64_t product = 1;
  for (size_t i = begin; i < end; ++i) {
    if (shape[i] == kDynamicDim) return kDynamicDim;
    product *= shape[i];
  }
  return product;
}

void infer_flatten(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const auto rank = static_cast<int64_t>(data.shape.size());
  int64_t axis = int_attr(ctx, "axis", 1);
  if (axis < -rank || axis > rank) {
    ctx.fail("attribute 'axis' is ", axis, "; expected a value in [", -rank, ", ", rank, "]");
  }
  if (axis < 0) axis += rank;
  const auto split = static_cast<size_t>(axis);
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = {dims_product(data.shape, 0, split),
                         dims_product(data.shape, split, data.shape.size())};
  // Symbolic dims: a side made of one input dim is that dim.
  if (split == 1) ctx.link_dim(0, 0, 0, 0);
  if (data.shape.size() == split + 1) ctx.link_dim(0, 1, 0, split);
}

void infer_squeeze(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const auto rank = static_cast<int64_t>(data.shape.size());
  ctx.output(0).dtype = data.dtype;
  Shape out;
  if (!ctx.has_input(1)) {
    for (int64_t d : data.shape) {
      if (d == kDynamicDim) {
        ctx.fail("Squeeze without axes needs every input dimension to be known, got ",
                 shape_to_string(data.shape),
                 " (whether a dynamic dim is 1 at run time decides the output's rank, and kiln "
                 "engines have static ranks)");
      }
      if (d != 1) out.push_back(d);
    }
    ctx.output(0).shape = out;
    return;
  }
  const int64_t count = index_vector_length(ctx, 1, "axes");
  if (count == kDynamicDim) ctx.fail("the length of the 'axes' input must be known");
  const auto axes = known_indices(ctx, 1, "axes");
  if (!axes) {
    ctx.output(0).shape =
        Shape(static_cast<size_t>(std::max<int64_t>(rank - count, 0)), kDynamicDim);
    return;
  }
  const std::vector<int64_t> dims = resolve_axes(node_ref(ctx), *axes, axes->size(), rank, "axes");
  std::vector<bool> drop(static_cast<size_t>(rank), false);
  for (int64_t axis : dims) {
    const int64_t d = data.shape[static_cast<size_t>(axis)];
    if (d != 1 && d != kDynamicDim) {
      ctx.fail("cannot squeeze axis ", axis, " of size ", d, " (input shape ",
               shape_to_string(data.shape), ")");
    }
    drop[static_cast<size_t>(axis)] = true;
  }
  for (int64_t i = 0; i < rank; ++i) {
    if (drop[static_cast<size_t>(i)]) continue;
    ctx.link_dim(0, out.size(), 0, static_cast<size_t>(i));
    out.push_back(data.shape[static_cast<size_t>(i)]);
  }
  ctx.output(0).shape = out;
}

void infer_unsqueeze(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  // A scalar axes names one axis: ONNX's shape inference, its reference and ONNX Runtime take it.
  const int64_t count = index_vector_length(ctx, 1, "axes", true);
  if (count == kDynamicDim) ctx.fail("the length of the 'axes' input must be known");
  const int64_t out_rank = static_cast<int64_t>(data.shape.size()) + count;
  ctx.output(0).dtype = data.dtype;
  const auto axes = known_indices(ctx, 1, "axes", true);
  if (!axes) {
    ctx.output(0).shape = Shape(static_cast<size_t>(out_rank), kDynamicDim);
    return;
  }
  const std::vector<int64_t> dims =
      resolve_axes(node_ref(ctx), *axes, axes->size(), out_rank, "axes");
  Shape out(static_cast<size_t>(out_rank), 0);
  std::vector<bool> inserted(static_cast<size_t>(out_rank), false);
  for (int64_t axis : dims) inserted[static_cast<size_t>(axis)] = true;
  size_t next = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (inserted[i]) {
      out[i] = 1;
      continue;
    }
    ctx.link_dim(0, i, 0, next);
    out[i] = data.shape[next++];
  }
  ctx.output(0).shape = out;
}

void infer_shape(InferContext& ctx) {
  const auto rank = static_cast<int64_t>(ctx.input(0).shape.size());
  const auto [start, end] =
      shape_op_range(int_attr(ctx, "start", 0), int_attr(ctx, "end", rank), rank);
  ctx.output(0).dtype = DType::kInt64;
  ctx.output(0).shape = {end - start};
}

void infer_size(InferContext& ctx) {
  ctx.output(0).dtype = DType::kInt64;
  ctx.output(0).shape = {};
}

void infer_identity(InferContext& ctx) {
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = ctx.input(0).shape;
  ctx.link_same_shape(0, 0);
}

void infer_dropout(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  if (ctx.has_input(1) && !is_floating(ctx.input(1).dtype)) {
    ctx.fail("ratio must be a floating point scalar, got ", dtype_name(ctx.input(1).dtype));
  }
  if (ctx.has_input(2)) {
    const ValueInfo& mode = ctx.input(2);
    if (mode.dtype != DType::kBool) {
      ctx.fail("training_mode must be bool, got ", dtype_name(mode.dtype));
    }
    if (mode.value && mode.value->numel() > 0 && mode.value->bytes[0] != 0) {
      node_ref(ctx).fail(ErrorCode::kUnsupported,
                         "training_mode=true is not supported (kiln runs inference only)");
    }
  }
  ctx.output(0).dtype = data.dtype;
  ctx.output(0).shape = data.shape;
  ctx.link_same_shape(0, 0);
  if (ctx.num_outputs() > 1) {
    ctx.output(1).dtype = DType::kBool;
    ctx.output(1).shape = data.shape;
    ctx.link_same_shape(1, 0);
  }
}

void infer_expand(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const int64_t count = index_vector_length(ctx, 1, "shape");
  if (count == kDynamicDim) ctx.fail("the length of the 'shape' input must be known");
  ctx.output(0).dtype = data.dtype;
  Shape target(static_cast<size_t>(count), kDynamicDim);
  if (const auto values = known_indices(ctx, 1, "shape")) {
    for (size_t i = 0; i < values->size(); ++i) {
      if ((*values)[i] < 0) ctx.fail("shape has negative dimension ", (*values)[i]);
    }
    target = *values;
    // Symbolic dims: where the shape asks for 1 (or is too short to ask), the dim is data's.
    const size_t rank = std::max(data.shape.size(), target.size());
    for (size_t d = rank - data.shape.size(); d < rank; ++d) {
      const bool asks_one = d + target.size() < rank || target[d + target.size() - rank] == 1;
      if (asks_one) ctx.link_dim(0, d, 0, d + data.shape.size() - rank);
    }
  }
  ctx.output(0).shape = broadcast_shapes(ctx, data.shape, target);
}

void infer_constant_of_shape(InferContext& ctx) {
  const Attribute* value = ctx.attrs().find("value");
  DType dtype = DType::kFloat32;
  if (value) {
    if (value->kind != Attribute::Kind::kTensor || !value->tensor) {
      ctx.fail("attribute 'value' must be a tensor, got ", attribute_kind_name(value->kind));
    }
    if (value->tensor->numel() != 1) {
      ctx.fail("attribute 'value' must hold exactly one element, got shape ",
               shape_to_string(value->tensor->shape));
    }
    dtype = value->tensor->dtype;
  }
  const int64_t rank = index_vector_length(ctx, 0, "input");
  if (rank == kDynamicDim) ctx.fail("the length of the shape input must be known");
  ctx.output(0).dtype = dtype;
  if (const auto dims = known_indices(ctx, 0, "input")) {
    for (int64_t d : *dims) {
      if (d < 0) ctx.fail("shape has negative dimension ", d);
    }
    ctx.output(0).shape = *dims;
  } else {
    ctx.output(0).shape = Shape(static_cast<size_t>(rank), kDynamicDim);
  }
}

void infer_range(InferContext& ctx) {
  const DType dtype = ctx.input(0).dtype;
  // Opset 27's stash_type names the type the elements are computed in; 1 (float) is what kiln does.
  if (const int64_t stash = ctx.attrs().get_int_or("stash_type", 1); stash != 1) {
    kiln::fail(ErrorCode::kUnsupported, "node '", ctx.node_name(), "' (Range): attribute 'stash_type' is ",
               stash, "; kiln computes ranges as given by 1 (float) only");
  }
  require_dtype(ctx, "start", dtype,
                {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64, DType::kFloat16,
                 DType::kBFloat16});
  bool all_known = true;
  const char* names[3] = {"start", "limit", "delta"};
  for (size_t i = 0; i < 3; ++i) {
    const ValueInfo& in = ctx.input(i);
    if (in.dtype != dtype) {
      ctx.fail(names[i], " has dtype ", dtype_name(in.dtype), " but start has ", dtype_name(dtype));
    }
    if (shape_is_static(in.shape) && shape_numel(in.shape) != 1) {
      ctx.fail(names[i], " must be a scalar, got shape ", shape_to_string(in.shape));
    }
    all_known &= in.value != nullptr && in.value->numel() == 1;
  }
  ctx.output(0).dtype = dtype;
  if (!all_known) {
    ctx.output(0).shape = {kDynamicDim};
    return;
  }
  ctx.output(0).shape = {range_length(node_ref(ctx), view_of(*ctx.input(0).value),
                                      view_of(*ctx.input(1).value), view_of(*ctx.input(2).value))};
}

void infer_eye_like(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  if (data.shape.size() != 2) ctx.fail("input must be 2-D, got ", shape_to_string(data.shape));
  int_attr(ctx, "k", 0);
  const int64_t dtype = int_attr(ctx, "dtype", static_cast<int64_t>(data.dtype));
  if (dtype < 0 || dtype > 255 || !is_valid_dtype(static_cast<int>(dtype))) {
    ctx.fail("attribute 'dtype' is not a supported dtype number: ", dtype);
  }
  ctx.output(0).dtype = static_cast<DType>(dtype);
  ctx.output(0).shape = data.shape;
  ctx.link_same_shape(0, 0);
}

void infer_tile(InferContext& ctx) {
  const ValueInfo& data = ctx.input(0);
  const int64_t count = index_vector_length(ctx, 1, "repeats");
  if (count != kDynamicDim && count != static_cast<int64_t>(data.shape.size())) {
    ctx.fail("repeats has ", count, " entries but the input has rank ", data.shape.size());
  }
  ctx.output(0).dtype = data.dtype;
  Shape out(data.shape.size(), kDynamicDim);
  if (const auto repeats = known_indices(ctx, 1, "repeats")) {
    for (size_t i = 0; i < out.size(); ++i) {
      if ((*repeats)[i] < 0) ctx.fail("repeats has negative entry ", (*repeats)[i]);
      if (data.shape[i] != kDynamicDim) {
        const auto tiled = mul_no_overflow(data.shape[i], (*repeats)[i]);
        if (!tiled) {
          ctx.fail("dimension ", i, " of ", data.shape[i], " repeated ", (*repeats)[i],
                   " times overflows 64-bit sizes");
        }
        out[i] = *tiled;
      }
      if ((*repeats)[i] == 0) out[i] = 0;
      if ((*repeats)[i] == 1) ctx.link_dim(0, i, 0, i);
    }
  }
  ctx.output(0).shape = out;
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

void register_shape_ops(OpRegistry& registry) {
  registry.add(def("Reshape", 2, 2, infer_reshape, {1}));
  registry.add(def("Flatten", 1, 1, infer_flatten));
  registry.add(def("Squeeze", 1, 2, infer_squeeze, {1}));
  registry.add(def("Unsqueeze", 2, 2, infer_unsqueeze, {1}));
  registry.add(def("Shape", 1, 1, infer_shape));
  registry.add(def("Size", 1, 1, infer_size));
  registry.add(def("Identity", 1, 1, infer_identity));
  OpDef dropout = def("Dropout", 1, 3, infer_dropout);
  dropout.max_outputs = 2;
  registry.add(std::move(dropout));
  registry.add(def("Expand", 2, 2, infer_expand, {1}));
  registry.add(def("ConstantOfShape", 1, 1, infer_constant_of_shape, {0}));
  registry.add(def("Range", 3, 3, infer_range, {0, 1, 2}));
  registry.add(def("EyeLike", 1, 1, infer_eye_like));
  registry.add(def("Tile", 2, 2, infer_tile, {1}));
}

}  // namespace kiln::ops
