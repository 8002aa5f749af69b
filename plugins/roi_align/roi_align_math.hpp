// One RoiAlign output element, shared by the CPU and CUDA kernels (host and device). ONNX RoiAlign
// semantics as ONNX Runtime computes them, including its max mode: the maximum over sampling
// points of the largest of the four weighted corner values (not the maximum of interpolated
// values).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/box_overlap.hpp"  // KILN_PLUGIN_HOST_DEVICE

namespace kiln::plugins_lib {

struct RoiAlignParams {
  int64_t channels, height, width;
  int64_t pooled_height, pooled_width;
  int64_t sampling_ratio;  // <= 0: adaptive, ceil(roi size / pooled size) per axis
  float spatial_scale;
  bool half_pixel;  // coordinate_transformation_mode half_pixel (torchvision aligned=True)
  bool max_mode;
};

// `plane(y, x)` reads channel c of the roi's image at integer (y, x). `roi` is (x1, y1, x2, y2) in
// input coordinates before spatial_scale.
template <typename Plane>
KILN_PLUGIN_HOST_DEVICE inline float roi_align_element(const RoiAlignParams& p, const float* roi,
                                                       int64_t ph, int64_t pw, const Plane& plane) {
  const float offset = p.half_pixel ? 0.5f : 0.0f;
  const float start_w = roi[0] * p.spatial_scale - offset;
  const float start_h = roi[1] * p.spatial_scale - offset;
  float roi_w = roi[2] * p.spatial_scale - offset - start_w;
  float roi_h = roi[3] * p.spatial_scale - offset - start_h;
  if (!p.half_pixel) {  // output_half_pixel: rois at least one pixel wide
    roi_w = roi_w > 1.0f ? roi_w : 1.0f;
    roi_h = roi_h > 1.0f ? roi_h : 1.0f;
  }
  const float bin_h = roi_h / static_cast<float>(p.pooled_height);
  const float bin_w = roi_w / static_cast<float>(p.pooled_width);
  const int64_t grid_h =
      p.sampling_ratio > 0
          ? p.sampling_ratio
          : static_cast<int64_t>(ceilf(roi_h / static_cast<float>(p.pooled_height)));
  const int64_t grid_w =
      p.sampling_ratio > 0
          ? p.sampling_ratio
          : static_cast<int64_t>(ceilf(roi_w / static_cast<float>(p.pooled_width)));
  const int64_t count = grid_h * grid_w > 1 ? grid_h * grid_w : 1;
  float sum = 0.0f;
  float max_value = 0.0f;
  bool first = true;
  for (int64_t iy = 0; iy < grid_h; ++iy) {
    const float yy = start_h + static_cast<float>(ph) * bin_h +
                     (static_cast<float>(iy) + 0.5f) * bin_h / static_cast<float>(grid_h);
    for (int64_t ix = 0; ix < grid_w; ++ix) {
      float x = start_w + static_cast<float>(pw) * bin_w +
                (static_cast<float>(ix) + 0.5f) * bin_w / static_cast<float>(grid_w);
      float y = yy;
      float w1 = 0, w2 = 0, w3 = 0, w4 = 0;
      int64_t y_low = 0, y_high = 0, x_low = 0, x_high = 0;
      // Points more than one pixel outside contribute zeros (and still count).
      if (!(y < -1.0f || y > static_cast<float>(p.height) || x < -1.0f ||
            x > static_cast<float>(p.width))) {
        if (y <= 0) y = 0;
        if (x <= 0) x = 0;
        y_low = static_cast<int64_t>(y);
        x_low = static_cast<int64_t>(x);
        if (y_low >= p.height - 1) {
          y_high = y_low = p.height - 1;
          y = static_cast<float>(y_low);
        } else {
          y_high = y_low + 1;
        }
        if (x_low >= p.width - 1) {
          x_high = x_low = p.width - 1;
          x = static_cast<float>(x_low);
        } else {
          x_high = x_low + 1;
        }
        const float ly = y - static_cast<float>(y_low), lx = x - static_cast<float>(x_low);
        const float hy = 1.0f - ly, hx = 1.0f - lx;
        w1 = hy * hx;
        w2 = hy * lx;
        w3 = ly * hx;
        w4 = ly * lx;
      }
      const float v1 = w1 * plane(y_low, x_low), v2 = w2 * plane(y_low, x_high);
      const float v3 = w3 * plane(y_high, x_low), v4 = w4 * plane(y_high, x_high);
      if (p.max_mode) {
        float v = v1 > v2 ? v1 : v2;
        v = v > v3 ? v : v3;
        v = v > v4 ? v : v4;
        max_value = first || v > max_value ? v : max_value;
        first = false;
      } else {
        sum += v1 + v2 + v3 + v4;
      }
    }
  }
  if (p.max_mode) return first ? 0.0f : max_value;
  return sum / static_cast<float>(count);
}

}  // namespace kiln::plugins_lib
