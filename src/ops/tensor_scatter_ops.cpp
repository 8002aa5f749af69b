// TensorScatter (opset 24): see tensor_scatter.hpp. Any dtype (the values are copied).
//   TensorScatter(past_cache, update, write_indices?) -> present_cache
#include <string>

#include "ops/op_families.hpp"
#include "ops/tensor_scatter.hpp"

namespace kiln::ops {
namespace nn {

TensorScatterGeometry resolve_tensor_scatter(const NodeLabel& node, const AttributeMap& attrs,
                                             const Shape& past_cache, const Shape& update,
                                             const Shape* write_indices) {
  TensorScatterGeometry g;
  const std::string mode = attrs.get_string_or("mode", "linear");
  if (mode != "linear" && mode != "circular") {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'mode' must be linear or circular, got '",
            mode, "'");
  }
  g.circular = mode == "circular";
  const auto rank = static_cast<int64_t>(past_cache.size());
  if (rank < 2) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 0 (past_cache) must have rank >= 2 (batch and sequence axes), got ",
            shape_to_string(past_cache));
  }
  int64_t axis = attrs.get_int_or("axis", -2);
  if (axis < -rank || axis >= rank) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'axis' ", axis,
            " is out of range for rank ", rank);
  }
  if (axis < 0) axis += rank;
  if (axis == 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'axis' must not name the batch axis 0");
  }
  g.axis = static_cast<size_t>(axis);
  bool fits = update.size() == past_cache.size();
  for (size_t i = 0; fits && i < past_cache.size(); ++i) {
    const int64_t cache = past_cache[i], upd = update[i];
    if (cache == kDynamicDim || upd == kDynamicDim) continue;
    fits = i == g.axis ? upd <= cache : upd == cache;
  }
  if (!fits) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (update) ", shape_to_string(update),
            " must have past_cache's shape ", shape_to_string(past_cache), " except on axis ",
            g.axis, ", where it may be shorter");
  }
  if (write_indices) {
    const Shape& w = *write_indices;
    if (w.size() != 1 ||
        (w[0] != kDynamicDim && past_cache[0] != kDynamicDim && w[0] != past_cache[0])) {
      fail_at(node, ErrorCode::kInvalidArgument,
              "input 2 (write_indices) must be [batch = ", past_cache[0], "], got ",
              shape_to_string(w));
    }
  }
  return g;
}

}  // namespace nn

namespace {

void infer_tensor_scatter(InferContext& ctx) {
  if (ctx.input(1).dtype != ctx.input(0).dtype) {
    ctx.fail("input 1 (update) has dtype ", dtype_name(ctx.input(1).dtype), " but past_cache has ",
             dtype_name(ctx.input(0).dtype));
  }
  const bool indexed = ctx.has_input(2);
  if (indexed && ctx.input(2).dtype != DType::kInt64) {
    ctx.fail("input 2 (write_indices) must be int64, got ", dtype_name(ctx.input(2).dtype));
  }
  nn::resolve_tensor_scatter(nn::label_of(ctx), ctx.attrs(), ctx.input(0).shape, ctx.input(1).shape,
                             indexed ? &ctx.input(2).shape : nullptr);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = ctx.input(0).shape;
}

}  // namespace

void register_tensor_scatter_ops(OpRegistry& registry) {
  registry.add(
      OpDef{"TensorScatter", 2, 3, 1, 1, {}, &nn::infer_with_node_errors<infer_tensor_scatter>});
}

}  // namespace kiln::ops
