// kiln::TorchvisionNms: torchvision.ops.nms with torchvision's op signature, for kiln.compile's
// mapping of torchvision::nms (inputs dets [N, 4] xyxy, scores [N]; field iou_threshold). Output:
// keep [num_kept] int64 by decreasing score, data-dependent (at most N). BatchedNMS with one class.
#pragma once

#include "common/plugin_support.hpp"

namespace kiln::plugins_lib {

class TorchvisionNms {
 public:
  TorchvisionNms(const kiln_plugin_field* fields, int32_t num_fields);
  const StoredFields& stored_fields() const { return fields_; }
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  int64_t workspace(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                    const kiln_plugin_tensor_desc* outputs, int32_t num_outputs) const;
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  // CUDA builds: the segmented NMS with one segment; synchronises the stream for the length.
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 private:
  float iou_threshold_ = 0.0f;
  StoredFields fields_;
};

extern const kiln_plugin_creator kTorchvisionNmsCreator;

}  // namespace kiln::plugins_lib
