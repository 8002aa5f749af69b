// kiln::BatchedNMS and kiln::BatchedNMSPadded: torchvision.ops.batched_nms semantics (README.md in
// this folder).
#pragma once

#include <vector>

#include "common/plugin_support.hpp"

namespace kiln::plugins_lib {

// The kept box indices of a batched NMS, in order of decreasing score (equal scores: increasing
// index), at most `top_k` of them (top_k < 0: all). Boxes are [N, 4] (x1, y1, x2, y2); a box is
// suppressed by a kept box of the same class (idxs) whose IoU with it is above `iou_threshold`.
// NaN scores are never kept. `idxs.data` null: one class.
std::vector<int64_t> batched_nms_cpu(const kiln_plugin_tensor& boxes,
                                     const kiln_plugin_tensor& scores,
                                     const kiln_plugin_tensor& idxs, float iou_threshold,
                                     int64_t top_k);

// Field iou_threshold (float, required); top_k (int, default -1: every kept box). Output: keep
// [num_kept] int64, data-dependent, at most min(N, top_k).
class BatchedNms : public PluginOp {
 public:
  BatchedNms(const kiln_plugin_field* fields, int32_t num_fields);
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  // The CUDA kernel's (CUDA builds; the CPU kernel needs none).
  int64_t workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                    const kiln_plugin_tensor_desc* outputs, int32_t num_outputs) const;
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  // CUDA builds: enqueues plugins/common/segmented_nms_cuda.hpp's kernels and synchronises the
  // stream to learn the output's length. Else KILN_ERROR_UNSUPPORTED.
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 protected:
  BatchedNms(const kiln_plugin_field* fields, int32_t num_fields, bool padded);
  float iou_threshold_ = 0.0f;
  int64_t top_k_ = -1;
};

// Fixed-size outputs, for CUDA graphs and static shapes: field max_output K (int, required, >= 0)
// instead of top_k. Outputs: keep [K] int64 (the first `count` entries as BatchedNMS gives them,
// the rest -1) and count [] int64.
class BatchedNmsPadded : public BatchedNms {
 public:
  BatchedNmsPadded(const kiln_plugin_field* fields, int32_t num_fields);
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  // CUDA builds: enqueues the kernels without synchronising (fixed shapes: capture-safe).
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;
};

extern const kiln_plugin_creator kBatchedNmsCreator;
extern const kiln_plugin_creator kBatchedNmsPaddedCreator;

}  // namespace kiln::plugins_lib
