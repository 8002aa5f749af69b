// Softmax and LogSoftmax along one axis (opset 13 form).
#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

void infer_softmax(InferContext& ctx) {
  nn::require_float_or_float64_input(ctx, 0, "input");
  const Shape& x = ctx.input(0).shape;
  if (x.empty()) ctx.fail("input must have rank >= 1, got a scalar");
  normalize_axis(ctx, ctx.attrs().get_int_or("axis", -1), static_cast<int64_t>(x.size()));
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = x;
  ctx.link_same_shape(0, 0);
}

}  // namespace

void register_softmax_ops(OpRegistry& registry) {
  registry.add(OpDef{"Softmax", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_softmax>});
  registry.add(OpDef{"LogSoftmax", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_softmax>});
}

}  // namespace kiln::ops
