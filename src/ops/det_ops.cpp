// Det: the determinant of each square matrix in the last two dims of X [*, M, M], giving [*].
#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

void infer_det(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "X");
  const Shape& x = ctx.input(0).shape;
  if (x.size() < 2) ctx.fail("X must have rank >= 2 ([*, M, M]), got ", shape_to_string(x));
  const int64_t rows = x[x.size() - 2], cols = x.back();
  if (rows != kDynamicDim && cols != kDynamicDim && rows != cols) {
    ctx.fail("X's last two dims must be square, got ", shape_to_string(x));
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = Shape(x.begin(), x.end() - 2);
}

}  // namespace

void register_det_ops(OpRegistry& registry) {
  registry.add(OpDef{"Det", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_det>});
}

}  // namespace kiln::ops
