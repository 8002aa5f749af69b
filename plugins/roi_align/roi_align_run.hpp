// The RoiAlign loop over rois, channels and pooled cells, shared by kiln::RoiAlign (ONNX: rois
// [R, 4] beside batch_indices [R]) and kiln::TorchvisionRoiAlign (rois [K, 5], the batch index in
// column 0): on the CPU (roi_align_run.cpp) and on CUDA (roi_align_cuda.cu).
#pragma once

#include "common/plugin_support.hpp"
#include "roi_align/roi_align_math.hpp"

namespace kiln::plugins_lib {

// One RoiAlign call. `batch_indices` null: `rois` is torchvision's [K, 5] with the batch index
// (a float) in column 0; else `rois` is [R, 4] and `batch_indices` [R] int32 or int64. `x` is
// [N, C, H, W], `y` [R, C, pooled_height, pooled_width], all in one float dtype.
struct RoiAlignCall {
  const RoiAlignParams& params;
  const kiln_plugin_tensor& x;
  const kiln_plugin_tensor& rois;
  const kiln_plugin_tensor* batch_indices;
  kiln_plugin_tensor& y;
};

// The output both ops declare: [rois, C, pooled_height, pooled_width] in X's dtype (X input 0, rois
// input 1).
void describe_roi_align_output(kiln_plugin_output_desc& output, kiln_dtype dtype,
                               int64_t pooled_height, int64_t pooled_width);

// Refuses (KILN_ERROR_INVALID_ARGUMENT) roi `roi`, whose batch index `value` is not in
// [0, batches), in the words of the op's own layout. Both backends report it this way.
[[noreturn]] void refuse_batch_index(const RoiAlignCall& call, int64_t roi, double value);

// Fills call.y on the host; refuses the first roi whose batch index is outside [0, N).
void roi_align_cpu(const RoiAlignCall& call);

// Device scratch bytes roi_align_cuda needs (the flag naming the first bad roi): 8 in CUDA builds.
int64_t roi_align_workspace_bytes();

// The base of both op classes: their CUDA workspace is roi_align_workspace_bytes(); the CPU needs none.
class RoiAlignOp : public PluginOp {
 public:
  int64_t workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc*, int32_t,
                    const kiln_plugin_tensor_desc*, int32_t) const {
    return backend == KILN_PLUGIN_BACKEND_CUDA ? roi_align_workspace_bytes() : 0;
  }
};

// Enqueues one thread per output element on `stream` (device pointers; `workspace` holds
// roi_align_workspace_bytes()). Then, unless the stream is being captured into a CUDA graph,
// synchronises it and refuses as roi_align_cpu does when a batch index was outside [0, N) (those
// rois' outputs are zeros; inside a capture nothing can be reported). CUDA builds only (callers
// call require_cuda first).
void roi_align_cuda(const RoiAlignCall& call, void* workspace, void* stream);

}  // namespace kiln::plugins_lib
