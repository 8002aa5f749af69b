// kiln::NonMaxSuppression: ONNX NonMaxSuppression (opsets 10 and 11) as a plugin.
//   inputs: boxes [B, N, 4], scores [B, C, N] (float32 or float16), and optional scalars
//           max_output_boxes_per_class (int64/int32, absent or 0: select nothing), iou_threshold
//           and score_threshold (float32/float16)
//   field:  center_point_box (0: boxes are corners [y1, x1, y2, x2] in either order;
//           1: [x_center, y_center, width, height])
//   output: selected_indices [num_selected, 3] int64 (batch, class, box), data-dependent, at most
//           B * C * N rows; per batch and class, in order of decreasing score.
// README.md states the semantics (ties, NaN scores) and how it relates to the core kernel.
#include <algorithm>
#include <numeric>
#include <vector>

#include "common/box_overlap.hpp"
#include "common/plugin_support.hpp"
#include "common/segmented_nms_cuda.hpp"
#include "non_max_suppression/non_max_suppression.hpp"

namespace kiln::plugins_lib {

class NonMaxSuppression : public PluginOp {
 public:
  // Field center_point_box: 0 (default) or 1; refuses other values.
  NonMaxSuppression(const kiln_plugin_field* fields, int32_t num_fields);
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  int64_t workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
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
};
namespace {

constexpr int32_t kBoxes = 0, kScores = 1, kMaxOutput = 2, kIouThreshold = 3, kScoreThreshold = 4;

// A scalar input ([] or [1]) read as a double; `fallback` when absent or empty.
double scalar_or(const kiln_plugin_tensor* inputs, int32_t num_inputs, int32_t index,
                 double fallback) {
  if (index >= num_inputs || !present(inputs[index])) return fallback;
  if (plugin::numel(inputs[index]) < 1) return fallback;
  const kiln_dtype dtype = inputs[index].dtype;
  if (is_index(dtype)) return static_cast<double>(load_index(inputs[index].data, dtype, 0));
  return load_float(inputs[index].data, dtype, 0);
}

}  // namespace

NonMaxSuppression::NonMaxSuppression(const kiln_plugin_field* fields, int32_t num_fields) {
  center_point_box_ = plugin::int_field(fields, num_fields, "center_point_box", 0);
  if (center_point_box_ != 0 && center_point_box_ != 1) {
    refuse("center_point_box must be 0 or 1, got " + std::to_string(center_point_box_));
  }
  fields_.add_int("center_point_box", center_point_box_);
}

void NonMaxSuppression::supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
  if (num_inputs < 2 || num_inputs > 5) return;  // infer names the count
  if (!is_float(dtypes[kBoxes]) || dtypes[kScores] != dtypes[kBoxes]) {
    refuse_dtype(std::string("takes boxes and scores of one dtype, float32 or float16; got ") +
                 dtype_name(dtypes[kBoxes]) + " and " + dtype_name(dtypes[kScores]));
  }
  if (num_inputs > kMaxOutput && !is_index(dtypes[kMaxOutput])) {
    refuse_dtype(std::string("takes max_output_boxes_per_class as int64 or int32, got ") +
                 dtype_name(dtypes[kMaxOutput]));
  }
  for (int32_t i = kIouThreshold; i < num_inputs; ++i) {
    if (!is_float(dtypes[i])) {
      refuse_dtype(std::string("takes iou_threshold and score_threshold as float32 or float16, "
                               "got ") +
                   dtype_name(dtypes[i]));
    }
  }
}

void NonMaxSuppression::infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                              kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
  if (num_inputs < 2 || num_inputs > 5 || num_outputs != 1) {
    refuse("takes 2 to 5 inputs and gives 1 output, got " + std::to_string(num_inputs) +
           " inputs and " + std::to_string(num_outputs) + " outputs");
  }
  expect_rank(inputs, kBoxes, "boxes", 3);
  expect_rank(inputs, kScores, "scores", 3);
  const int64_t* b = inputs[kBoxes].shape;
  const int64_t* s = inputs[kScores].shape;
  if (b[2] >= 0 && b[2] != 4)
    refuse("boxes must be [batch, boxes, 4], got last dimension " + std::to_string(b[2]));
  expect_same_dim(b[0], s[0], "the batch sizes of boxes and scores");
  expect_same_dim(b[1], s[2], "the box counts of boxes (dimension 1) and scores (dimension 2)");
  for (int32_t i = kMaxOutput; i < num_inputs; ++i) {
    if (present(inputs[i]) && known_numel(inputs[i]) > 1) {
      refuse("input " + std::to_string(i) + " must be a scalar, got " +
             std::to_string(known_numel(inputs[i])) + " elements");
    }
  }
  const int64_t bound = s[0] < 0 || s[1] < 0 || s[2] < 0 ? 0 : s[0] * s[1] * s[2];
  outputs[0].dtype = KILN_INT64;
  outputs[0].ndim = 2;
  outputs[0].dims[0] = plugin::data_dependent_dim(bound);
  outputs[0].dims[1] = plugin::value_dim(3);
}

int64_t NonMaxSuppression::workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs, int32_t,
                                     const kiln_plugin_tensor_desc*, int32_t) const {
#if defined(KILN_PLUGINS_WITH_CUDA)
  if (backend == KILN_PLUGIN_BACKEND_CUDA) {
    const int64_t* s = inputs[kScores].shape;
    return segmented_nms_workspace_bytes(s[0] * s[1], s[2]);
  }
#endif
  (void)backend;
  (void)inputs;
  return 0;  // the CPU kernel needs none
}

