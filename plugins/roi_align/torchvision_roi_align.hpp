// kiln::TorchvisionRoiAlign: torchvision.ops.roi_align with torchvision's op signature, for
// kiln.compile's mapping of torchvision::roi_align: inputs input [N, C, H, W], rois [K, 5]
// (batch index, x1, y1, x2, y2); fields spatial_scale (float, 1), pooled_height, pooled_width
// (>= 1, default 1), sampling_ratio (default -1: adaptive), aligned (0/1, default 0). Output
// [K, C, pooled_height, pooled_width]. The math and kernels of kiln::RoiAlign's avg mode
// (aligned=1: half_pixel, aligned=0: output_half_pixel); both backends refuse a batch index
// outside [0, N).
#pragma once

#include "common/plugin_support.hpp"

namespace kiln::plugins_lib {

extern const kiln_plugin_creator kTorchvisionRoiAlignCreator;

}  // namespace kiln::plugins_lib
