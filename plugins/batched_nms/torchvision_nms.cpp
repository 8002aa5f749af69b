// kiln::TorchvisionNms: creator, CPU (batched_nms_cpu with one class) and CUDA paths.
#include "batched_nms/torchvision_nms.hpp"

#include <algorithm>
#include <cmath>

#include "batched_nms/batched_nms.hpp"
#include "common/segmented_nms_cuda.hpp"

namespace kiln::plugins_lib {

class TorchvisionNms : public PluginOp {
 public:
  TorchvisionNms(const kiln_plugin_field* fields, int32_t num_fields);
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  int64_t workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                    const kiln_plugin_tensor_desc* outputs, int32_t num_outputs) const;
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  // CUDA builds: the segmented NMS with one segment; synchronises the stream for the length.
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 private:
  float iou_threshold_ = 0.0f;
};

TorchvisionNms::TorchvisionNms(const kiln_plugin_field* fields, int32_t num_fields) {
  iou_threshold_ = plugin::float_field(fields, num_fields, "iou_threshold", 0.0f);
  if (std::isnan(iou_threshold_)) refuse("iou_threshold must not be NaN");
  fields_.add_float("iou_threshold", iou_threshold_);
}

void TorchvisionNms::supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
  if (num_inputs != 2) return;  // infer names the count
  if (!is_float(dtypes[0]) || dtypes[1] != dtypes[0]) {
    refuse_dtype(std::string("takes dets and scores of one dtype, float32 or float16; got ") +
                 dtype_name(dtypes[0]) + " and " + dtype_name(dtypes[1]));
  }
}

void TorchvisionNms::infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                           kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
  if (num_inputs != 2 || num_outputs != 1) {
    refuse("takes 2 inputs (dets, scores) and gives 1 output, got " + std::to_string(num_inputs) +
           " and " + std::to_string(num_outputs));
  }
  expect_rank(inputs, 0, "dets", 2);
  expect_rank(inputs, 1, "scores", 1);
  if (inputs[0].shape[1] >= 0 && inputs[0].shape[1] != 4) {
    refuse("dets must be [N, 4], got last dimension " + std::to_string(inputs[0].shape[1]));
  }
  expect_same_dim(inputs[0].shape[0], inputs[1].shape[0], "the lengths of dets and scores");
  const int64_t n = inputs[1].shape[0];
  outputs[0].dtype = KILN_INT64;
  outputs[0].ndim = 1;
  outputs[0].dims[0] = plugin::data_dependent_dim(n < 0 ? 0 : n);
}

int64_t TorchvisionNms::workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs, int32_t,
                                  const kiln_plugin_tensor_desc*, int32_t) const {
#if defined(KILN_PLUGINS_WITH_CUDA)
  if (backend == KILN_PLUGIN_BACKEND_CUDA) return segmented_nms_workspace_bytes(1, inputs[1].shape[0]);
#endif
  (void)backend;
  (void)inputs;
  return 0;  // the CPU kernel needs none
}

void TorchvisionNms::execute_cpu(const kiln_plugin_tensor* inputs, int32_t,
                                 kiln_plugin_tensor* outputs, int32_t, void*) const {
  const kiln_plugin_tensor one_class{KILN_INT64, -1, nullptr, nullptr};
  const std::vector<int64_t> kept =
      batched_nms_cpu(inputs[0], inputs[1], one_class, iou_threshold_, -1);
  std::copy(kept.begin(), kept.end(), static_cast<int64_t*>(outputs[0].data));
  outputs[0].shape[0] = static_cast<int64_t>(kept.size());
}

#if defined(KILN_PLUGINS_WITH_CUDA)
void TorchvisionNms::execute_cuda(const kiln_plugin_tensor* inputs, int32_t,
                                  kiln_plugin_tensor* outputs, int32_t, void* workspace,
                                  void* stream) const {
  SegmentedNms nms{};
  nms.boxes = inputs[0].data;
  nms.scores = inputs[1].data;
  nms.float16 = inputs[0].dtype == KILN_FLOAT16;
  nms.count = inputs[1].shape[0];
  nms.iou_threshold = iou_threshold_;
  enqueue_segmented_nms(nms, workspace, stream);
  write_kept_indices(nms, workspace, static_cast<int64_t*>(outputs[0].data), outputs[0].shape[0],
                     false, nullptr, stream);
  outputs[0].shape[0] = kept_count_and_wait(nms, workspace, stream);
}
#else
void TorchvisionNms::execute_cuda(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*, int32_t,
                                  void*, void*) const {
  cuda_not_implemented("TorchvisionNms");
}
#endif

namespace {
const kiln_plugin_field_spec kSpecs[] = {{"iou_threshold", KILN_PLUGIN_FIELD_FLOAT, 1}};
}  // namespace

const kiln_plugin_creator kTorchvisionNmsCreator =
    CreatorGlue<TorchvisionNms>::make("TorchvisionNms", 1, kSpecs, 1, true);

}  // namespace kiln::plugins_lib
