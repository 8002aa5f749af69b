// kiln::DeformConv on CUDA: one thread per output element, summing its taps directly (no
// columns buffer), with the sampling of deform_conv_math.hpp.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "deform_conv/deform_conv.hpp"

namespace kiln::plugins_lib {
namespace {

__device__ inline float to_float(float v) {
  return v;
}
__device__ inline float to_float(__half v) {
  return __half2float(v);
}
__device__ inline void store(float* p, float v) {
  *p = v;
}
__device__ inline void store(__half* p, float v) {
  *p = __float2half(v);
}

template <typename T>
__global__ void deform_conv_kernel(DeformConvParams p, const T* x, const T* w, const T* offset,
                                   const T* bias, const T* mask, T* y) {
  const int64_t spatial = p.out_height * p.out_width;
  const int64_t total = p.batches * p.out_channels * spatial;
  const int64_t taps = p.kernel_h * p.kernel_w;
  const int64_t in_per_group = p.in_channels / p.group;
  const int64_t out_per_group = p.out_channels / p.group;
  const int64_t channels_per_offset_group = p.in_channels / p.offset_group;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t s = index % spatial;
    const int64_t oc = (index / spatial) % p.out_channels;
    const int64_t n = index / (spatial * p.out_channels);
    const int64_t oh = s / p.out_width, ow = s % p.out_width;
    const int64_t g = oc / out_per_group;
    float acc = bias ? to_float(bias[oc]) : 0.0f;
    for (int64_t cl = 0; cl < in_per_group; ++cl) {
      const int64_t c = g * in_per_group + cl;
      const int64_t og = c / channels_per_offset_group;
      const T* plane_data = x + (n * p.in_channels + c) * p.height * p.width;
      const auto plane = [&](int64_t hh, int64_t ww) {
        return to_float(plane_data[hh * p.width + ww]);
      };
      for (int64_t tap = 0; tap < taps; ++tap) {
        const int64_t i = tap / p.kernel_w, j = tap % p.kernel_w;
        const int64_t dy_index = ((n * p.offset_group + og) * taps * 2 + 2 * tap) * spatial + s;
        const float h = static_cast<float>(oh * p.stride_h - p.pad_h + i * p.dilation_h) +
                        to_float(offset[dy_index]);
        const float ww = static_cast<float>(ow * p.stride_w - p.pad_w + j * p.dilation_w) +
                         to_float(offset[dy_index + spatial]);
        float v = deform_sample(plane, p.height, p.width, h, ww);
        if (mask) v *= to_float(mask[((n * p.offset_group + og) * taps + tap) * spatial + s]);
        acc += to_float(w[(oc * in_per_group + cl) * taps + tap]) * v;
      }
    }
    store(&y[index], acc);
  }
}

template <typename T>
void launch(const DeformConvParams& p, const void* x, const void* w, const void* offset,
            const void* bias, const void* mask, void* y, cudaStream_t stream) {
  const int64_t total = p.batches * p.out_channels * p.out_height * p.out_width;
  if (total == 0) return;
  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  deform_conv_kernel<T>
      <<<static_cast<unsigned>(blocks < 65535 ? blocks : 65535), kThreads, 0, stream>>>(
          p, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(offset),
          static_cast<const T*>(bias), static_cast<const T*>(mask), static_cast<T*>(y));
}

}  // namespace

void launch_deform_conv_cuda(const DeformConvParams& p, const void* x, const void* w,
                             const void* offset, const void* bias, const void* mask, void* y,
                             bool float16, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (float16) {
    launch<__half>(p, x, w, offset, bias, mask, y, s);
  } else {
    launch<float>(p, x, w, offset, bias, mask, y, s);
  }
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw Failure(KILN_ERROR_DEVICE,
                  std::string("DeformConv kernel launch failed: ") + cudaGetErrorString(status));
  }
}

}  // namespace kiln::plugins_lib
