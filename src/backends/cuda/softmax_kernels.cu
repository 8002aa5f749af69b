// Softmax and LogSoftmax on CUDA, float32 math for every float dtype. The tensor is viewed as
// [outer, extent, inner] around the axis. With inner == 1 (the last axis) rows are contiguous: a
// warp (rows up to 1024) or a block per row keeps the row in registers and does the CPU's exact
// passes (max, sum of exp, scale); longer rows use an online max/sum and read the row twice.
// Otherwise one thread per (outer, inner) column walks the axis with the online method.
//
// NaN behaviour follows the CPU: a NaN never becomes the maximum but poisons the sum, so its row
// is all NaN; an all -inf row and a row holding +inf are all NaN too (exp(-inf - -inf) and
// exp(inf - inf) are NaN there).
#include <cmath>
#include <cstdint>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/nn_block_reduce.cuh"

namespace kiln::cuda {
namespace nn {
namespace {

// ---- cached rows --------------------------------------------------------------------------------

// Each thread of the group holds kElems values of the row: chunk c covers elements
// [(c * size + rank) * kVec, + kVec). The row length is a multiple of kVec.
template <typename T, bool kLog, bool kBlock, int kVec, int kElems>
__global__ void softmax_rows_cached_kernel(const T* __restrict__ in, T* __restrict__ out,
                                           int64_t rows, int64_t length) {
  constexpr int kChunks = kElems / kVec;
  __shared__ float scratch[kWarpSize];
  const RowGroup<kBlock> group;
  for (int64_t row = group.index; row < rows; row += group.count) {
    const T* x = in + row * length;
    T* y = out + row * length;
    float values[kElems];
    float max = -INFINITY;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t i = (int64_t{c} * group.size + group.rank) * kVec;
      if (i < length) {
        const Pack<T, kVec> pack = load_pack<T, kVec>(x + i);
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const float v = to_float(pack.v[j]);
          values[c * kVec + j] = v;
          max = v > max ? v : max;
        }
      }
    }
    max = group_all_reduce<kBlock>(max, MaxOp{}, scratch);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t i = (int64_t{c} * group.size + group.rank) * kVec;
      if (i < length) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const float e = expf(values[c * kVec + j] - max);
          sum += e;
          if constexpr (!kLog) values[c * kVec + j] = e;
        }
      }
    }
    sum = group_all_reduce<kBlock>(sum, SumOp{}, scratch);
    const float shift = max + logf(sum);
    const float scale = 1.0f / sum;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t i = (int64_t{c} * group.size + group.rank) * kVec;
      if (i < length) {
        Pack<T, kVec> pack;
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const float v = values[c * kVec + j];
          pack.v[j] = from_float<T>(kLog ? v - shift : v * scale);
        }
        store_pack<T, kVec>(y + i, pack);
      }
    }
  }
}

// ---- online max/sum -----------------------------------------------------------------------------

struct OnlineState {
  float max;
  float sum;  // sum of exp(x - max) over the values seen
};

__device__ __forceinline__ OnlineState shuffle_xor(OnlineState state, int mask) {
  return OnlineState{nn::shuffle_xor(state.max, mask), nn::shuffle_xor(state.sum, mask)};
}

// -inf values seen while the maximum is still -inf are left out: they add 0 once a finite maximum
// arrives, and an all -inf row is made NaN in finish(). A NaN value poisons the sum.
__device__ __forceinline__ void online_add(OnlineState& state, float value) {
  if (value > state.max) {
    state.sum = state.sum * expf(state.max - value) + 1.0f;
    state.max = value;
  } else if (state.max != -INFINITY || isnan(value)) {
    state.sum += expf(value - state.max);
  }
}

struct OnlineCombine {
  __device__ __forceinline__ OnlineState operator()(OnlineState a, OnlineState b) const {
    const float max = fmaxf(a.max, b.max);
    // A state still at -inf holds 0 (or NaN): it scales by exp(-inf) = 0 and keeps a NaN.
    const float from_a = a.max == -INFINITY ? a.sum : a.sum * expf(a.max - max);
    const float from_b = b.max == -INFINITY ? b.sum : b.sum * expf(b.max - max);
    return OnlineState{max, from_a + from_b};
  }
};

// An infinite maximum makes the CPU's sum NaN (exp(inf - inf) or exp(-inf + inf)).
__device__ __forceinline__ float finished_sum(const OnlineState& state) {
  return isinf(state.max) ? NAN : state.sum;
}

template <typename T, bool kLog, int kVec>
__global__ void softmax_rows_online_kernel(const T* __restrict__ in, T* __restrict__ out,
                                           int64_t rows, int64_t length) {
  __shared__ OnlineState scratch[kWarpSize];
  const RowGroup<true> group;
  for (int64_t row = group.index; row < rows; row += group.count) {
    const T* x = in + row * length;
    T* y = out + row * length;
    OnlineState state{-INFINITY, 0.0f};
    for (int64_t i = int64_t{group.rank} * kVec; i < length; i += int64_t{group.size} * kVec) {
      const Pack<T, kVec> pack = load_pack<T, kVec>(x + i);
#pragma unroll
      for (int j = 0; j < kVec; ++j) online_add(state, to_float(pack.v[j]));
    }
    state = block_all_reduce(state, OnlineCombine{}, scratch);
    const float max = state.max;
    const float sum = finished_sum(state);
    const float shift = max + logf(sum);
    const float scale = 1.0f / sum;
    for (int64_t i = int64_t{group.rank} * kVec; i < length; i += int64_t{group.size} * kVec) {
      const Pack<T, kVec> pack = load_pack<T, kVec>(x + i);
      Pack<T, kVec> result;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const float v = to_float(pack.v[j]);
        result.v[j] = from_float<T>(kLog ? v - shift : expf(v - max) * scale);
      }
      store_pack<T, kVec>(y + i, result);
    }
  }
}

