// kiln::TorchvisionRoiAlign: creator and CPU kernel; CUDA through roi_align_cuda.cu.
#include "roi_align/torchvision_roi_align.hpp"

#include "roi_align/roi_align.hpp"

namespace kiln::plugins_lib {

TorchvisionRoiAlign::TorchvisionRoiAlign(const kiln_plugin_field* fields, int32_t num_fields) {
  spatial_scale_ = plugin::float_field(fields, num_fields, "spatial_scale", 1.0f);
  pooled_height_ = plugin::int_field(fields, num_fields, "pooled_height", 1);
  pooled_width_ = plugin::int_field(fields, num_fields, "pooled_width", 1);
  sampling_ratio_ = plugin::int_field(fields, num_fields, "sampling_ratio", -1);
  aligned_ = plugin::int_field(fields, num_fields, "aligned", 0);
  if (!(spatial_scale_ > 0.0f)) {
    refuse("spatial_scale must be > 0, got " + std::to_string(spatial_scale_));
  }
  if (pooled_height_ < 1 || pooled_width_ < 1) {
    refuse("pooled_height and pooled_width must be >= 1, got " + std::to_string(pooled_height_) +
           " and " + std::to_string(pooled_width_));
  }
  if (aligned_ != 0 && aligned_ != 1)
    refuse("aligned must be 0 or 1, got " + std::to_string(aligned_));
  fields_.add_float("spatial_scale", spatial_scale_);
  fields_.add_int("pooled_height", pooled_height_);
  fields_.add_int("pooled_width", pooled_width_);
  fields_.add_int("sampling_ratio", sampling_ratio_);
  fields_.add_int("aligned", aligned_);
}

void TorchvisionRoiAlign::supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
  if (num_inputs != 2) return;  // infer names the count
  if (!is_float(dtypes[0]) || dtypes[1] != dtypes[0]) {
    refuse_dtype(std::string("takes input and rois of one dtype, float32 or float16; got ") +
                 dtype_name(dtypes[0]) + " and " + dtype_name(dtypes[1]));
  }
}

void TorchvisionRoiAlign::infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                                kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
  if (num_inputs != 2 || num_outputs != 1) {
    refuse("takes 2 inputs (input, rois) and gives 1 output, got " + std::to_string(num_inputs) +
           " and " + std::to_string(num_outputs));
  }
  expect_rank(inputs, 0, "input", 4);
  expect_rank(inputs, 1, "rois", 2);
  if (inputs[1].shape[1] >= 0 && inputs[1].shape[1] != 5) {
    refuse("rois must be [K, 5] (batch index, x1, y1, x2, y2), got last dimension " +
           std::to_string(inputs[1].shape[1]));
  }
  outputs[0].dtype = inputs[0].dtype;
  outputs[0].ndim = 4;
  outputs[0].dims[0] = plugin::copy_dim(1, 0);
  outputs[0].dims[1] = plugin::copy_dim(0, 1);
  outputs[0].dims[2] = plugin::value_dim(pooled_height_);
  outputs[0].dims[3] = plugin::value_dim(pooled_width_);
}

RoiAlignParams TorchvisionRoiAlign::params_for(const kiln_plugin_tensor& x) const {
  return RoiAlignParams{x.shape[1],     x.shape[2],    x.shape[3],
                        pooled_height_, pooled_width_, sampling_ratio_,
                        spatial_scale_, aligned_ == 1, false};
}

void TorchvisionRoiAlign::execute_cpu(const kiln_plugin_tensor* inputs, int32_t,
                                      kiln_plugin_tensor* outputs, int32_t, void*) const {
  const kiln_plugin_tensor& x = inputs[0];
  const kiln_plugin_tensor& rois = inputs[1];
  kiln_plugin_tensor& y = outputs[0];
  const RoiAlignParams p = params_for(x);
  const int64_t plane_size = p.height * p.width, out_plane = p.pooled_height * p.pooled_width;
  for (int64_t r = 0; r < rois.shape[0]; ++r) {
    const float batch_value = load_float(rois.data, rois.dtype, r * 5);
    const int64_t batch = static_cast<int64_t>(batch_value);
    if (!(batch_value >= 0.0f) || batch >= x.shape[0]) {
      refuse("rois[" + std::to_string(r) + ", 0] = " + std::to_string(batch_value) +
             " is not a batch index in [0, " + std::to_string(x.shape[0]) + ")");
    }
    float roi[4];
    for (int k = 0; k < 4; ++k) roi[k] = load_float(rois.data, rois.dtype, r * 5 + 1 + k);
    for (int64_t c = 0; c < p.channels; ++c) {
      const int64_t plane_base = (batch * p.channels + c) * plane_size;
      const auto plane = [&](int64_t yy, int64_t xx) {
        return load_float(x.data, x.dtype, plane_base + yy * p.width + xx);
      };
      const int64_t out_base = (r * p.channels + c) * out_plane;
      for (int64_t ph = 0; ph < p.pooled_height; ++ph) {
        for (int64_t pw = 0; pw < p.pooled_width; ++pw) {
          const float value = plane_size == 0 ? 0.0f : roi_align_element(p, roi, ph, pw, plane);
          store_float(y.data, y.dtype, out_base + ph * p.pooled_width + pw, value);
        }
      }
    }
  }
}

#if defined(KILN_PLUGINS_WITH_CUDA)
void TorchvisionRoiAlign::execute_cuda(const kiln_plugin_tensor* inputs, int32_t,
                                       kiln_plugin_tensor* outputs, int32_t, void*,
                                       void* stream) const {
  launch_roi_align_cuda(params_for(inputs[0]), inputs[0].data, inputs[1].data, nullptr, false,
                        outputs[0].data, inputs[0].dtype == KILN_FLOAT16, inputs[1].shape[0],
                        inputs[0].shape[0], stream);
}
#else
void TorchvisionRoiAlign::execute_cuda(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*,
                                       int32_t, void*, void*) const {
  cuda_not_implemented("TorchvisionRoiAlign");
}
#endif

namespace {
const kiln_plugin_field_spec kSpecs[] = {{"spatial_scale", KILN_PLUGIN_FIELD_FLOAT, 0},
                                         {"pooled_height", KILN_PLUGIN_FIELD_INT, 0},
                                         {"pooled_width", KILN_PLUGIN_FIELD_INT, 0},
                                         {"sampling_ratio", KILN_PLUGIN_FIELD_INT, 0},
                                         {"aligned", KILN_PLUGIN_FIELD_INT, 0}};
}  // namespace

const kiln_plugin_creator kTorchvisionRoiAlignCreator =
    CreatorGlue<TorchvisionRoiAlign>::make("TorchvisionRoiAlign", 1, kSpecs, 5, false);

}  // namespace kiln::plugins_lib
