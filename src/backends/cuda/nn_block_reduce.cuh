// Device helpers shared by the row-wise nn kernels (normalization, softmax, reduce, pooling):
// 16-byte vector packs, warp- and block-wide all-reductions and row launch geometry.
#pragma once

#include <cstdint>

#include "backends/cuda/cuda_common.cuh"

namespace kiln::cuda::nn {

inline constexpr int kWarpSize = 32;

// kVec consecutive elements loaded or stored as one aligned access (16 bytes when full width).
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

// Elements of T per 16-byte access.
template <typename T>
inline constexpr int kVecWidth = static_cast<int>(16 / sizeof(T));

inline bool is_aligned16(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
}

template <typename T, int kVec>
__device__ __forceinline__ Pack<T, kVec> load_pack(const T* pointer) {
  return *reinterpret_cast<const Pack<T, kVec>*>(pointer);
}

template <typename T, int kVec>
__device__ __forceinline__ void store_pack(T* pointer, const Pack<T, kVec>& pack) {
  *reinterpret_cast<Pack<T, kVec>*>(pointer) = pack;
}

__device__ __forceinline__ float shuffle_xor(float value, int mask) {
  return __shfl_xor_sync(0xffffffffu, value, mask);
}
__device__ __forceinline__ int64_t shuffle_xor(int64_t value, int mask) {
  return static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(value), mask));
}

// Every lane of the warp gets combine() over the 32 lanes' values. The butterfly pairs lanes
// symmetrically, so with a commutative combine all lanes end with bit-identical results.
template <typename State, typename Combine>
__device__ __forceinline__ State warp_all_reduce(State value, Combine combine) {
#pragma unroll
  for (int mask = kWarpSize / 2; mask > 0; mask >>= 1) {
    value = combine(value, shuffle_xor(value, mask));
  }
  return value;
}

// Every thread of the block gets combine() over all threads' values. blockDim.x must be a
// multiple of 32 and every thread must call it; `scratch` holds at least 32 states.
template <typename State, typename Combine>
__device__ __forceinline__ State block_all_reduce(State value, Combine combine, State* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  value = warp_all_reduce(value, combine);
  __syncthreads();  // earlier readers of `scratch` are done
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  State total = scratch[0];
  for (int w = 1; w < warps; ++w) total = combine(total, scratch[w]);
  return total;
}

// The threads that process one row: a warp (8 rows per 256-thread block) or a whole block.
// `index`/`count` number the groups for a grid-stride loop over rows.
template <bool kBlock>
struct RowGroup {
  int rank;
  int size;
  int64_t index;
  int64_t count;

  __device__ __forceinline__ RowGroup() {
    if constexpr (kBlock) {
      rank = threadIdx.x;
      size = blockDim.x;
      index = blockIdx.x;
      count = gridDim.x;
    } else {
      const int warps = blockDim.x / kWarpSize;
      rank = threadIdx.x % kWarpSize;
      size = kWarpSize;
      index = int64_t{blockIdx.x} * warps + threadIdx.x / kWarpSize;
      count = int64_t{gridDim.x} * warps;
    }
  }
};

// All-reduce over the row group; every thread of the group must call it.
template <bool kBlock, typename State, typename Combine>
__device__ __forceinline__ State group_all_reduce(State value, Combine combine, State* scratch) {
  if constexpr (kBlock) {
    return block_all_reduce(value, combine, scratch);
  } else {
    return warp_all_reduce(value, combine);
  }
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {  // for NaN-free values
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Blocks for a grid-stride loop over `items` work items of `per_block` items each, capped so a
// launch stays within hardware limits while still filling the device.
inline unsigned blocks_for(int64_t items, int64_t per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  constexpr int64_t kMaxBlocks = int64_t{1} << 20;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

inline int multiprocessor_count(const LaunchContext& ctx) {
  return ctx.device && ctx.device->multiprocessors > 0 ? ctx.device->multiprocessors : 132;
}

}  // namespace kiln::cuda::nn
