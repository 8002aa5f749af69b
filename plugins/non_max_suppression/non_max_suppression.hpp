// kiln::NonMaxSuppression, ONNX NonMaxSuppression semantics (README.md in this folder).
#pragma once

#include "common/plugin_support.hpp"

namespace kiln::plugins_lib {

class NonMaxSuppression {
 public:
  // Field center_point_box: 0 (default) or 1; refuses other values.
  NonMaxSuppression(const kiln_plugin_field* fields, int32_t num_fields);
  const StoredFields& stored_fields() const { return fields_; }
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  int64_t workspace(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                    const kiln_plugin_tensor_desc* outputs, int32_t num_outputs) const;
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  // CUDA builds: enqueues plugins/common/segmented_nms_cuda.hpp's kernels, then synchronises the
  // stream to learn the output's length (and to read the scalar inputs). Else
  // KILN_ERROR_UNSUPPORTED.
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 private:
  int64_t center_point_box_ = 0;
  StoredFields fields_;
};

extern const kiln_plugin_creator kNonMaxSuppressionCreator;

}  // namespace kiln::plugins_lib
