// ConvTranspose's fallback epilogue on CUDA: cuDNN's backward-data convolution has produced the
// "full" transposed convolution (no padding, extent stride * (in - 1) + dilated kernel per axis)
// in a scratch buffer; this kernel cuts the op's output window out of it, y[o] = full[o +
// pad_begin] (zero past the full extent: output_padding, or an output_shape beyond it), and adds
// the bias. Used for what cuDNN cannot express directly: asymmetric pads and output_padding >=
// stride.
#include "backends/cuda/conv_transpose_crop.hpp"
#include "backends/cuda/cuda_common.cuh"

namespace kiln::cuda {
namespace {

template <typename T>
__global__ void conv_transpose_crop_kernel(const T* __restrict__ full, const T* __restrict__ bias,
                                           T* __restrict__ y, ConvTransposeCrop crop, int64_t n) {
  const int64_t out_size = crop.out[0] * crop.out[1] * crop.out[2];
  const int64_t full_size = crop.full[0] * crop.full[1] * crop.full[2];
  for (int64_t index = first_index<int64_t>(); index < n; index += grid_stride<int64_t>()) {
    int64_t rest = index;
    const int64_t ow = rest % crop.out[2];
    rest /= crop.out[2];
    const int64_t oh = rest % crop.out[1];
    rest /= crop.out[1];
    const int64_t od = rest % crop.out[0];
    const int64_t plane = rest / crop.out[0];  // n * channels + m
    const int64_t jd = od + crop.pad_begin[0];
    const int64_t jh = oh + crop.pad_begin[1];
    const int64_t jw = ow + crop.pad_begin[2];
    float value = bias ? to_float(bias[plane % crop.channels]) : 0.0f;
    if (jd < crop.full[0] && jh < crop.full[1] && jw < crop.full[2]) {
      value += to_float(full[plane * full_size + (jd * crop.full[1] + jh) * crop.full[2] + jw]);
    }
    y[plane * out_size + ((od * crop.out[1] + oh) * crop.out[2] + ow)] = from_float<T>(value);
  }
}

template <typename T>
void launch_typed(const void* full, const void* bias, void* y, const ConvTransposeCrop& crop,
                  cudaStream_t stream) {
  const int64_t n = crop.planes * crop.out[0] * crop.out[1] * crop.out[2];
  if (n == 0) return;
  conv_transpose_crop_kernel<T><<<grid_for(n), kBlockSize, 0, stream>>>(
      static_cast<const T*>(full), static_cast<const T*>(bias), static_cast<T*>(y), crop, n);
}

}  // namespace

cudaError_t launch_conv_transpose_crop(DType dtype, const void* full, const void* bias, void* y,
                                       const ConvTransposeCrop& crop, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      launch_typed<float>(full, bias, y, crop, stream);
      break;
    case DType::kFloat16:
      launch_typed<__half>(full, bias, y, crop, stream);
      break;
    case DType::kBFloat16:
      launch_typed<__nv_bfloat16>(full, bias, y, crop, stream);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace kiln::cuda
