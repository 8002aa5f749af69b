// kiln::RoiAlign: creator and CPU kernel.
#include "roi_align/roi_align.hpp"

namespace kiln::plugins_lib {

RoiAlign::RoiAlign(const kiln_plugin_field* fields, int32_t num_fields) {
  coordinate_mode_ =
      plugin::string_field(fields, num_fields, "coordinate_transformation_mode", "half_pixel");
  mode_ = plugin::string_field(fields, num_fields, "mode", "avg");
  output_height_ = plugin::int_field(fields, num_fields, "output_height", 1);
  output_width_ = plugin::int_field(fields, num_fields, "output_width", 1);
  sampling_ratio_ = plugin::int_field(fields, num_fields, "sampling_ratio", 0);
  spatial_scale_ = plugin::float_field(fields, num_fields, "spatial_scale", 1.0f);
  if (coordinate_mode_ != "half_pixel" && coordinate_mode_ != "output_half_pixel") {
    refuse("coordinate_transformation_mode must be half_pixel or output_half_pixel, got '" +
           coordinate_mode_ + "'");
  }
  if (mode_ != "avg" && mode_ != "max") refuse("mode must be avg or max, got '" + mode_ + "'");
  if (output_height_ < 1 || output_width_ < 1) {
    refuse("output_height and output_width must be >= 1, got " + std::to_string(output_height_) +
           " and " + std::to_string(output_width_));
  }
  if (sampling_ratio_ < 0)
    refuse("sampling_ratio must be >= 0, got " + std::to_string(sampling_ratio_));
  if (!(spatial_scale_ > 0.0f))
    refuse("spatial_scale must be > 0, got " + std::to_string(spatial_scale_));
  fields_.add_string("coordinate_transformation_mode", coordinate_mode_);
  fields_.add_string("mode", mode_);
  fields_.add_int("output_height", output_height_);
  fields_.add_int("output_width", output_width_);
  fields_.add_int("sampling_ratio", sampling_ratio_);
  fields_.add_float("spatial_scale", spatial_scale_);
}

void RoiAlign::supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
  if (num_inputs != 3) return;  // infer names the count
  if (!is_float(dtypes[0]) || dtypes[1] != dtypes[0]) {
    refuse_dtype(std::string("takes X and rois of one dtype, float32 or float16; got ") +
                 dtype_name(dtypes[0]) + " and " + dtype_name(dtypes[1]));
  }
  if (!is_index(dtypes[2])) {
    refuse_dtype(std::string("takes batch_indices as int64 or int32, got ") +
                 dtype_name(dtypes[2]));
  }
}

void RoiAlign::infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                     kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
  if (num_inputs != 3 || num_outputs != 1) {
    refuse("takes 3 inputs (X, rois, batch_indices) and gives 1 output, got " +
           std::to_string(num_inputs) + " and " + std::to_string(num_outputs));
  }
  expect_rank(inputs, 0, "X", 4);
  expect_rank(inputs, 1, "rois", 2);
  expect_rank(inputs, 2, "batch_indices", 1);
  if (inputs[1].shape[1] >= 0 && inputs[1].shape[1] != 4) {
    refuse("rois must be [R, 4], got last dimension " + std::to_string(inputs[1].shape[1]));
  }
  expect_same_dim(inputs[1].shape[0], inputs[2].shape[0],
                  "the roi counts of rois and batch_indices");
  outputs[0].dtype = inputs[0].dtype;
  outputs[0].ndim = 4;
  outputs[0].dims[0] = plugin::copy_dim(1, 0);
  outputs[0].dims[1] = plugin::copy_dim(0, 1);
  outputs[0].dims[2] = plugin::value_dim(output_height_);
  outputs[0].dims[3] = plugin::value_dim(output_width_);
}

RoiAlignParams RoiAlign::params_for(const kiln_plugin_tensor& x) const {
  return RoiAlignParams{
      x.shape[1],    x.shape[2],      x.shape[3],     output_height_,
      output_width_, sampling_ratio_, spatial_scale_, coordinate_mode_ == "half_pixel",
      mode_ == "max"};
}

void RoiAlign::execute_cpu(const kiln_plugin_tensor* inputs, int32_t, kiln_plugin_tensor* outputs,
                           int32_t, void*) const {
  const kiln_plugin_tensor& x = inputs[0];
  const kiln_plugin_tensor& rois = inputs[1];
  const kiln_plugin_tensor& indices = inputs[2];
  kiln_plugin_tensor& y = outputs[0];
  const RoiAlignParams p = params_for(x);
  const int64_t num_rois = rois.shape[0], batches = x.shape[0];
  const int64_t plane_size = p.height * p.width;
  const int64_t out_plane = p.pooled_height * p.pooled_width;
  for (int64_t r = 0; r < num_rois; ++r) {
    const int64_t batch = load_index(indices.data, indices.dtype, r);
    if (batch < 0 || batch >= batches) {
      refuse("batch_indices[" + std::to_string(r) + "] = " + std::to_string(batch) +
             " is outside [0, " + std::to_string(batches) + ")");
    }
    float roi[4];
    for (int k = 0; k < 4; ++k) roi[k] = load_float(rois.data, rois.dtype, r * 4 + k);
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
void RoiAlign::execute_cuda(const kiln_plugin_tensor* inputs, int32_t, kiln_plugin_tensor* outputs,
                            int32_t, void*, void* stream) const {
  launch_roi_align_cuda(params_for(inputs[0]), inputs[0].data, inputs[1].data, inputs[2].data,
                        inputs[2].dtype == KILN_INT32, outputs[0].data,
                        inputs[0].dtype == KILN_FLOAT16, inputs[1].shape[0], inputs[0].shape[0],
                        stream);
}
#else
void RoiAlign::execute_cuda(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*, int32_t, void*,
                            void*) const {
  cuda_not_implemented("RoiAlign");
}
#endif

namespace {
const kiln_plugin_field_spec kSpecs[] = {
    {"coordinate_transformation_mode", KILN_PLUGIN_FIELD_STRING, 0},
    {"mode", KILN_PLUGIN_FIELD_STRING, 0},
    {"output_height", KILN_PLUGIN_FIELD_INT, 0},
    {"output_width", KILN_PLUGIN_FIELD_INT, 0},
    {"sampling_ratio", KILN_PLUGIN_FIELD_INT, 0},
    {"spatial_scale", KILN_PLUGIN_FIELD_FLOAT, 0}};
}  // namespace

const kiln_plugin_creator kRoiAlignCreator =
    CreatorGlue<RoiAlign>::make("RoiAlign", 1, kSpecs, 6, false);

}  // namespace kiln::plugins_lib
