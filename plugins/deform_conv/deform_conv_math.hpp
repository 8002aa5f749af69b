// Deformable convolution geometry and sampling, shared by the CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/box_overlap.hpp"  // KILN_PLUGIN_HOST_DEVICE

namespace kiln::plugins_lib {

struct DeformConvParams {
  int64_t batches, in_channels, height, width;
  int64_t out_channels, out_height, out_width;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t group, offset_group;
  bool has_bias, has_mask;
};

// Bilinear sample of an H x W plane at (h, w); corners outside the plane read as zero, so a point
// at or beyond one pixel outside gives 0 (torchvision deform_conv2d, ONNX GridSample zeros).
template <typename Plane>
KILN_PLUGIN_HOST_DEVICE inline float deform_sample(const Plane& plane, int64_t height,
                                                   int64_t width, float h, float w) {
  if (!(h > -1.0f && w > -1.0f && h < static_cast<float>(height) &&
        w < static_cast<float>(width))) {
    return 0.0f;  // also NaN coordinates
  }
  const int64_t h_low = static_cast<int64_t>(floorf(h));
  const int64_t w_low = static_cast<int64_t>(floorf(w));
  const int64_t h_high = h_low + 1, w_high = w_low + 1;
  const float lh = h - static_cast<float>(h_low), lw = w - static_cast<float>(w_low);
  const float hh = 1.0f - lh, hw = 1.0f - lw;
  float v = 0.0f;
  if (h_low >= 0 && w_low >= 0) v += hh * hw * plane(h_low, w_low);
  if (h_low >= 0 && w_high < width) v += hh * lw * plane(h_low, w_high);
  if (h_high < height && w_low >= 0) v += lh * hw * plane(h_high, w_low);
  if (h_high < height && w_high < width) v += lh * lw * plane(h_high, w_high);
  return v;
}

}  // namespace kiln::plugins_lib