void NonMaxSuppression::execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                                    kiln_plugin_tensor* outputs, int32_t, void*) const {
  const kiln_plugin_tensor& boxes = inputs[kBoxes];
  const kiln_plugin_tensor& scores = inputs[kScores];
  const int64_t batches = scores.shape[0], classes = scores.shape[1], count = scores.shape[2];
  const double max_output = scalar_or(inputs, num_inputs, kMaxOutput, 0.0);
  const float iou_threshold = static_cast<float>(scalar_or(inputs, num_inputs, kIouThreshold, 0.0));
  const bool has_score_threshold = num_inputs > kScoreThreshold && present(inputs[kScoreThreshold]);
  const float score_threshold =
      static_cast<float>(scalar_or(inputs, num_inputs, kScoreThreshold, 0.0));
  if (!(iou_threshold >= 0.0f && iou_threshold <= 1.0f)) {
    refuse("iou_threshold must be in [0, 1], got " + std::to_string(iou_threshold));
  }
  int64_t* out = static_cast<int64_t*>(outputs[0].data);
  int64_t rows = 0;
  const int64_t limit =
      max_output <= 0 ? 0 : static_cast<int64_t>(std::min<double>(max_output, count));
  std::vector<float> corners(static_cast<size_t>(count) * 4);
  std::vector<int64_t> order;
  std::vector<int64_t> selected;
  for (int64_t batch = 0; batch < batches && limit > 0; ++batch) {
    // Corners as (x1, y1, x2, y2) with x1 <= x2, y1 <= y2, whatever order the input gives.
    for (int64_t i = 0; i < count; ++i) {
      float v[4];
      for (int k = 0; k < 4; ++k)
        v[k] = load_float(boxes.data, boxes.dtype, (batch * count + i) * 4 + k);
      float* c = &corners[static_cast<size_t>(i) * 4];
      if (center_point_box_ == 1) {
        c[0] = v[0] - v[2] / 2;
        c[1] = v[1] - v[3] / 2;
        c[2] = v[0] + v[2] / 2;
        c[3] = v[1] + v[3] / 2;
      } else {  // [y1, x1, y2, x2]
        c[0] = std::min(v[1], v[3]);
        c[1] = std::min(v[0], v[2]);
        c[2] = std::max(v[1], v[3]);
        c[3] = std::max(v[0], v[2]);
      }
    }
    for (int64_t cls = 0; cls < classes; ++cls) {
      const int64_t base = (batch * classes + cls) * count;
      order.clear();
      std::vector<float> score(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) {
        score[i] = load_float(scores.data, scores.dtype, base + i);
        // NaN scores are never selected; score_threshold keeps scores strictly above it.
        if (std::isnan(score[i])) continue;
        if (has_score_threshold && !(score[i] > score_threshold)) continue;
        order.push_back(i);
      }
      // Decreasing score; equal scores in increasing box index.
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return score[a] > score[b]; });
      selected.clear();
      for (int64_t i : order) {
        if (static_cast<int64_t>(selected.size()) >= limit) break;
        bool keep = true;
        for (int64_t j : selected) {
          if (box_iou(&corners[i * 4], &corners[j * 4]) > iou_threshold) {
            keep = false;
            break;
          }
        }
        if (!keep) continue;
        selected.push_back(i);
        out[rows * 3 + 0] = batch;
        out[rows * 3 + 1] = cls;
        out[rows * 3 + 2] = i;
        ++rows;
      }
    }
  }
  outputs[0].shape[0] = rows;
  outputs[0].shape[1] = 3;
}

#if defined(KILN_PLUGINS_WITH_CUDA)
void NonMaxSuppression::execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                                     kiln_plugin_tensor* outputs, int32_t, void* workspace,
                                     void* stream) const {
  const auto scalar = [&](int32_t index, double fallback) {
    return index < num_inputs ? read_device_scalar(inputs[index], fallback, stream) : fallback;
  };
  SegmentedNms nms{};
  nms.boxes = inputs[kBoxes].data;
  nms.scores = inputs[kScores].data;
  nms.float16 = inputs[kBoxes].dtype == KILN_FLOAT16;
  nms.batches = inputs[kScores].shape[0];
  nms.classes_per_batch = inputs[kScores].shape[1];
  nms.count = inputs[kScores].shape[2];
  nms.format = center_point_box_ == 1 ? BoxFormat::kCenterXywh : BoxFormat::kYxyx;
  nms.iou_threshold = static_cast<float>(scalar(kIouThreshold, 0.0));
  if (!(nms.iou_threshold >= 0.0f && nms.iou_threshold <= 1.0f)) {
    refuse("iou_threshold must be in [0, 1], got " + std::to_string(nms.iou_threshold));
  }
  nms.has_score_threshold = num_inputs > kScoreThreshold && present(inputs[kScoreThreshold]);
  nms.score_threshold = static_cast<float>(scalar(kScoreThreshold, 0.0));
  const double max_output = scalar(kMaxOutput, 0.0);
  nms.limit = max_output <= 0 ? 0 : static_cast<int64_t>(std::min<double>(max_output, nms.count));
  enqueue_segmented_nms(nms, workspace, stream);
  outputs[0].shape[0] =
      write_onnx_rows_and_wait(nms, workspace, static_cast<int64_t*>(outputs[0].data), stream);
  outputs[0].shape[1] = 3;
}
#else
void NonMaxSuppression::execute_cuda(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*,
                                     int32_t, void*, void*) const {
  cuda_not_implemented("NonMaxSuppression");
}
#endif

namespace {
const kiln_plugin_field_spec kSpecs[] = {{"center_point_box", KILN_PLUGIN_FIELD_INT, 0}};
}  // namespace

const kiln_plugin_creator kNonMaxSuppressionCreator =
    CreatorGlue<NonMaxSuppression>::make("NonMaxSuppression", 1, kSpecs, 1, true);

}  // namespace kiln::plugins_lib
