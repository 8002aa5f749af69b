// kiln::RoiAlign: ONNX RoiAlign (opset 16) semantics; torchvision roi_align with aligned=True is
// coordinate_transformation_mode half_pixel, aligned=False output_half_pixel (README.md here).
//   fields (ONNX names and defaults): coordinate_transformation_mode ("half_pixel" or
//           "output_half_pixel"), mode ("avg" or "max"), output_height, output_width (>= 1,
//           default 1), sampling_ratio (>= 0, default 0: adaptive), spatial_scale (> 0, default 1)
//   inputs: X [N, C, H, W], rois [R, 4] (x1, y1, x2, y2; X's dtype), batch_indices [R] (int64 or
//           int32)
//   output: [R, C, output_height, output_width] in X's dtype
// Both backends refuse a batch index outside [0, N) (roi_align_run.hpp says how CUDA learns it).
#pragma once

#include "common/plugin_support.hpp"

namespace kiln::plugins_lib {

extern const kiln_plugin_creator kRoiAlignCreator;

}  // namespace kiln::plugins_lib
