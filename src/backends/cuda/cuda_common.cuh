// Device-side helpers shared by the CUDA kernel families: dtype dispatch, float conversion of
// 16-bit types, broadcast index math and launch geometry.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda {

inline constexpr int kMaxRank = 8;
inline constexpr int kBlockSize = 256;

template <typename T>
__device__ __forceinline__ float to_float(T v) { return static_cast<float>(v); }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v) { return static_cast<T>(v); }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Output dims and per-operand element strides (0 where broadcast), passed by value to kernels.
template <int N>
struct StridedIndexer {
  int rank = 0;
  int64_t dims[kMaxRank];
  int64_t strides[N][kMaxRank];

  // Offsets of each operand for output element `index`.
  __device__ __forceinline__ void offsets(int64_t index, int64_t (&out)[N]) const {
    for (int k = 0; k < N; ++k) out[k] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t coord = index % dims[d];
      index /= dims[d];
      for (int k = 0; k < N; ++k) out[k] += coord * strides[k][d];
    }
  }
};

// Builds an indexer for `out` with operands of the given shapes broadcast to it (numpy rules).
// Throws kUnsupported past kMaxRank.
template <int N>
StridedIndexer<N> make_broadcast_indexer(const LaunchContext& ctx, const Shape& out, const Shape* const (&operands)[N]) {
  StridedIndexer<N> indexer{};
  if (out.size() > static_cast<size_t>(kMaxRank)) ctx.fail(ErrorCode::kUnsupported, "rank ", out.size(), " > ", kMaxRank);
  indexer.rank = static_cast<int>(out.size());
  for (size_t d = 0; d < out.size(); ++d) indexer.dims[d] = out[d];
  for (int k = 0; k < N; ++k) {
    const Shape& in = *operands[k];
    int64_t stride = 1;
    for (size_t i = out.size(); i-- > 0;) {
      const size_t offset = out.size() - in.size();
      if (i < offset) {
        indexer.strides[k][i] = 0;
        continue;
      }
      const int64_t dim = in[i - offset];
      indexer.strides[k][i] = dim == 1 ? 0 : stride;
      stride *= dim;
    }
  }
  return indexer;
}

inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kBlockSize - 1) / kBlockSize;
  return static_cast<unsigned>(blocks < 65535 * 32 ? (blocks > 0 ? blocks : 1) : 65535 * 32);
}

// Calls f.template operator()<T>() with T the C++ type of a floating dtype.
template <typename F>
void dispatch_float(const LaunchContext& ctx, DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: f.template operator()<float>(); return;
    case DType::kFloat16: f.template operator()<__half>(); return;
    case DType::kBFloat16: f.template operator()<__nv_bfloat16>(); return;
    default: ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(dtype), " is not supported");
  }
}

// The same over every numeric dtype the CUDA backend handles.
template <typename F>
void dispatch_numeric(const LaunchContext& ctx, DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: f.template operator()<float>(); return;
    case DType::kFloat16: f.template operator()<__half>(); return;
    case DType::kBFloat16: f.template operator()<__nv_bfloat16>(); return;
    case DType::kInt64: f.template operator()<int64_t>(); return;
    case DType::kInt32: f.template operator()<int32_t>(); return;
    default: ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(dtype), " is not supported");
  }
}

inline void check_launch(const LaunchContext& ctx) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) ctx.fail(ErrorCode::kDeviceError, "kernel launch failed: ", cudaGetErrorString(status));
}

}  // namespace kiln::cuda
