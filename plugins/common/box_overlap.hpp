// Intersection over union of two axis-aligned boxes, shared by the NMS plugins. Host and device.
#pragma once

#if defined(__CUDACC__)
#define KILN_PLUGIN_HOST_DEVICE __host__ __device__
#else
#define KILN_PLUGIN_HOST_DEVICE
#endif

namespace kiln::plugins_lib {

// Corners (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2. Returns 0 when the boxes do not overlap or
// the union is empty, so an empty box never suppresses another.
KILN_PLUGIN_HOST_DEVICE inline float box_iou(const float* a, const float* b) {
  const float ix1 = a[0] > b[0] ? a[0] : b[0];
  const float iy1 = a[1] > b[1] ? a[1] : b[1];
  const float ix2 = a[2] < b[2] ? a[2] : b[2];
  const float iy2 = a[3] < b[3] ? a[3] : b[3];
  const float iw = ix2 - ix1 > 0.0f ? ix2 - ix1 : 0.0f;
  const float ih = iy2 - iy1 > 0.0f ? iy2 - iy1 : 0.0f;
  const float intersection = iw * ih;
  if (intersection <= 0.0f) return 0.0f;
  const float area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const float area_b = (b[2] - b[0]) * (b[3] - b[1]);
  const float union_area = area_a + area_b - intersection;
  return union_area > 0.0f ? intersection / union_area : 0.0f;
}

}  // namespace kiln::plugins_lib
