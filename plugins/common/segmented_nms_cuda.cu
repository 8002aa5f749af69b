// CUDA NMS over segments (segmented_nms_cuda.hpp says what and how).
#include "common/segmented_nms_cuda.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "common/box_overlap.hpp"
#include "common/plugin_support.hpp"

namespace kiln::plugins_lib {
namespace {

constexpr int kThreads = 256;

int64_t align16(int64_t bytes) {
  return (bytes + 15) / 16 * 16;
}

// The workspace: per candidate (segment, box) its corners, its score key (NaN: not a candidate),
// the segment's boxes in rank order and the kept ones; per segment the counts.
struct Layout {
  float4* corners;
  float* keys;
  int32_t* order;
  int32_t* kept;
  int32_t* valid_count;
  int32_t* kept_count;
  int64_t bytes;
};

Layout layout_of(void* workspace, int64_t segments, int64_t count) {
  Layout l{};
  const int64_t items = segments * count;
  char* base = static_cast<char*>(workspace);
  int64_t at = 0;
  const auto take = [&](int64_t bytes) {
    char* p = base ? base + at : nullptr;
    at += align16(bytes);
    return p;
  };
  l.corners = reinterpret_cast<float4*>(take(items * 16));
  l.keys = reinterpret_cast<float*>(take(items * 4));
  l.order = reinterpret_cast<int32_t*>(take(items * 4));
  l.kept = reinterpret_cast<int32_t*>(take(items * 4));
  l.valid_count = reinterpret_cast<int32_t*>(take(segments * 4));
  l.kept_count = reinterpret_cast<int32_t*>(take(segments * 4));
  l.bytes = at;
  return l;
}

__device__ float load(const void* data, bool float16, int64_t i) {
  if (float16) return __half2float(static_cast<const __half*>(data)[i]);
  return static_cast<const float*>(data)[i];
}

__device__ int64_t class_of(const SegmentedNms& p, int64_t box) {
  if (!p.classes) return 0;
  if (p.classes_int32) return static_cast<const int32_t*>(p.classes)[box];
  return static_cast<const int64_t*>(p.classes)[box];
}

unsigned blocks_for(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

__global__ void prepare_kernel(SegmentedNms p, Layout l) {
  const int64_t items = p.segments() * p.count;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < items;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t segment = t / p.count, box = t % p.count;
    const int64_t batch = segment / p.classes_per_batch;
    float v[4];
    for (int k = 0; k < 4; ++k) v[k] = load(p.boxes, p.float16, (batch * p.count + box) * 4 + k);
    float4 c;
    if (p.format == BoxFormat::kCenterXywh) {
      c = make_float4(v[0] - v[2] / 2, v[1] - v[3] / 2, v[0] + v[2] / 2, v[1] + v[3] / 2);
    } else if (p.format == BoxFormat::kYxyx) {
      c = make_float4(fminf(v[1], v[3]), fminf(v[0], v[2]), fmaxf(v[1], v[3]), fmaxf(v[0], v[2]));
    } else {
      c = make_float4(fminf(v[0], v[2]), fminf(v[1], v[3]), fmaxf(v[0], v[2]), fmaxf(v[1], v[3]));
    }
    l.corners[t] = c;
    const float score = load(p.scores, p.float16, t);
    const bool candidate = !isnan(score) && (!p.has_score_threshold || score > p.score_threshold);
    l.keys[t] = candidate ? score : nanf("");
  }
}

// order[segment][rank] = box, rank = the candidates of the segment before it (higher score, or
// equal score and lower index).
__global__ void rank_kernel(SegmentedNms p, Layout l) {
  const int64_t items = p.segments() * p.count;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < items;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float key = l.keys[t];
    if (isnan(key)) continue;
    const int64_t segment = t / p.count, box = t % p.count;
    const float* keys = l.keys + segment * p.count;
    int64_t rank = 0;
    for (int64_t j = 0; j < p.count; ++j) {
      const float other = keys[j];
      if (other > key || (other == key && j < box)) ++rank;  // NaN compares false
    }
    l.order[segment * p.count + rank] = static_cast<int32_t>(box);
    atomicAdd(&l.valid_count[segment], 1);
  }
}

// One block per segment: candidates in rank order, each checked by the block's threads against
// the boxes kept so far.
__global__ void sweep_kernel(SegmentedNms p, Layout l) {
  const int64_t segment = blockIdx.x;
  const int64_t base = segment * p.count;
  const int32_t candidates = l.valid_count[segment];
  int32_t kept = 0;  // the same in every thread of the block
  for (int32_t pos = 0; pos < candidates; ++pos) {
    if (p.limit >= 0 && kept >= p.limit) break;
    const int32_t box = l.order[base + pos];
    const float4 c = l.corners[base + box];
    const int64_t cls = class_of(p, box);
    int suppressed = 0;
    for (int32_t k = threadIdx.x; k < kept && !suppressed; k += blockDim.x) {
      const int32_t other = l.kept[base + k];
      if (p.classes && class_of(p, other) != cls) continue;
      const float4 o = l.corners[base + other];
      const float a[4] = {c.x, c.y, c.z, c.w};
      const float b[4] = {o.x, o.y, o.z, o.w};
      if (box_iou(a, b) > p.iou_threshold) suppressed = 1;
    }
    if (__syncthreads_or(suppressed)) continue;
    if (threadIdx.x == 0) l.kept[base + kept] = box;
    ++kept;
    __syncthreads();  // the new kept box is visible to every thread before the next candidate
  }
  if (threadIdx.x == 0) l.kept_count[segment] = kept;
}

__global__ void onnx_rows_kernel(SegmentedNms p, Layout l, int64_t* rows) {
  int64_t row = 0;
  for (int64_t segment = 0; segment < p.segments(); ++segment) {
    const int32_t kept = l.kept_count[segment];
    for (int32_t k = threadIdx.x; k < kept; k += blockDim.x) {
      int64_t* r = rows + (row + k) * 3;
      r[0] = segment / p.classes_per_batch;
      r[1] = segment % p.classes_per_batch;
      r[2] = l.kept[segment * p.count + k];
    }
    row += kept;
  }
}

__global__ void kept_indices_kernel(Layout l, int64_t* keep, int64_t capacity, bool pad,
                                    int64_t* count) {
  const int32_t kept = l.kept_count[0];
  const int64_t end = pad ? capacity : (kept < capacity ? kept : capacity);
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < end;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    keep[k] = k < kept ? l.kept[k] : -1;
  }
  if (count && blockIdx.x == 0 && threadIdx.x == 0) *count = kept;
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw Failure(KILN_ERROR_DEVICE,
                  std::string(what) + " failed on CUDA: " + cudaGetErrorString(status));
  }
}

