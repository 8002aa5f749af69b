// RoiAlign on CUDA: one thread per output element, the math of roi_align_math.hpp. A roi whose
// batch index is outside [0, N) gets zeros and its index is recorded (the smallest such) in the
// workspace, which roi_align_cuda reads back to refuse as the CPU does.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "roi_align/roi_align_run.hpp"

namespace kiln::plugins_lib {
namespace {

// No bad roi recorded (the flag's bytes after cudaMemsetAsync with 0xff).
constexpr unsigned long long kNoBadRoi = ~0ull;

__device__ float to_float(float v) {
  return v;
}
__device__ float to_float(__half v) {
  return __half2float(v);
}
template <typename T>
__device__ T from_float(float v);
template <>
__device__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __half from_float<__half>(float v) {
  return __float2half(v);
}

template <typename T, typename Index>
__global__ void roi_align_kernel(RoiAlignParams p, const T* x, const T* rois,
                                 const Index* batch_indices, T* y, int64_t num_rois,
                                 int64_t batches, unsigned long long* first_bad_roi) {
  const int64_t total = num_rois * p.channels * p.pooled_height * p.pooled_width;
  // torchvision's rois [K, 5] carry the batch index in column 0; ONNX's are [R, 4].
  const bool batch_column = batch_indices == nullptr;
  const int64_t stride = batch_column ? 5 : 4, first_corner = batch_column ? 1 : 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pw = i % p.pooled_width;
    const int64_t ph = (i / p.pooled_width) % p.pooled_height;
    const int64_t c = (i / (p.pooled_width * p.pooled_height)) % p.channels;
    const int64_t r = i / (p.pooled_width * p.pooled_height * p.channels);
    const double value = batch_column ? static_cast<double>(to_float(rois[r * 5]))
                                      : static_cast<double>(batch_indices[r]);
    if (!(value >= 0.0) || value >= static_cast<double>(batches)) {
      atomicMin(first_bad_roi, static_cast<unsigned long long>(r));
      y[i] = from_float<T>(0.0f);
      continue;
    }
    if (p.height * p.width == 0) {
      y[i] = from_float<T>(0.0f);
      continue;
    }
    const auto batch = static_cast<int64_t>(value);
    float roi[4];
    for (int k = 0; k < 4; ++k) roi[k] = to_float(rois[r * stride + first_corner + k]);
    const T* plane_data = x + (batch * p.channels + c) * p.height * p.width;
    const auto plane = [&](int64_t yy, int64_t xx) {
      return to_float(plane_data[yy * p.width + xx]);
    };
    y[i] = from_float<T>(roi_align_element(p, roi, ph, pw, plane));
  }
}

template <typename T, typename Index>
void launch(const RoiAlignCall& call, unsigned long long* first_bad_roi, cudaStream_t stream) {
  const RoiAlignParams& p = call.params;
  const int64_t num_rois = call.rois.shape[0];
  const int64_t total = num_rois * p.channels * p.pooled_height * p.pooled_width;
  if (total == 0) return;
  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  roi_align_kernel<T, Index>
      <<<static_cast<unsigned>(blocks < 65535 ? blocks : 65535), kThreads, 0, stream>>>(
          p, static_cast<const T*>(call.x.data), static_cast<const T*>(call.rois.data),
          call.batch_indices ? static_cast<const Index*>(call.batch_indices->data) : nullptr,
          static_cast<T*>(call.y.data), num_rois, call.x.shape[0], first_bad_roi);
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Failure(KILN_ERROR_DEVICE,
                  std::string("RoiAlign ") + what + " failed: " + cudaGetErrorString(status));
  }
}

// Roi `roi`'s batch index, read from device memory (the stream is idle).
double batch_value_of(const RoiAlignCall& call, int64_t roi) {
  if (call.batch_indices == nullptr) {
    const size_t size = call.rois.dtype == KILN_FLOAT16 ? 2 : 4;
    unsigned char bytes[4] = {};
    check(cudaMemcpy(bytes, static_cast<const unsigned char*>(call.rois.data) + roi * 5 * size,
                     size, cudaMemcpyDeviceToHost),
          "reading a batch index");
    return load_float(bytes, call.rois.dtype, 0);
  }
  const size_t size = call.batch_indices->dtype == KILN_INT32 ? 4 : 8;
  unsigned char bytes[8] = {};
  check(cudaMemcpy(bytes, static_cast<const unsigned char*>(call.batch_indices->data) + roi * size,
                   size, cudaMemcpyDeviceToHost),
        "reading a batch index");
  return static_cast<double>(load_index(bytes, call.batch_indices->dtype, 0));
}

}  // namespace

int64_t roi_align_workspace_bytes() {
  return sizeof(unsigned long long);
}

void roi_align_cuda(const RoiAlignCall& call, void* workspace, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  auto* first_bad_roi = static_cast<unsigned long long*>(workspace);
  check(cudaMemsetAsync(first_bad_roi, 0xff, sizeof(*first_bad_roi), s), "flag reset");
  const bool float16 = call.x.dtype == KILN_FLOAT16;
  const bool int32 = call.batch_indices && call.batch_indices->dtype == KILN_INT32;
  if (float16) {
    if (int32) {
      launch<__half, int32_t>(call, first_bad_roi, s);
    } else {
      launch<__half, int64_t>(call, first_bad_roi, s);
    }
  } else if (int32) {
    launch<float, int32_t>(call, first_bad_roi, s);
  } else {
    launch<float, int64_t>(call, first_bad_roi, s);
  }
  check(cudaGetLastError(), "kernel launch");
  // Inside a capture the stream cannot be waited on: the zeros stand, unreported.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(s, &capture), "capture query");
  if (capture != cudaStreamCaptureStatusNone) return;
  unsigned long long bad = kNoBadRoi;
  check(cudaMemcpyAsync(&bad, first_bad_roi, sizeof(bad), cudaMemcpyDeviceToHost, s),
        "flag read");
  check(cudaStreamSynchronize(s), "synchronisation");
  if (bad != kNoBadRoi) {
    const auto roi = static_cast<int64_t>(bad);
    refuse_batch_index(call, roi, batch_value_of(call, roi));
  }
}

}  // namespace kiln::plugins_lib
