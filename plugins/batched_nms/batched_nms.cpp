// kiln::BatchedNMS / kiln::BatchedNMSPadded on the CPU. Inputs: boxes [N, 4] (x1, y1, x2, y2),
// scores [N] (float32 or float16, one dtype), idxs [N] class ids (int64 or int32).
#include "batched_nms/batched_nms.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "common/box_overlap.hpp"
#include "common/segmented_nms_cuda.hpp"

namespace kiln::plugins_lib {
namespace {

constexpr int32_t kBoxes = 0, kScores = 1, kIdxs = 2;

// Shape checks shared by both ops; returns N (-1 when dynamic).
int64_t check_inputs(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs) {
  if (num_inputs != 3) {
    refuse("takes 3 inputs (boxes, scores, idxs), got " + std::to_string(num_inputs));
  }
  expect_rank(inputs, kBoxes, "boxes", 2);
  expect_rank(inputs, kScores, "scores", 1);
  expect_rank(inputs, kIdxs, "idxs", 1);
  if (inputs[kBoxes].shape[1] >= 0 && inputs[kBoxes].shape[1] != 4) {
    refuse("boxes must be [N, 4], got [" + std::to_string(inputs[kBoxes].shape[0]) + ", " +
           std::to_string(inputs[kBoxes].shape[1]) + "]");
  }
  const int64_t n = inputs[kBoxes].shape[0];
  expect_same_dim(n, inputs[kScores].shape[0], "the lengths of boxes and scores");
  expect_same_dim(n, inputs[kIdxs].shape[0], "the lengths of boxes and idxs");
  return n >= 0
             ? n
             : (inputs[kScores].shape[0] >= 0 ? inputs[kScores].shape[0] : inputs[kIdxs].shape[0]);
}

}  // namespace

std::vector<int64_t> batched_nms_cpu(const kiln_plugin_tensor& boxes,
                                     const kiln_plugin_tensor& scores,
                                     const kiln_plugin_tensor& idxs, float iou_threshold,
                                     int64_t top_k) {
  const int64_t n = scores.shape[0];
  const bool classes = idxs.data != nullptr;
  if (boxes.shape[0] != n || (classes && idxs.shape[0] != n)) {
    refuse("boxes, scores and idxs differ in length (" + std::to_string(boxes.shape[0]) + ", " +
           std::to_string(n) + ", " + std::to_string(classes ? idxs.shape[0] : n) + ")");
  }
  std::vector<float> score(static_cast<size_t>(n));
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    score[i] = load_float(scores.data, scores.dtype, i);
    if (!std::isnan(score[i])) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  std::vector<float> corners(static_cast<size_t>(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    float v[4];
    for (int k = 0; k < 4; ++k) v[k] = load_float(boxes.data, boxes.dtype, i * 4 + k);
    float* c = &corners[static_cast<size_t>(i) * 4];
    c[0] = std::min(v[0], v[2]);
    c[1] = std::min(v[1], v[3]);
    c[2] = std::max(v[0], v[2]);
    c[3] = std::max(v[1], v[3]);
  }
  // A box's fate depends only on the higher-scoring boxes of its class, so walking all classes
  // in one score order gives the merged, score-sorted result directly (and top_k can stop it).
  std::unordered_map<int64_t, std::vector<int64_t>> kept_by_class;
  std::vector<int64_t> kept;
  for (int64_t i : order) {
    if (top_k >= 0 && static_cast<int64_t>(kept.size()) >= top_k) break;
    std::vector<int64_t>& same_class =
        kept_by_class[classes ? load_index(idxs.data, idxs.dtype, i) : 0];
    bool keep = true;
    for (int64_t j : same_class) {
      if (box_iou(&corners[i * 4], &corners[j * 4]) > iou_threshold) {
        keep = false;
        break;
      }
    }
    if (!keep) continue;
    same_class.push_back(i);
    kept.push_back(i);
  }
  return kept;
}

BatchedNms::BatchedNms(const kiln_plugin_field* fields, int32_t num_fields)
    : BatchedNms(fields, num_fields, false) {}

BatchedNms::BatchedNms(const kiln_plugin_field* fields, int32_t num_fields, bool padded) {
  iou_threshold_ = plugin::float_field(fields, num_fields, "iou_threshold", 0.0f);
  if (std::isnan(iou_threshold_)) refuse("iou_threshold must not be NaN");
  fields_.add_float("iou_threshold", iou_threshold_);
  if (padded) {
    top_k_ = plugin::int_field(fields, num_fields, "max_output", -1);
    if (top_k_ < 0) refuse("max_output must be >= 0, got " + std::to_string(top_k_));
    fields_.add_int("max_output", top_k_);
  } else {
    top_k_ = plugin::int_field(fields, num_fields, "top_k", -1);
    if (top_k_ < -1) refuse("top_k must be >= 0, or -1 for all, got " + std::to_string(top_k_));
    fields_.add_int("top_k", top_k_);
  }
}

void BatchedNms::supports(const kiln_dtype* dtypes, int32_t num_inputs) const {
  if (num_inputs != 3) return;  // infer names the count
  if (!is_float(dtypes[kBoxes]) || dtypes[kScores] != dtypes[kBoxes]) {
    refuse_dtype(std::string("takes boxes and scores of one dtype, float32 or float16; got ") +
                 dtype_name(dtypes[kBoxes]) + " and " + dtype_name(dtypes[kScores]));
  }
  if (!is_index(dtypes[kIdxs])) {
    refuse_dtype(std::string("takes idxs as int64 or int32, got ") + dtype_name(dtypes[kIdxs]));
  }
}

void BatchedNms::infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                       kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
  const int64_t n = check_inputs(inputs, num_inputs);
  if (num_outputs != 1) refuse("gives 1 output, got " + std::to_string(num_outputs));
  const int64_t bound = n < 0 ? 0 : (top_k_ >= 0 ? std::min(n, top_k_) : n);
  outputs[0].dtype = KILN_INT64;
  outputs[0].ndim = 1;
  outputs[0].dims[0] = plugin::data_dependent_dim(bound);
}

void BatchedNms::execute_cpu(const kiln_plugin_tensor* inputs, int32_t, kiln_plugin_tensor* outputs,
                             int32_t, void*) const {
  const std::vector<int64_t> kept =
      batched_nms_cpu(inputs[kBoxes], inputs[kScores], inputs[kIdxs], iou_threshold_, top_k_);
  std::copy(kept.begin(), kept.end(), static_cast<int64_t*>(outputs[0].data));
  outputs[0].shape[0] = static_cast<int64_t>(kept.size());
}

int64_t BatchedNms::workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs, int32_t,
                              const kiln_plugin_tensor_desc*, int32_t) const {
#if defined(KILN_PLUGINS_WITH_CUDA)
  if (backend == KILN_PLUGIN_BACKEND_CUDA) return segmented_nms_workspace_bytes(1, inputs[kScores].shape[0]);
#endif
  (void)backend;
  (void)inputs;
  return 0;  // the CPU kernel needs none
}

