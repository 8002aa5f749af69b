// kiln::RoiAlign: creator; the kernels are roi_align_run.hpp's, shared with TorchvisionRoiAlign.
#include "roi_align/roi_align.hpp"

#include "roi_align/roi_align_run.hpp"

namespace kiln::plugins_lib {
namespace {

class RoiAlign : public RoiAlignOp {
 public:
  RoiAlign(const kiln_plugin_field* fields, int32_t num_fields) {
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
      refuse("output_height and output_width must be >= 1, got " +
             std::to_string(output_height_) + " and " + std::to_string(output_width_));
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

  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
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

  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
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
    describe_roi_align_output(outputs[0], inputs[0].dtype, output_height_, output_width_);
  }

  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t, kiln_plugin_tensor* outputs,
                   int32_t, void*) const {
    const RoiAlignParams p = params_for(inputs[0]);
    roi_align_cpu({p, inputs[0], inputs[1], &inputs[2], outputs[0]});
  }

  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t, kiln_plugin_tensor* outputs,
                    int32_t, void* workspace, void* stream) const {
    require_cuda("RoiAlign");
    const RoiAlignParams p = params_for(inputs[0]);
    roi_align_cuda({p, inputs[0], inputs[1], &inputs[2], outputs[0]}, workspace, stream);
  }

 private:
  RoiAlignParams params_for(const kiln_plugin_tensor& x) const {
    return RoiAlignParams{
        x.shape[1],    x.shape[2],      x.shape[3],     output_height_,
        output_width_, sampling_ratio_, spatial_scale_, coordinate_mode_ == "half_pixel",
        mode_ == "max"};
  }

  std::string coordinate_mode_;
  std::string mode_;
  int64_t output_height_ = 1, output_width_ = 1, sampling_ratio_ = 0;
  float spatial_scale_ = 1.0f;
};

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