// One thread per (outer, inner) column; neighbouring threads read neighbouring inner positions.
template <typename T, bool kLog>
__global__ void softmax_columns_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t outer,
                                       int64_t extent, int64_t inner) {
  const int64_t columns = outer * inner;
  for (int64_t column = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; column < columns;
       column += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = column / inner;
    const int64_t base = o * extent * inner + (column - o * inner);
    OnlineState state{-INFINITY, 0.0f};
    for (int64_t e = 0, offset = base; e < extent; ++e, offset += inner) {
      online_add(state, to_float(in[offset]));
    }
    const float max = state.max;
    const float sum = finished_sum(state);
    const float shift = max + logf(sum);
    const float scale = 1.0f / sum;
    for (int64_t e = 0, offset = base; e < extent; ++e, offset += inner) {
      const float v = to_float(in[offset]);
      out[offset] = from_float<T>(kLog ? v - shift : expf(v - max) * scale);
    }
  }
}

// ---- host ---------------------------------------------------------------------------------------

constexpr int kRowsPerWarpBlock = kBlockSize / kWarpSize;

template <typename T, bool kLog, int kVec>
void launch_rows(const LaunchContext& ctx, const T* in, T* out, int64_t rows, int64_t length) {
  const unsigned warp_grid = blocks_for(rows, kRowsPerWarpBlock);
  const unsigned block_grid = blocks_for(rows, 1);
  cudaStream_t stream = ctx.stream;
  if (length <= int64_t{kWarpSize} * 8) {
    softmax_rows_cached_kernel<T, kLog, false, kVec, 8>
        <<<warp_grid, kBlockSize, 0, stream>>>(in, out, rows, length);
  } else if (length <= int64_t{kWarpSize} * 32) {
    softmax_rows_cached_kernel<T, kLog, false, kVec, 32>
        <<<warp_grid, kBlockSize, 0, stream>>>(in, out, rows, length);
  } else if (length <= int64_t{kBlockSize} * 16) {
    softmax_rows_cached_kernel<T, kLog, true, kVec, 16>
        <<<block_grid, kBlockSize, 0, stream>>>(in, out, rows, length);
  } else if (length <= int64_t{kBlockSize} * 32) {
    softmax_rows_cached_kernel<T, kLog, true, kVec, 32>
        <<<block_grid, kBlockSize, 0, stream>>>(in, out, rows, length);
  } else {
    softmax_rows_online_kernel<T, kLog, kVec>
        <<<block_grid, 512, 0, stream>>>(in, out, rows, length);
  }
}

template <bool kLog>
void launch_softmax(LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& y = ctx.outputs[0];
  const auto rank = static_cast<int64_t>(x.shape.size());
  int64_t axis = ctx.attrs.get_int_or("axis", -1);
  if (rank == 0 || axis < -rank || axis >= rank) {
    ctx.fail(ErrorCode::kInvalidArgument, "axis ", axis, " is out of range for input ",
             shape_to_string(x.shape));
  }
  if (axis < 0) axis += rank;
  if (y.shape != x.shape || y.dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 is ", dtype_name(y.dtype), " ",
             shape_to_string(y.shape), ", expected ", dtype_name(x.dtype), " ",
             shape_to_string(x.shape));
  }
  const int64_t extent = x.shape[static_cast<size_t>(axis)];
  int64_t outer = 1;
  int64_t inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.shape[static_cast<size_t>(d)];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= x.shape[static_cast<size_t>(d)];
  dispatch_float(ctx, x.dtype, [&]<typename T>() {
    if (x.numel() == 0) return;
    const T* in = x.as<const T>();
    T* out = y.as<T>();
    if (inner == 1) {
      constexpr int kVec = kVecWidth<T>;
      if (extent % kVec == 0 && is_aligned16(in) && is_aligned16(out)) {
        launch_rows<T, kLog, kVec>(ctx, in, out, outer, extent);
      } else {
        launch_rows<T, kLog, 1>(ctx, in, out, outer, extent);
      }
    } else {
      softmax_columns_kernel<T, kLog>
          <<<grid_for(outer * inner), kBlockSize, 0, ctx.stream>>>(in, out, outer, extent, inner);
    }
    check_launch(ctx);
  });
}

}  // namespace
}  // namespace nn

void register_softmax_kernels(CudaKernelRegistry& registry) {
  const backends::KernelSupport nn_float{.inputs = {{{0}, backends::kNnFloatDTypes}}};
  registry.add("Softmax", CudaKernel{nullptr, nn::launch_softmax<false>}, nn_float);
  registry.add("LogSoftmax", CudaKernel{nullptr, nn::launch_softmax<true>}, nn_float);
}

}  // namespace kiln::cuda
