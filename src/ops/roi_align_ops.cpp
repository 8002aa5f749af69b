// RoiAlign (opsets 10, 16, 22): bilinear samples averaged or maxed over a grid of bins per region.
//   RoiAlign(X [N, C, H, W], rois [R, 4] (x1, y1, x2, y2), batch_indices int64 [R])
//     -> Y [R, C, output_height, output_width]
// Attributes: mode "avg" | "max", output_height/output_width (1), sampling_ratio (0: adaptive,
// ceil(roi extent / output extent) samples per bin), spatial_scale (1.0) and
// coordinate_transformation_mode "half_pixel" (the default from opset 16) | "output_half_pixel"
// (opset 10's behaviour, which the importer writes for opset 10 nodes).
#include <cmath>
#include <string>

#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

void check_roi_align_attributes(const InferContext& ctx) {
  const AttributeMap& attrs = ctx.attrs();
  const std::string mode = attrs.get_string_or("mode", "avg");
  if (mode != "avg" && mode != "max") {
    ctx.fail("attribute 'mode' must be \"avg\" or \"max\", got \"", mode, "\"");
  }
  const std::string transform =
      attrs.get_string_or("coordinate_transformation_mode", "half_pixel");
  if (transform != "half_pixel" && transform != "output_half_pixel") {
    ctx.fail("attribute 'coordinate_transformation_mode' must be \"half_pixel\" or "
             "\"output_half_pixel\", got \"",
             transform, "\"");
  }
  for (const char* name : {"output_height", "output_width"}) {
    const int64_t value = attrs.get_int_or(name, 1);
    if (value < 1) ctx.fail("attribute '", name, "' must be >= 1, got ", value);
  }
  const int64_t sampling_ratio = attrs.get_int_or("sampling_ratio", 0);
  if (sampling_ratio < 0) {
    ctx.fail("attribute 'sampling_ratio' must be >= 0 (0: adaptive), got ", sampling_ratio);
  }
  const float spatial_scale = attrs.get_float_or("spatial_scale", 1.0f);
  if (!std::isfinite(spatial_scale)) {
    ctx.fail("attribute 'spatial_scale' must be finite, got ", spatial_scale);
  }
}

void infer_roi_align(InferContext& ctx) {
  check_roi_align_attributes(ctx);
  nn::require_float_or_float64_input(ctx, 0, "X");
  const Shape& x = ctx.input(0).shape;
  if (x.size() != 4) ctx.fail("input 0 (X) must be 4-D [N, C, H, W], got ", shape_to_string(x));
  if (ctx.input(1).dtype != ctx.input(0).dtype) {
    ctx.fail("input 1 (rois) has dtype ", dtype_name(ctx.input(1).dtype), " but X has ",
             dtype_name(ctx.input(0).dtype));
  }
  const Shape& rois = ctx.input(1).shape;
  if (rois.size() != 2 || (rois[1] != 4 && rois[1] != kDynamicDim)) {
    ctx.fail("input 1 (rois) must have shape [num_rois, 4], got ", shape_to_string(rois));
  }
  if (ctx.input(2).dtype != DType::kInt64) {
    ctx.fail("input 2 (batch_indices) must be int64, got ", dtype_name(ctx.input(2).dtype));
  }
  const Shape& indices = ctx.input(2).shape;
  if (indices.size() != 1) {
    ctx.fail("input 2 (batch_indices) must be 1-D [num_rois], got ", shape_to_string(indices));
  }
  if (rois[0] != kDynamicDim && indices[0] != kDynamicDim && rois[0] != indices[0]) {
    ctx.fail("input 1 (rois) has ", rois[0], " regions but input 2 (batch_indices) has ",
             indices[0]);
  }
  const int64_t regions = rois[0] != kDynamicDim ? rois[0] : indices[0];
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = {regions, x[1], ctx.attrs().get_int_or("output_height", 1),
                         ctx.attrs().get_int_or("output_width", 1)};
}

}  // namespace

void register_roi_align_ops(OpRegistry& registry) {
  registry.add(OpDef{"RoiAlign", 3, 3, 1, 1, {}, &nn::infer_with_node_errors<infer_roi_align>});
}

}  // namespace kiln::ops