#if defined(KILN_PLUGINS_WITH_CUDA)
namespace {
SegmentedNms segmented_nms_of(const kiln_plugin_tensor* inputs, float iou_threshold,
                              int64_t top_k) {
  SegmentedNms nms{};
  nms.boxes = inputs[kBoxes].data;
  nms.scores = inputs[kScores].data;
  nms.float16 = inputs[kBoxes].dtype == KILN_FLOAT16;
  nms.classes = inputs[kIdxs].data;
  nms.classes_int32 = inputs[kIdxs].dtype == KILN_INT32;
  nms.count = inputs[kScores].shape[0];
  nms.iou_threshold = iou_threshold;
  nms.limit = top_k;
  return nms;
}
}  // namespace

void BatchedNms::execute_cuda(const kiln_plugin_tensor* inputs, int32_t,
                              kiln_plugin_tensor* outputs, int32_t, void* workspace,
                              void* stream) const {
  const SegmentedNms nms = segmented_nms_of(inputs, iou_threshold_, top_k_);
  enqueue_segmented_nms(nms, workspace, stream);
  write_kept_indices(nms, workspace, static_cast<int64_t*>(outputs[0].data), outputs[0].shape[0],
                     false, nullptr, stream);
  outputs[0].shape[0] = kept_count_and_wait(nms, workspace, stream);
}

