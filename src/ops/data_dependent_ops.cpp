// NonZero, Unique, Compress, NonMaxSuppression: ops whose output sizes depend on the input data
// (OpDef::data_dependent_shapes). Their infer functions leave those dims to
// InferContext::data_dependent_dim, which is kDynamicDim for the builder and the upper bound the
// runtime allocates (docs/architecture.md, "Data-dependent shapes").
#include "ops/data_dependent.hpp"

#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

// numel of a shape with dynamic dims: kDynamicDim when any dim is dynamic.
int64_t known_numel(const Shape& shape) {
  return shape_is_static(shape) ? shape_numel(shape) : kDynamicDim;
}

// NonZero: int64 [rank, N], one column per non-zero element (a scalar gives [0, N]).
void infer_nonzero(InferContext& ctx) {
  const Shape& x = ctx.input(0).shape;
  ctx.output(0).dtype = DType::kInt64;
  ctx.output(0).shape = {static_cast<int64_t>(x.size()), ctx.data_dependent_dim(known_numel(x))};
}

// Unique: Y (X's dtype), indices, inverse_indices, counts (int64).
void infer_unique(InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  const int64_t sorted = ctx.attrs().get_int_or("sorted", 1);
  if (sorted != 0 && sorted != 1) ctx.fail("attribute 'sorted' must be 0 or 1, got ", sorted);
  const std::optional<int64_t> axis = unique_axis(ctx.attrs(), static_cast<int64_t>(x.shape.size()), ctx.node_name());
  const int64_t extent = axis ? x.shape[static_cast<size_t>(*axis)] : known_numel(x.shape);
  const int64_t unique_count = ctx.data_dependent_dim(extent);
  ctx.output(0).dtype = x.dtype;
  if (axis) {
    ctx.output(0).shape = x.shape;
    ctx.output(0).shape[static_cast<size_t>(*axis)] = unique_count;
  } else {
    ctx.output(0).shape = {unique_count};
  }
  const Shape per_output[] = {{unique_count}, {extent}, {unique_count}};
  for (size_t o = 1; o < ctx.num_outputs(); ++o) {
    ctx.output(o).dtype = DType::kInt64;
    ctx.output(o).shape = per_output[o - 1];
  }
}

// Compress: the input's elements (flattened) or slices along `axis` whose condition is true.
void infer_compress(InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  const ValueInfo& condition = ctx.input(1);
  if (condition.dtype != DType::kBool) ctx.fail("condition must be bool, got ", dtype_name(condition.dtype));
  if (condition.shape.size() != 1) ctx.fail("condition must be 1-D, got shape ", shape_to_string(condition.shape));
  ctx.output(0).dtype = x.dtype;
  if (!ctx.attrs().has("axis")) {
    ctx.output(0).shape = {ctx.data_dependent_dim(known_numel(x.shape))};
    return;
  }
  const auto rank = static_cast<int64_t>(x.shape.size());
  if (rank == 0) ctx.fail("attribute 'axis' needs an input of rank >= 1");
  const int64_t axis = normalize_axis(ctx, ctx.attrs().get_int("axis"), rank);
  ctx.output(0).shape = x.shape;
  ctx.output(0).shape[static_cast<size_t>(axis)] = ctx.data_dependent_dim(x.shape[static_cast<size_t>(axis)]);
}

// NonMaxSuppression: int64 [num_selected, 3] rows of (batch, class, box).
void infer_non_max_suppression(InferContext& ctx) {
  const ValueInfo& boxes = ctx.input(0);
  const ValueInfo& scores = ctx.input(1);
  if (boxes.dtype != DType::kFloat32 || scores.dtype != DType::kFloat32) {
    ctx.fail("boxes and scores must be float32, got ", dtype_name(boxes.dtype), " and ", dtype_name(scores.dtype));
  }
  if (boxes.shape.size() != 3 || (boxes.shape[2] != 4 && boxes.shape[2] != kDynamicDim)) {
    ctx.fail("boxes must be [batches, boxes, 4], got ", shape_to_string(boxes.shape));
  }
  if (scores.shape.size() != 3) ctx.fail("scores must be [batches, classes, boxes], got ", shape_to_string(scores.shape));
  for (const auto& [b, s] : {std::pair<size_t, size_t>{0, 0}, {1, 2}}) {
    if (boxes.shape[b] != kDynamicDim && scores.shape[s] != kDynamicDim && boxes.shape[b] != scores.shape[s]) {
      ctx.fail("boxes ", shape_to_string(boxes.shape), " and scores ", shape_to_string(scores.shape),
               " disagree on the number of batches or boxes");
    }
  }
  const int64_t center_point_box = ctx.attrs().get_int_or("center_point_box", 0);
  if (center_point_box != 0 && center_point_box != 1) {
    ctx.fail("attribute 'center_point_box' must be 0 or 1, got ", center_point_box);
  }
  const struct {
    size_t index;
    DType dtype;
    const char* name;
  } scalars[] = {{2, DType::kInt64, "max_output_boxes_per_class"},
                 {3, DType::kFloat32, "iou_threshold"},
                 {4, DType::kFloat32, "score_threshold"}};
  for (const auto& s : scalars) {
    if (!ctx.has_input(s.index)) continue;
    const ValueInfo& in = ctx.input(s.index);
    if (in.dtype != s.dtype) ctx.fail(s.name, " must be ", dtype_name(s.dtype), ", got ", dtype_name(in.dtype));
    if (in.shape.size() > 1 || (in.shape.size() == 1 && in.shape[0] != 1 && in.shape[0] != kDynamicDim)) {
      ctx.fail(s.name, " must hold one element, got shape ", shape_to_string(in.shape));
    }
  }
  // Every (batch, class) pair selects at most every box.
  const int64_t bound = known_numel(scores.shape);
  ctx.output(0).dtype = DType::kInt64;
  ctx.output(0).shape = {ctx.data_dependent_dim(bound), 3};
}

OpDef data_dependent_def(std::string name, int min_inputs, int max_inputs, int max_outputs, InferFn infer) {
  OpDef d;
  d.name = std::move(name);
  d.min_inputs = min_inputs;
  d.max_inputs = max_inputs;
  d.max_outputs = max_outputs;
  d.infer = infer;
  d.data_dependent_shapes = true;
  return d;
}

}  // namespace

std::optional<int64_t> unique_axis(const AttributeMap& attrs, int64_t rank, std::string_view node_name) {
  if (!attrs.has("axis")) return std::nullopt;
  const int64_t axis = attrs.get_int("axis");
  if (axis < -rank || axis >= rank) {
    fail(ErrorCode::kInvalidArgument, "node '", node_name, "' (Unique): axis ", axis, " is out of range for rank ",
         rank);
  }
  return axis < 0 ? axis + rank : axis;
}

void register_data_dependent_ops(OpRegistry& registry) {
  registry.add(data_dependent_def("NonZero", 1, 1, 1, infer_nonzero));
  registry.add(data_dependent_def("Unique", 1, 1, 4, infer_unique));
  registry.add(data_dependent_def("Compress", 2, 2, 1, infer_compress));
  registry.add(data_dependent_def("NonMaxSuppression", 2, 5, 1, infer_non_max_suppression));
}

}  // namespace kiln::ops
