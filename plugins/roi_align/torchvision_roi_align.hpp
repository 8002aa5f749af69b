// kiln::TorchvisionRoiAlign: torchvision.ops.roi_align with torchvision's op signature, for
// kiln.compile's mapping of torchvision::roi_align: inputs input [N, C, H, W], rois [K, 5]
// (batch index, x1, y1, x2, y2); fields spatial_scale (float, 1), pooled_height, pooled_width
// (>= 1, default 1), sampling_ratio (default -1: adaptive), aligned (0/1, default 0). Output
// [K, C, pooled_height, pooled_width]. The math of kiln::RoiAlign's avg mode (aligned=1:
// half_pixel, aligned=0: output_half_pixel).
#pragma once

#include "common/plugin_support.hpp"
#include "roi_align/roi_align_math.hpp"

namespace kiln::plugins_lib {

class TorchvisionRoiAlign {
 public:
  TorchvisionRoiAlign(const kiln_plugin_field* fields, int32_t num_fields);
  const StoredFields& stored_fields() const { return fields_; }
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  int64_t workspace(const kiln_plugin_tensor_desc*, int32_t, const kiln_plugin_tensor_desc*,
                    int32_t) const {
    return 0;
  }
  // Refuses a batch index outside [0, N).
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  // CUDA builds: roi_align_cuda.cu's kernel (bad batch indices give zeros there).
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 private:
  RoiAlignParams params_for(const kiln_plugin_tensor& x) const;

  float spatial_scale_ = 1.0f;
  int64_t pooled_height_ = 1, pooled_width_ = 1, sampling_ratio_ = -1, aligned_ = 0;
  StoredFields fields_;
};

extern const kiln_plugin_creator kTorchvisionRoiAlignCreator;

}  // namespace kiln::plugins_lib
