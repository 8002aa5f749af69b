// kiln::RoiAlign on CUDA: one thread per output element, the math of roi_align_math.hpp.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "roi_align/roi_align.hpp"

namespace kiln::plugins_lib {
namespace {

template <typename T>
__device__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__device__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <typename T>
__device__ T from_float(float v) {
  return static_cast<T>(v);
}
template <>
__device__ __half from_float<__half>(float v) {
  return __float2half(v);
}

template <typename T, typename Index>
__global__ void roi_align_kernel(RoiAlignParams p, const T* x, const T* rois,
                                 const Index* batch_indices, T* y, int64_t num_rois,
                                 int64_t batches, bool batch_column) {
  const int64_t total = num_rois * p.channels * p.pooled_height * p.pooled_width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pw = i % p.pooled_width;
    const int64_t ph = (i / p.pooled_width) % p.pooled_height;
    const int64_t c = (i / (p.pooled_width * p.pooled_height)) % p.channels;
    const int64_t r = i / (p.pooled_width * p.pooled_height * p.channels);
    // torchvision's rois [K, 5] carry the batch index in column 0; ONNX's are [R, 4].
    const int64_t stride = batch_column ? 5 : 4;
    const int64_t batch = batch_column ? static_cast<int64_t>(to_float(rois[r * 5]))
                                       : static_cast<int64_t>(batch_indices[r]);
    if (batch < 0 || batch >= batches || p.height * p.width == 0) {
      y[i] = from_float<T>(0.0f);
      continue;
    }
    float roi[4];
    for (int k = 0; k < 4; ++k) roi[k] = to_float(rois[r * stride + (batch_column ? 1 : 0) + k]);
    const T* plane_data = x + (batch * p.channels + c) * p.height * p.width;
    const auto plane = [&](int64_t yy, int64_t xx) {
      return to_float(plane_data[yy * p.width + xx]);
    };
    y[i] = from_float<T>(roi_align_element(p, roi, ph, pw, plane));
  }
}

template <typename T, typename Index>
void launch(const RoiAlignParams& p, const void* x, const void* rois, const void* indices, void* y,
            int64_t num_rois, int64_t batches, bool batch_column, cudaStream_t stream) {
  const int64_t total = num_rois * p.channels * p.pooled_height * p.pooled_width;
  if (total == 0) return;
  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  roi_align_kernel<T, Index>
      <<<static_cast<unsigned>(blocks < 65535 ? blocks : 65535), kThreads, 0, stream>>>(
          p, static_cast<const T*>(x), static_cast<const T*>(rois),
          static_cast<const Index*>(indices), static_cast<T*>(y), num_rois, batches, batch_column);
}

}  // namespace

void launch_roi_align_cuda(const RoiAlignParams& params, const void* x, const void* rois,
                           const void* batch_indices, bool indices_int32, void* y, bool float16,
                           int64_t num_rois, int64_t batches, void* stream) {
  const bool batch_column = batch_indices == nullptr;
  const auto s = static_cast<cudaStream_t>(stream);
  if (float16) {
    if (indices_int32) {
      launch<__half, int32_t>(params, x, rois, batch_indices, y, num_rois, batches, batch_column,
                              s);
    } else {
      launch<__half, int64_t>(params, x, rois, batch_indices, y, num_rois, batches, batch_column,
                              s);
    }
  } else if (indices_int32) {
    launch<float, int32_t>(params, x, rois, batch_indices, y, num_rois, batches, batch_column, s);
  } else {
    launch<float, int64_t>(params, x, rois, batch_indices, y, num_rois, batches, batch_column, s);
  }
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw Failure(KILN_ERROR_DEVICE,
                  std::string("RoiAlign kernel launch failed: ") + cudaGetErrorString(status));
  }
}

}  // namespace kiln::plugins_lib
