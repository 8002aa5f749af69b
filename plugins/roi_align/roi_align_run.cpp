// The CPU RoiAlign loop and the batch-index error both backends give.
#include "roi_align/roi_align_run.hpp"

namespace kiln::plugins_lib {

void describe_roi_align_output(kiln_plugin_output_desc& output, kiln_dtype dtype,
                               int64_t pooled_height, int64_t pooled_width) {
  output.dtype = dtype;
  output.ndim = 4;
  output.dims[0] = plugin::copy_dim(1, 0);
  output.dims[1] = plugin::copy_dim(0, 1);
  output.dims[2] = plugin::value_dim(pooled_height);
  output.dims[3] = plugin::value_dim(pooled_width);
}

void refuse_batch_index(const RoiAlignCall& call, int64_t roi, double value) {
  const std::string range = "[0, " + std::to_string(call.x.shape[0]) + ")";
  if (call.batch_indices == nullptr) {
    refuse("rois[" + std::to_string(roi) + ", 0] = " + std::to_string(value) +
           " is not a batch index in " + range);
  }
  refuse("batch_indices[" + std::to_string(roi) + "] = " +
         std::to_string(static_cast<int64_t>(value)) + " is outside " + range);
}

void roi_align_cpu(const RoiAlignCall& call) {
  const RoiAlignParams& p = call.params;
  const bool batch_column = call.batch_indices == nullptr;
  const int64_t stride = batch_column ? 5 : 4, first_corner = batch_column ? 1 : 0;
  const int64_t plane_size = p.height * p.width, out_plane = p.pooled_height * p.pooled_width;
  for (int64_t r = 0; r < call.rois.shape[0]; ++r) {
    const double value =
        batch_column ? load_float(call.rois.data, call.rois.dtype, r * stride)
                     : static_cast<double>(load_index(call.batch_indices->data,
                                                      call.batch_indices->dtype, r));
    if (!(value >= 0.0) || value >= static_cast<double>(call.x.shape[0])) {
      refuse_batch_index(call, r, value);
    }
    const auto batch = static_cast<int64_t>(value);
    float roi[4];
    for (int k = 0; k < 4; ++k) {
      roi[k] = load_float(call.rois.data, call.rois.dtype, r * stride + first_corner + k);
    }
    for (int64_t c = 0; c < p.channels; ++c) {
      const int64_t plane_base = (batch * p.channels + c) * plane_size;
      const auto plane = [&](int64_t yy, int64_t xx) {
        return load_float(call.x.data, call.x.dtype, plane_base + yy * p.width + xx);
      };
      const int64_t out_base = (r * p.channels + c) * out_plane;
      for (int64_t ph = 0; ph < p.pooled_height; ++ph) {
        for (int64_t pw = 0; pw < p.pooled_width; ++pw) {
          const float v = plane_size == 0 ? 0.0f : roi_align_element(p, roi, ph, pw, plane);
          store_float(call.y.data, call.y.dtype, out_base + ph * p.pooled_width + pw, v);
        }
      }
    }
  }
}

#if !defined(KILN_PLUGINS_WITH_CUDA)
int64_t roi_align_workspace_bytes() {
  return 0;
}

void roi_align_cuda(const RoiAlignCall&, void*, void*) {
  cuda_not_implemented("RoiAlign");
}
#endif

}  // namespace kiln::plugins_lib