void copy_to_host(void* host, const void* device, size_t bytes, cudaStream_t stream) {
  cudaError_t status = cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream);
  if (status == cudaSuccess) status = cudaStreamSynchronize(stream);
  if (status != cudaSuccess) {
    throw Failure(KILN_ERROR_DEVICE, std::string("reading a result back from the GPU failed: ") +
                                         cudaGetErrorString(status));
  }
}

}  // namespace

int64_t segmented_nms_workspace_bytes(int64_t segments, int64_t count) {
  return layout_of(nullptr, segments, count).bytes;
}

void enqueue_segmented_nms(const SegmentedNms& p, void* workspace, void* stream) {
  if (p.count > INT32_MAX) {
    throw Failure(KILN_ERROR_UNSUPPORTED,
                  "the CUDA NMS takes at most 2^31 - 1 boxes, got " + std::to_string(p.count));
  }
  const auto s = static_cast<cudaStream_t>(stream);
  const Layout l = layout_of(workspace, p.segments(), p.count);
  if (p.segments() == 0) return;
  if (cudaMemsetAsync(l.valid_count, 0, p.segments() * 4, s) != cudaSuccess ||
      cudaMemsetAsync(l.kept_count, 0, p.segments() * 4, s) != cudaSuccess) {
    check_launch("clearing the NMS counts");
  }
  const int64_t items = p.segments() * p.count;
  if (items > 0) {
    prepare_kernel<<<blocks_for(items), kThreads, 0, s>>>(p, l);
    rank_kernel<<<blocks_for(items), kThreads, 0, s>>>(p, l);
    check_launch("the NMS ranking");
  }
  if (p.segments() > INT32_MAX) {
    throw Failure(KILN_ERROR_UNSUPPORTED, "too many NMS segments for one grid");
  }
  sweep_kernel<<<static_cast<unsigned>(p.segments()), kThreads, 0, s>>>(p, l);
  check_launch("the NMS sweep");
}

int64_t write_onnx_rows_and_wait(const SegmentedNms& p, void* workspace, int64_t* rows,
                                 void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  const Layout l = layout_of(workspace, p.segments(), p.count);
  if (p.segments() == 0) return 0;
  onnx_rows_kernel<<<1, kThreads, 0, s>>>(p, l, rows);
  check_launch("writing the NMS rows");
  std::vector<int32_t> kept(static_cast<size_t>(p.segments()));
  copy_to_host(kept.data(), l.kept_count, kept.size() * 4, s);
  int64_t total = 0;
  for (int32_t k : kept) total += k;
  return total;
}

void write_kept_indices(const SegmentedNms& p, void* workspace, int64_t* keep, int64_t capacity,
                        bool pad, int64_t* count, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  const Layout l = layout_of(workspace, p.segments(), p.count);
  kept_indices_kernel<<<blocks_for(capacity), kThreads, 0, s>>>(l, keep, capacity, pad, count);
  check_launch("writing the kept indices");
}

int64_t kept_count_and_wait(const SegmentedNms& p, void* workspace, void* stream) {
  const Layout l = layout_of(workspace, p.segments(), p.count);
  int32_t kept = 0;
  copy_to_host(&kept, l.kept_count, 4, static_cast<cudaStream_t>(stream));
  return kept;
}

double read_device_scalar(const kiln_plugin_tensor& t, double fallback, void* stream) {
  if (!present(t) || plugin::numel(t) < 1) return fallback;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (t.dtype) {
    case KILN_INT64: {
      int64_t v = 0;
      copy_to_host(&v, t.data, 8, s);
      return static_cast<double>(v);
    }
    case KILN_INT32: {
      int32_t v = 0;
      copy_to_host(&v, t.data, 4, s);
      return v;
    }
    case KILN_FLOAT16: {
      uint16_t v = 0;
      copy_to_host(&v, t.data, 2, s);
      return half_to_float(v);
    }
    default: {
      float v = 0;
      copy_to_host(&v, t.data, 4, s);
      return v;
    }
  }
}

}  // namespace kiln::plugins_lib
