// GridSample (opset 16 to 22): X [N, C, D1, ..., Dr] sampled at the normalised coordinates of
// grid [N, H1, ..., Hr, r] (the last entry is the x, innermost-dimension, coordinate), giving
// [N, C, H1, ..., Hr]. Cubic interpolation takes 2-D images only. AffineGrid (opset 20) makes
// such a grid: theta [N, r, r + 1] applied to the normalised coordinates of an output of size
// [N, C, H1, ..., Hr] (a value input: the grid's shape is known once it is).
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

void infer_affine_grid(InferContext& ctx) {
  const int64_t align = ctx.attrs().get_int_or("align_corners", 0);
  if (align != 0 && align != 1) ctx.fail("attribute 'align_corners' must be 0 or 1, got ", align);
  nn::require_float_input(ctx, 0, "theta");
  const Shape& theta = ctx.input(0).shape;
  const ValueInfo& size = ctx.input(1);
  if (size.dtype != DType::kInt64) ctx.fail("input 1 (size) must be int64, got ", dtype_name(size.dtype));
  if (size.shape.size() != 1 || (size.shape[0] != 4 && size.shape[0] != 5)) {
    ctx.fail("input 1 (size) must hold 4 ([N, C, H, W]) or 5 ([N, C, D, H, W]) values, got shape ",
             shape_to_string(size.shape));
  }
  const int64_t spatial = size.shape[0] - 2;
  if (theta.size() != 3 || (theta[1] != kDynamicDim && theta[1] != spatial) ||
      (theta[2] != kDynamicDim && theta[2] != spatial + 1)) {
    ctx.fail("input 0 (theta) must be [N, ", spatial, ", ", spatial + 1, "] for ", spatial, "-D sizes, got ",
             shape_to_string(theta));
  }
  Shape out(static_cast<size_t>(spatial) + 2, kDynamicDim);
  out[0] = theta[0];
  out.back() = spatial;
  if (size.value) {
    const std::vector<int64_t> dims = read_indices(view_of(*size.value));
    for (int64_t d : dims) {
      if (d < 0) ctx.fail("input 1 (size) holds a negative dim: ", shape_to_string(Shape(dims.begin(), dims.end())));
    }
    if (theta[0] != kDynamicDim && dims[0] != theta[0]) {
      ctx.fail("input 1 (size) has batch ", dims[0], " but theta has ", theta[0]);
    }
    out[0] = dims[0];
    for (int64_t d = 0; d < spatial; ++d) out[static_cast<size_t>(d) + 1] = dims[static_cast<size_t>(d) + 2];
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = std::move(out);
}

}  // namespace

void register_grid_sample_ops(OpRegistry& registry) {
  registry.add(OpDef{"GridSample", 2, 2, 1, 1, {}, &nn::infer_with_node_errors<infer_grid_sample>});
  registry.add(OpDef{"AffineGrid", 2, 2, 1, 1, {1}, &nn::infer_with_node_errors<infer_affine_grid>});
}

}  // namespace kiln::ops
