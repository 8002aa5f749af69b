// kiln's own depthwise convolution kernels: the block code of depthwise_conv_block.hpp compiled
// for the GPU, one kernel per (dtype, layout, kernel shape), and the launch that picks one.
#include "backends/cuda/depthwise_conv_kernels.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backends/cuda/depthwise_conv_block.hpp"

namespace kiln::cuda::depthwise {

template <>
struct Element<__half> {
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};

template <>
struct Element<__nv_bfloat16> {
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

}  // namespace kiln::cuda::depthwise

namespace kiln::cuda {
namespace {

template <typename T, int KH, int KW, int SW>
__global__ void __launch_bounds__(kDepthwiseThreads) depthwise_nchw_kernel(const depthwise::NchwArgs<T> args) {
  extern __shared__ __align__(16) unsigned char shared[];
  const int block = static_cast<int>(blockIdx.x);
  const int thread = static_cast<int>(threadIdx.x);
  const int threads = static_cast<int>(blockDim.x);
  depthwise::nchw_stage(args, block, thread, threads, shared);
  __syncthreads();
  depthwise::nchw_compute<T, KH, KW, SW>(args, block, thread, threads, shared);
}

template <typename T, int P, int KH, int KW, int SW>
__global__ void __launch_bounds__(kDepthwiseThreads) depthwise_nhwc_kernel(const depthwise::NhwcArgs<T> args) {
  extern __shared__ __align__(16) unsigned char shared[];
  const int chunk = static_cast<int>(blockIdx.y);
  const int thread = static_cast<int>(threadIdx.x);
  depthwise::nhwc_stage<T, P>(args, chunk, thread, static_cast<int>(blockDim.x), shared);
  __syncthreads();
  depthwise::nhwc_compute<T, P, KH, KW, SW>(args, static_cast<int>(blockIdx.x), chunk, thread, shared);
}

template <typename T, int P, int KH, int KW, int SW>
__global__ void __launch_bounds__(kDepthwiseThreads) depthwise_nhwc_tiled_kernel(const depthwise::NhwcTileArgs<T> args) {
  extern __shared__ __align__(16) unsigned char shared[];
  const int block = static_cast<int>(blockIdx.x);
  const int chunk = static_cast<int>(blockIdx.y);
  const int thread = static_cast<int>(threadIdx.x);
  depthwise::nhwc_tile_stage<T, P>(args, block, chunk, thread, static_cast<int>(blockDim.x), shared);
  __syncthreads();
  if constexpr (KH > 0) depthwise::nhwc_tile_compute<T, P, KH, KW, SW>(args, block, chunk, thread, shared);
}

template <typename T>
cudaError_t launch_typed(const DepthwiseConvPlan& plan, const DepthwiseConvTensors& tensors, cudaStream_t stream) {
  const T* x = static_cast<const T*>(tensors.x);
  const T* w = static_cast<const T*>(tensors.w);
  const T* bias = static_cast<const T*>(tensors.bias);
  const T* residual = static_cast<const T*>(tensors.residual);
  T* y = static_cast<T*>(tensors.y);
  if (!plan.problem.nhwc) {
    const DepthwiseNchwPlan& nchw = plan.nchw;
    const depthwise::NchwArgs<T> args = depthwise::make_nchw_args(plan, x, w, bias, residual, y);
    depthwise::with_kernel_shape(plan.kernel, plan.problem.stride_w, [&]<int KH, int KW, int SW>() {
      depthwise_nchw_kernel<T, KH, KW, SW><<<static_cast<unsigned>(nchw.blocks), static_cast<unsigned>(nchw.threads),
                                             static_cast<size_t>(nchw.shared_bytes), stream>>>(args);
    });
  } else if (plan.tiled && depthwise::nhwc_tiled_fits(plan, x, residual, y)) {
    const DepthwiseNhwcTilePlan& tiled = plan.nhwc_tiled;
    const depthwise::NhwcTileArgs<T> args = depthwise::make_nhwc_tile_args(plan, x, w, bias, residual, y);
    const dim3 grid(static_cast<unsigned>(tiled.blocks), static_cast<unsigned>(tiled.channel_blocks));
    const auto threads = static_cast<unsigned>(tiled.threads);
    const auto shared_bytes = static_cast<size_t>(tiled.shared_bytes);
    depthwise::with_kernel_shape(plan.kernel, plan.problem.stride_w, [&]<int KH, int KW, int SW>() {
      depthwise_nhwc_tiled_kernel<T, depthwise::kPack<T>, KH, KW, SW><<<grid, threads, shared_bytes, stream>>>(args);
    });
  } else if (depthwise::nhwc_vectors_fit(plan, x, residual, y)) {
    const DepthwiseNhwcPlan& nhwc = plan.nhwc_vector;
    const depthwise::NhwcArgs<T> args = depthwise::make_nhwc_args(plan, nhwc, x, w, bias, residual, y);
    const dim3 grid(static_cast<unsigned>(nhwc.pixel_blocks), static_cast<unsigned>(nhwc.channel_blocks));
    const auto threads = static_cast<unsigned>(nhwc.threads);
    const auto shared_bytes = static_cast<size_t>(nhwc.shared_bytes);
    depthwise::with_kernel_shape(plan.kernel, plan.problem.stride_w, [&]<int KH, int KW, int SW>() {
      depthwise_nhwc_kernel<T, depthwise::kPack<T>, KH, KW, SW><<<grid, threads, shared_bytes, stream>>>(args);
    });
  } else {
    // Odd channel counts or buffers off 16-byte alignment: one channel per thread, generic loops.
    const DepthwiseNhwcPlan& nhwc = plan.nhwc_scalar;
    const depthwise::NhwcArgs<T> args = depthwise::make_nhwc_args(plan, nhwc, x, w, bias, residual, y);
    const dim3 grid(static_cast<unsigned>(nhwc.pixel_blocks), static_cast<unsigned>(nhwc.channel_blocks));
    depthwise_nhwc_kernel<T, 1, 0, 0, 0><<<grid, static_cast<unsigned>(nhwc.threads),
                                           static_cast<size_t>(nhwc.shared_bytes), stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_depthwise_conv(const DepthwiseConvPlan& plan, const DepthwiseConvTensors& tensors,
                                  cudaStream_t stream) {
  switch (plan.problem.dtype) {
    case DType::kFloat32: return launch_typed<float>(plan, tensors, stream);
    case DType::kFloat16: return launch_typed<__half>(plan, tensors, stream);
    case DType::kBFloat16: return launch_typed<__nv_bfloat16>(plan, tensors, stream);
    default: return cudaErrorInvalidValue;  // depthwise_conv_unsupported refuses other dtypes
  }
}

}  // namespace kiln::cuda