void BatchedNmsPadded::execute_cuda(const kiln_plugin_tensor* inputs, int32_t,
                                    kiln_plugin_tensor* outputs, int32_t, void* workspace,
                                    void* stream) const {
  const SegmentedNms nms = segmented_nms_of(inputs, iou_threshold_, top_k_);
  enqueue_segmented_nms(nms, workspace, stream);
  write_kept_indices(nms, workspace, static_cast<int64_t*>(outputs[0].data), top_k_, true,
                     static_cast<int64_t*>(outputs[1].data), stream);
}
#else
void BatchedNms::execute_cuda(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*, int32_t,
                              void*, void*) const {
  cuda_not_implemented("BatchedNMS");
}

void BatchedNmsPadded::execute_cuda(const kiln_plugin_tensor*, int32_t, kiln_plugin_tensor*,
                                    int32_t, void*, void*) const {
  cuda_not_implemented("BatchedNMSPadded");
}
#endif

BatchedNmsPadded::BatchedNmsPadded(const kiln_plugin_field* fields, int32_t num_fields)
    : BatchedNms(fields, num_fields, true) {}

void BatchedNmsPadded::infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                             kiln_plugin_output_desc* outputs, int32_t num_outputs) const {
  check_inputs(inputs, num_inputs);
  if (num_outputs != 2) refuse("gives 2 outputs (keep, count), got " + std::to_string(num_outputs));
  outputs[0].dtype = KILN_INT64;
  outputs[0].ndim = 1;
  outputs[0].dims[0] = plugin::value_dim(top_k_);
  outputs[1].dtype = KILN_INT64;
  outputs[1].ndim = 0;
}

void BatchedNmsPadded::execute_cpu(const kiln_plugin_tensor* inputs, int32_t,
                                   kiln_plugin_tensor* outputs, int32_t, void*) const {
  const std::vector<int64_t> kept =
      batched_nms_cpu(inputs[kBoxes], inputs[kScores], inputs[kIdxs], iou_threshold_, top_k_);
  int64_t* keep = static_cast<int64_t*>(outputs[0].data);
  std::fill(keep, keep + top_k_, -1);
  std::copy(kept.begin(), kept.end(), keep);
  *static_cast<int64_t*>(outputs[1].data) = static_cast<int64_t>(kept.size());
}

namespace {
const kiln_plugin_field_spec kSpecs[] = {{"iou_threshold", KILN_PLUGIN_FIELD_FLOAT, 1},
                                         {"top_k", KILN_PLUGIN_FIELD_INT, 0}};
const kiln_plugin_field_spec kPaddedSpecs[] = {{"iou_threshold", KILN_PLUGIN_FIELD_FLOAT, 1},
                                               {"max_output", KILN_PLUGIN_FIELD_INT, 1}};
}  // namespace

const kiln_plugin_creator kBatchedNmsCreator =
    CreatorGlue<BatchedNms>::make("BatchedNMS", 1, kSpecs, 2, true);
const kiln_plugin_creator kBatchedNmsPaddedCreator =
    CreatorGlue<BatchedNmsPadded>::make("BatchedNMSPadded", 1, kPaddedSpecs, 2, false);

}  // namespace kiln::plugins_lib
