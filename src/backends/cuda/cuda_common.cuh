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
// Built by make_broadcast_indexer with unit dims dropped and contiguous runs merged, so most
// broadcasts index in 1-3 dims; `offsets` is templated on the index type so kernels whose
// tensors fit in 32 bits (fits_32_bits) avoid 64-bit division.
template <int N>
struct StridedIndexer {
  int rank = 0;
  int64_t dims[kMaxRank];
  int64_t strides[N][kMaxRank];

  // Offsets of each operand for output element `index`.
  template <typename Index>
  __device__ __forceinline__ void offsets(Index index, Index (&out)[N]) const {
    for (int k = 0; k < N; ++k) out[k] = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const Index dim = static_cast<Index>(dims[d]);
      const Index coord = index % dim;
      index /= dim;
      for (int k = 0; k < N; ++k) out[k] += coord * static_cast<Index>(strides[k][d]);
    }
  }
};

// Builds an indexer for `out` with operands of the given shapes broadcast to it (numpy rules).
// Throws kUnsupported past kMaxRank.
template <int N>
StridedIndexer<N> make_broadcast_indexer(const LaunchContext& ctx, const Shape& out, const Shape* const (&operands)[N]) {
  if (out.size() > static_cast<size_t>(kMaxRank)) ctx.fail(ErrorCode::kUnsupported, "rank ", out.size(), " > ", kMaxRank);
  // Per-dimension strides in output order.
  int64_t full[N][kMaxRank] = {};
  for (int k = 0; k < N; ++k) {
    const Shape& in = *operands[k];
    const size_t offset = out.size() - in.size();
    int64_t stride = 1;
    for (size_t i = out.size(); i-- > offset;) {
      const int64_t dim = in[i - offset];
      full[k][i] = dim == 1 ? 0 : stride;
      stride *= dim;
    }
  }
  StridedIndexer<N> indexer{};
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;  // a unit dim moves no operand
    const int r = indexer.rank;
    bool merge = r > 0;
    // dims[r-1] (outer) folds into d when every operand walks the pair as one run.
    for (int k = 0; k < N && merge; ++k) merge = indexer.strides[k][r - 1] == full[k][d] * out[d];
    if (merge) {
      indexer.dims[r - 1] *= out[d];
      for (int k = 0; k < N; ++k) indexer.strides[k][r - 1] = full[k][d];
    } else {
      indexer.dims[r] = out[d];
      for (int k = 0; k < N; ++k) indexer.strides[k][r] = full[k][d];
      ++indexer.rank;
    }
  }
  return indexer;
}

// Whether every element index and offset of tensors with `n` elements fits uint32 arithmetic.
inline bool fits_32_bits(int64_t n) { return n > 0 && n <= int64_t{0x7fffffff}; }

// W consecutive elements moved as one 16-byte (or smaller) access.
template <typename T, int W>
struct alignas(sizeof(T) * W) Pack {
  T v[W];
};

// Elements per 16-byte access (1 for types of 16 bytes or more).
template <typename T>
constexpr int pack_width() {
  return sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));
}

// Whether a broadcast walk over `indexer` can move `width` elements at a time: the innermost dim is
// a multiple of `width`, each operand steps 0 or 1 element along it, every other stride keeps pack
// alignment, and every pointer is aligned to the pack size.
template <int N>
bool can_pack(const StridedIndexer<N>& indexer, int width, size_t element_bytes, const void* const (&pointers)[N],
              const void* out) {
  if (width <= 1 || indexer.rank == 0) return false;
  const int inner = indexer.rank - 1;
  if (indexer.dims[inner] % width != 0) return false;
  const size_t pack_bytes = element_bytes * static_cast<size_t>(width);
  if (reinterpret_cast<uintptr_t>(out) % pack_bytes != 0) return false;
  for (int k = 0; k < N; ++k) {
    if (indexer.strides[k][inner] > 1) return false;
    if (indexer.strides[k][inner] == 0) continue;  // one element, repeated across the pack
    for (int d = 0; d < inner; ++d) {
      if (indexer.strides[k][d] % width != 0) return false;
    }
    if (reinterpret_cast<uintptr_t>(pointers[k]) % pack_bytes != 0) return false;
  }
  return true;
}

