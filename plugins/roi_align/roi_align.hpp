// kiln::RoiAlign: ONNX RoiAlign (opset 16) semantics; torchvision roi_align with aligned=True is
// coordinate_transformation_mode half_pixel, aligned=False output_half_pixel (README.md here).
#pragma once

#include "common/plugin_support.hpp"
#include "roi_align/roi_align_math.hpp"

namespace kiln::plugins_lib {

class RoiAlign {
 public:
  // Fields (ONNX names and defaults): coordinate_transformation_mode ("half_pixel" or
  // "output_half_pixel"), mode ("avg" or "max"), output_height, output_width (>= 1, default 1),
  // sampling_ratio (>= 0, default 0: adaptive), spatial_scale (> 0, default 1).
  RoiAlign(const kiln_plugin_field* fields, int32_t num_fields);
  const StoredFields& stored_fields() const { return fields_; }
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  // Inputs X [N, C, H, W], rois [R, 4] (x1, y1, x2, y2; X's dtype), batch_indices [R] (int64 or
  // int32). Output [R, C, output_height, output_width] in X's dtype.
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  int64_t workspace(const kiln_plugin_tensor_desc*, int32_t, const kiln_plugin_tensor_desc*,
                    int32_t) const {
    return 0;
  }
  // Refuses a batch index outside [0, N).
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  // Enqueues one thread per output element on `stream` (CUDA builds); batch indices outside
  // [0, N) give zeros there, as the kernel cannot fail. Without CUDA: KILN_ERROR_UNSUPPORTED.
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 private:
  RoiAlignParams params_for(const kiln_plugin_tensor& x) const;

  std::string coordinate_mode_;
  std::string mode_;
  int64_t output_height_ = 1, output_width_ = 1, sampling_ratio_ = 0;
  float spatial_scale_ = 1.0f;
  StoredFields fields_;
};

extern const kiln_plugin_creator kRoiAlignCreator;

// CUDA builds (roi_align_cuda.cu): enqueues the kernel. rois and x are device pointers;
// batch_indices null: rois are torchvision's [K, 5] with the batch index in column 0.
void launch_roi_align_cuda(const RoiAlignParams& params, const void* x, const void* rois,
                           const void* batch_indices, bool indices_int32, void* y, bool float16,
                           int64_t num_rois, int64_t batches, void* stream);

}  // namespace kiln::plugins_lib
