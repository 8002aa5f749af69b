// kiln::TorchvisionRoiAlign: creator; the kernels are roi_align_run.hpp's, shared with RoiAlign.
#include "roi_align/torchvision_roi_align.hpp"

#include "roi_align/roi_align_run.hpp"

namespace kiln::plugins_lib {
namespace {

class TorchvisionRoiAlign : public RoiAlignOp {
 public:
  TorchvisionRoiAlign(const kiln_plugin_field* fields, int32_t num_fields) {
    spatial_scale_ = plugin::float_field(fields, num_fields, "spatial_scale", 1.0f);
    pooled_height_ = plugin::int_field(fields, num_fields, "pooled_height", 1);
    pooled_width_ = plugin::int_field(fields, num_fields, "pooled_width", 1);
    sampling_ratio_ = plugin::int_field(fields, num_fields, "sampling_ratio", -1);
    aligned_ = plugin::int_field(fields, num_fields, "aligned", 0);
    if (!(spatial_scale_ > 0.0f)) {
      refuse("spatial_scale must be > 0, got " + std::to_string(spatial_scale_));
    }
    if (pooled_height_ < 1 || pooled_width_ < 1) {
      refuse("pooled_height and pooled_width must be >= 1, got " +
             std::to_string(pooled_height_) + " and " + std::to_string(pooled_width_));
    }
    if (aligned_ != 0 && aligned_ != 1)
      refuse("aligned must be 0 or 1, got " + std::to_string(aligned_));
    fields_.add_float("spatial_scale", spatial_scale_);
    fields_.add_int("pooled_height", pooled_height_);
    fields_.add_int("pooled_width", pooled_width_);
    fields_.add_int("sampling_ratio", sampling_ratio_);
    fields_.add_int("aligned", aligned_);
  }

  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
    if (num_inputs != 2) return;  // infer names the count
    if (!is_float(dtypes[0]) || dtypes[1] != dtypes[0]) {
      refuse_dtype(std::string("takes input and rois of one dtype, float32 or float16; got ") +
                   dtype_name(dtypes[0]) + " and " + dtype_name(dtypes[1]));
    }
  }

  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
    if (num_inputs != 2 || num_outputs != 1) {
      refuse("takes 2 inputs (input, rois) and gives 1 output, got " +
             std::to_string(num_inputs) + " and " + std::to_string(num_outputs));
    }
    expect_rank(inputs, 0, "input", 4);
    expect_rank(inputs, 1, "rois", 2);
    if (inputs[1].shape[1] >= 0 && inputs[1].shape[1] != 5) {
      refuse("rois must be [K, 5] (batch index, x1, y1, x2, y2), got last dimension " +
             std::to_string(inputs[1].shape[1]));
    }
    describe_roi_align_output(outputs[0], inputs[0].dtype, pooled_height_, pooled_width_);
  }

  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t, kiln_plugin_tensor* outputs,
                   int32_t, void*) const {
    const RoiAlignParams p = params_for(inputs[0]);
    roi_align_cpu({p, inputs[0], inputs[1], nullptr, outputs[0]});
  }

  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t, kiln_plugin_tensor* outputs,
                    int32_t, void* workspace, void* stream) const {
    require_cuda("TorchvisionRoiAlign");
    const RoiAlignParams p = params_for(inputs[0]);
    roi_align_cuda({p, inputs[0], inputs[1], nullptr, outputs[0]}, workspace, stream);
  }

 private:
  RoiAlignParams params_for(const kiln_plugin_tensor& x) const {
    return RoiAlignParams{x.shape[1],     x.shape[2],    x.shape[3],
                          pooled_height_, pooled_width_, sampling_ratio_,
                          spatial_scale_, aligned_ == 1, false};
  }

  float spatial_scale_ = 1.0f;
  int64_t pooled_height_ = 1, pooled_width_ = 1, sampling_ratio_ = -1, aligned_ = 0;
};

const kiln_plugin_field_spec kSpecs[] = {{"spatial_scale", KILN_PLUGIN_FIELD_FLOAT, 0},
                                         {"pooled_height", KILN_PLUGIN_FIELD_INT, 0},
                                         {"pooled_width", KILN_PLUGIN_FIELD_INT, 0},
                                         {"sampling_ratio", KILN_PLUGIN_FIELD_INT, 0},
                                         {"aligned", KILN_PLUGIN_FIELD_INT, 0}};

}  // namespace

const kiln_plugin_creator kTorchvisionRoiAlignCreator =
    CreatorGlue<TorchvisionRoiAlign>::make("TorchvisionRoiAlign", 1, kSpecs, 5, false);

}  // namespace kiln::plugins_lib