// Bit k set when operand k moves along the innermost dim (a pack load rather than a repeated one).
template <int N>
unsigned packed_operands(const StridedIndexer<N>& indexer) {
  unsigned mask = 0;
  for (int k = 0; k < N; ++k) {
    if (indexer.rank > 0 && indexer.strides[k][indexer.rank - 1] == 1) mask |= 1u << k;
  }
  return mask;
}

// An indexer over `n` dense elements shared by every operand (rank 1, unit strides).
template <int N>
StridedIndexer<N> dense_indexer(int64_t n) {
  StridedIndexer<N> indexer{};
  indexer.rank = 1;
  indexer.dims[0] = n;
  for (int k = 0; k < N; ++k) indexer.strides[k][0] = 1;
  return indexer;
}

// Loads the W elements of a pack at `base[offset]`, or repeats `base[offset]` W times.
template <typename T, int W, typename Index>
__device__ __forceinline__ void load_pack(const T* __restrict__ base, Index offset, bool packed, T (&values)[W]) {
  if constexpr (W == 1) {
    values[0] = base[offset];
  } else if (packed) {
    const Pack<T, W> pack = *reinterpret_cast<const Pack<T, W>*>(base + offset);
#pragma unroll
    for (int w = 0; w < W; ++w) values[w] = pack.v[w];
  } else {
    const T value = base[offset];
#pragma unroll
    for (int w = 0; w < W; ++w) values[w] = value;
  }
}

template <typename T, int W, typename Index>
__device__ __forceinline__ void store_pack(T* __restrict__ base, Index offset, const T (&values)[W]) {
  if constexpr (W == 1) {
    base[offset] = values[0];
  } else {
    Pack<T, W> pack;
#pragma unroll
    for (int w = 0; w < W; ++w) pack.v[w] = values[w];
    *reinterpret_cast<Pack<T, W>*>(base + offset) = pack;
  }
}

// Grid-stride loop bounds in the kernel's index type.
template <typename Index>
__device__ __forceinline__ Index first_index() {
  return static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
}
template <typename Index>
__device__ __forceinline__ Index grid_stride() {
  return static_cast<Index>(gridDim.x) * static_cast<Index>(blockDim.x);
}

// Calls f.template operator()<Index, W>() with Index = uint32_t when `n` elements fit 32-bit index
// math (else int64_t) and W = kWidth when `packable` (else 1).
template <int kWidth, typename F>
void dispatch_index_and_width(int64_t n, bool packable, F&& f) {
  if (fits_32_bits(n)) {
    if (packable) {
      f.template operator()<uint32_t, kWidth>();
    } else {
      f.template operator()<uint32_t, 1>();
    }
  } else if (packable) {
    f.template operator()<int64_t, kWidth>();
  } else {
    f.template operator()<int64_t, 1>();
  }
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

// The same over the dtypes with exact arithmetic kernels: float32, float64, int32, int64 (ops that
// accumulate, such as Range and ScatterND's reductions). `what` names the use in the error.
template <typename F>
void dispatch_arithmetic(const LaunchContext& ctx, DType dtype, const char* what, F&& f) {
  switch (dtype) {
    case DType::kFloat32: f.template operator()<float>(); return;
    case DType::kFloat64: f.template operator()<double>(); return;
    case DType::kInt32: f.template operator()<int32_t>(); return;
    case DType::kInt64: f.template operator()<int64_t>(); return;
    default: ctx.fail(ErrorCode::kUnsupported, what, " is not supported for ", dtype_name(dtype));
  }
}

inline void check_launch(const LaunchContext& ctx) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) ctx.fail(ErrorCode::kDeviceError, "kernel launch failed: ", cudaGetErrorString(status));
}

}  // namespace kiln::cuda
