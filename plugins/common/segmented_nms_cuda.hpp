// Greedy NMS on CUDA over independent segments, shared by the NMS plugins' execute_cuda (CUDA
// builds only; plugins/common/segmented_nms_cuda.cu). A segment is one (batch, class) of ONNX
// NonMaxSuppression, or the whole input of BatchedNMS, whose boxes then suppress only boxes of the
// same class id. Same results as the CPU kernels: decreasing score, equal scores by increasing
// index, NaN scores never kept, IoU above the threshold suppresses.
//
// Three steps, each enqueued on the stream without synchronising (capture-safe): each candidate's
// rank within its segment by counting (O(count^2) per segment: a first implementation, simple
// rather than fast), then one thread block per segment walking its candidates in rank order
// against the boxes it kept so far, then the output writers below.
#pragma once

#include <cstdint>

#include "kiln/plugin.h"

namespace kiln::plugins_lib {

enum class BoxFormat { kXyxy, kYxyx, kCenterXywh };

struct SegmentedNms {
  const void* boxes;              // [batches, count, 4]
  const void* scores;             // [batches * classes_per_batch, count]
  bool float16;                   // boxes and scores are float16 (else float32)
  const void* classes = nullptr;  // [count] class ids (int32 or int64), or null: no class check
  bool classes_int32 = false;
  int64_t batches = 1, classes_per_batch = 1, count = 0;
  BoxFormat format = BoxFormat::kXyxy;
  float iou_threshold = 0.0f;
  bool has_score_threshold = false;  // keep only scores strictly above score_threshold
  float score_threshold = 0.0f;
  int64_t limit = -1;  // most boxes kept per segment; < 0: no limit

  // constexpr: callable in device code too (--expt-relaxed-constexpr)
  constexpr int64_t segments() const { return batches * classes_per_batch; }
};

// Device workspace bytes enqueue_segmented_nms needs.
int64_t segmented_nms_workspace_bytes(int64_t segments, int64_t count);

// Enqueues the NMS; its results stay in `workspace` for the writers below. Throws Failure
// (KILN_ERROR_DEVICE) when a launch fails, KILN_ERROR_UNSUPPORTED for more than 2^31 - 1 boxes.
void enqueue_segmented_nms(const SegmentedNms& nms, void* workspace, void* stream);

// ONNX rows (batch, class, box) int64 into `rows`, segment after segment. Then synchronises the
// stream and returns the number of rows (the data-dependent output's length).
int64_t write_onnx_rows_and_wait(const SegmentedNms& nms, void* workspace, int64_t* rows,
                                 void* stream);

// Segment 0's kept indices as int64 into `keep`; `capacity` entries are written when `pad` (the
// rest -1) and `count` (device int64) receives the number kept; neither synchronises.
void write_kept_indices(const SegmentedNms& nms, void* workspace, int64_t* keep, int64_t capacity,
                        bool pad, int64_t* count, void* stream);
// The number segment 0 kept, after synchronising the stream.
int64_t kept_count_and_wait(const SegmentedNms& nms, void* workspace, void* stream);

// A scalar input in device memory (int32/int64/float32/float16) as a double; `fallback` when the
// tensor is absent or empty. Synchronises the stream.
double read_device_scalar(const kiln_plugin_tensor& tensor, double fallback, void* stream);

}  // namespace kiln::plugins_lib
