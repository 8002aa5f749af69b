// GridSample (opset 16 to 22): X [N, C, D1, ..., Dr] sampled at the normalised coordinates of
// grid [N, H1, ..., Hr, r] (the last entry is the x, innermost-dimension, coordinate), giving
// [N, C, H1, ..., Hr]. Cubic interpolation takes 2-D images only.
#include "ops/nn_grid_sample.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;

void infer_grid_sample(InferContext& ctx) {
  const nn::GridSampleParams params = nn::read_grid_sample_params(label_of(ctx), ctx.attrs());
  nn::require_float_input(ctx, 0, "X");
  nn::require_float_input(ctx, 1, "grid");
  const Shape& x = ctx.input(0).shape;
  const Shape& grid = ctx.input(1).shape;
  if (x.size() < 3) ctx.fail("X must have rank >= 3 ([N, C, spatial...]), got ", shape_to_string(x));
  const size_t spatial = x.size() - 2;
  if (grid.size() != x.size()) {
    ctx.fail("grid must have rank ", x.size(), " (X's), got ", shape_to_string(grid));
  }
  if (grid.back() != kDynamicDim && grid.back() != static_cast<int64_t>(spatial)) {
    ctx.fail("grid's last dim must be ", spatial, " (X's spatial rank), got ", grid.back());
  }
  if (x[0] != kDynamicDim && grid[0] != kDynamicDim && x[0] != grid[0]) {
    ctx.fail("grid's batch ", grid[0], " differs from X's ", x[0]);
  }
  if (params.mode == nn::GridSampleMode::kCubic && spatial != 2) {
    ctx.fail("cubic interpolation takes 2-D images (X of rank 4), got rank ", x.size());
  }
  Shape out{x[0], x[1]};
  out.insert(out.end(), grid.begin() + 1, grid.end() - 1);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = std::move(out);
}

}  // namespace

void register_grid_sample_ops(OpRegistry& registry) {
  registry.add(OpDef{"GridSample", 2, 2, 1, 1, {}, &nn::infer_with_node_errors<infer_grid_sample>});
}

}  // namespace kiln::ops
