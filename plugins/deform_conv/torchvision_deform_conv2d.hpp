// kiln::TorchvisionDeformConv2d: torchvision.ops.deform_conv2d with torchvision's op signature, for
// kiln.compile's mapping of torchvision::deform_conv2d: inputs input, weight, offset, mask, bias
// (in that order; torchvision passes placeholders for an absent mask or bias); int fields
// stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w (defaults 1, 1, 0, 0, 1, 1), groups,
// offset_groups (default 1), use_mask (0: mask is ignored). Runs kiln::DeformConv's kernels.
#pragma once

#include "deform_conv/deform_conv.hpp"

namespace kiln::plugins_lib {

class TorchvisionDeformConv2d {
 public:
  TorchvisionDeformConv2d(const kiln_plugin_field* fields, int32_t num_fields);
  const StoredFields& stored_fields() const { return fields_; }
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  int64_t workspace(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                    const kiln_plugin_tensor_desc* outputs, int32_t num_outputs) const;
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 private:
  static DeformConv inner_from(const kiln_plugin_field* fields, int32_t num_fields);
  // torchvision's (input, weight, offset, mask, bias) as DeformConv's (X, W, offset, B, mask).
  template <typename T>
  std::vector<T> onnx_order(const T* inputs, int32_t num_inputs, const T& absent) const;

  int64_t use_mask_ = 1;
  DeformConv inner_;
  StoredFields fields_;
};

extern const kiln_plugin_creator kTorchvisionDeformConv2dCreator;

}  // namespace kiln::plugins_lib
