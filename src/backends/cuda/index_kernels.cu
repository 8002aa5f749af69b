// CumSum, ArgMax, ArgMin, TopK: CUDA kernels. Semantics are the CPU reference's
// (src/backends/cpu/index_kernels.cpp); parameters come from the shared host helpers
// (src/ops/index_params.hpp). Every op sees its input as [outer, length, inner] lines along the
// axis; a line's elements are `inner` apart.
//
// CumSum: contiguous lines (inner == 1) get a warp (length <= 256) or a block per line running a
// chunked scan: each thread takes 8 consecutive elements, a warp-shuffle scan (plus shared memory
// across warps) gives the thread's offset, and the running sum is carried from chunk to chunk, so
// any length works. Strided lines (inner > 1) get a (columns x rows) block per tile of up to 32
// neighbouring lines: loads stay coalesced across the lines, and the rows split each chunk.
// Floating data accumulate in double, as the CPU does, so both backends round the same sums;
// integers wrap. Cost: a single very long line runs on one block (one SM's bandwidth); a
// decoupled look-back scan would be needed to spread it over the GPU.
//
// ArgMax/ArgMin: contiguous lines get a warp or a block per line; strided lines one thread per
// output walking its line (coalesced across outputs), or, when outputs are few and the axis long,
// a block per tile of up to 32 neighbouring lines whose rows split the axis. (value, index) pairs
// are combined under a total order (NaN beats numbers, ties go to the lower index, or the higher
// with select_last_index), so the result is exactly the CPU's sequential scan.
//
// TopK: lines up to 64 long get a thread each, which selects the K winners one after another
// (O(length * K), cheap at that size). Longer lines get a block each (512 threads from 8192
// elements, else 256): a radix select on order-preserving integer keys (4 passes of 8 bits for
// 32-bit dtypes, 8 for int64; warp-aggregated shared-memory histograms) finds the K-th key, one
// more pass gathers the K winners (ties at the threshold by lowest index), and a bitonic sort by
// (key, index) orders them. A vocabulary row (50k floats, K <= 2048) thus reads the row 5 times
// from L2 on one SM. Up to K = 2048 the winners stay in shared memory;
// larger K sort in a global workspace slot per block (at most 64 blocks in flight) and cost
// O(K log^2 K) per line on one block: correct for K up to the line length, but slow for very
// large K (tens of milliseconds for K ~ 50k).
#include <cstdint>
#include <memory>
#include <type_traits>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/nn_block_reduce.cuh"
#include "ops/index_params.hpp"

namespace kiln::cuda {
namespace {

using nn::kWarpSize;
using ops::index::AxisLines;

constexpr unsigned kFullMask = 0xffffffffu;

ops::nn::NodeLabel label_of(const LaunchContext& ctx) {
  return ops::nn::NodeLabel{ctx.node_name, ctx.op};
}

const HostTensor& host_value(const LaunchContext& ctx, size_t index, const char* what) {
  const HostTensor* host = ctx.host_inputs.size() > index ? ctx.host_inputs[index] : nullptr;
  if (!host) ctx.fail(ErrorCode::kInternal, "input ", index, " (", what, ") has no host value");
  return *host;
}

void require_output(const LaunchContext& ctx, size_t index, DType dtype, const Shape& shape) {
  const TensorView& out = ctx.outputs[index];
  if (out.dtype != dtype || out.shape != shape) {
    ctx.fail(ErrorCode::kInvalidArgument, "output ", index, " is ", dtype_name(out.dtype),
             shape_to_string(out.shape), ", expected ", dtype_name(dtype), shape_to_string(shape));
  }
}

unsigned capped_blocks(int64_t wanted) {
  constexpr int64_t kMaxBlocks = int64_t{1} << 20;
  return static_cast<unsigned>(wanted < 1 ? 1 : (wanted > kMaxBlocks ? kMaxBlocks : wanted));
}

template <typename T>
__device__ __forceinline__ bool is_nan_value(T value) {
  if constexpr (std::is_integral_v<T>) {
    (void)value;
    return false;
  } else {
    return isnan(value);
  }
}

// ---- CumSum ---------------------------------------------------------------------------------

// Integers wrap in an unsigned accumulator of their width; floats sum in double.
template <typename T>
struct ScanAccOf {
  using type = double;
};
template <>
struct ScanAccOf<int32_t> {
  using type = uint32_t;
};
template <>
struct ScanAccOf<int64_t> {
  using type = uint64_t;
};
template <typename T>
using ScanAcc = typename ScanAccOf<T>::type;

template <typename T>
__device__ __forceinline__ ScanAcc<T> to_scan_acc(T value) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<ScanAcc<T>>(value);
  } else {
    return static_cast<double>(to_float(value));
  }
}

template <typename T>
__device__ __forceinline__ T from_scan_acc(ScanAcc<T> value) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(value);
  } else {
    // Through float, as the CPU's float kernel output is rounded to 16 bits afterwards.
    return from_float<T>(static_cast<float>(value));
  }
}

template <typename A>
__device__ __forceinline__ A shuffle_up(A value, int delta) {
  if constexpr (sizeof(A) == 8 && std::is_integral_v<A>) {
    return static_cast<A>(__shfl_up_sync(kFullMask, static_cast<unsigned long long>(value), delta));
  } else {
    return __shfl_up_sync(kFullMask, value, delta);
  }
}

template <typename A>
__device__ __forceinline__ A shuffle_from(A value, int lane) {
  if constexpr (sizeof(A) == 8 && std::is_integral_v<A>) {
    return static_cast<A>(__shfl_sync(kFullMask, static_cast<unsigned long long>(value), lane));
  } else {
    return __shfl_sync(kFullMask, value, lane);
  }
}

template <typename A>
__device__ __forceinline__ A warp_inclusive_scan(A value) {
  const int lane = threadIdx.x % kWarpSize;
#pragma unroll
  for (int delta = 1; delta < kWarpSize; delta *= 2) {
    const A other = shuffle_up(value, delta);
    if (lane >= delta) value += other;
  }
  return value;
}

constexpr int kScanItems = 8;  // consecutive elements per thread and chunk

struct ScanRowParams {
  int64_t lines = 0;
  int64_t length = 0;
  bool exclusive = false;
  bool reverse = false;
  bool vectorized = false;  // both pointers aligned to a pack and length % kScanItems == 0
};

// A warp (kBlock false) or the whole block (kBlock true) scans one contiguous line at a time.
// Scan position q maps to memory position q (or length - 1 - q when reversed).
template <typename T, bool kBlock>
__global__ void cumsum_rows_kernel(const T* __restrict__ in, T* __restrict__ out, ScanRowParams p) {
  using A = ScanAcc<T>;
  __shared__ A warp_totals[kWarpSize];
  const nn::RowGroup<kBlock> group;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  const int64_t chunk = int64_t{group.size} * kScanItems;
  for (int64_t line = group.index; line < p.lines; line += group.count) {
    const T* x = in + line * p.length;
    T* y = out + line * p.length;
    A carry = A{0};
    for (int64_t start = 0; start < p.length; start += chunk) {
      const int64_t first = start + int64_t{group.rank} * kScanItems;  // scan position
      T items[kScanItems];
      if (p.vectorized && first < p.length) {
        // The thread's positions form one aligned pack in memory (reversed when p.reverse).
        const int64_t at = p.reverse ? p.length - kScanItems - first : first;
        const nn::Pack<T, kScanItems> pack = nn::load_pack<T, kScanItems>(x + at);
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) {
          items[i] = pack.v[p.reverse ? kScanItems - 1 - i : i];
        }
      } else {
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) {
          const int64_t q = first + i;
          items[i] = q < p.length ? x[p.reverse ? p.length - 1 - q : q] : T{};
        }
      }
      A local = A{0};
      A prefix[kScanItems];
#pragma unroll
      for (int i = 0; i < kScanItems; ++i) {
        const A value = first + i < p.length ? to_scan_acc(items[i]) : A{0};
        if (p.exclusive) {
          prefix[i] = local;
          local += value;
        } else {
          local += value;
          prefix[i] = local;
        }
      }
      const A inclusive = warp_inclusive_scan(local);
      A before = shuffle_up(inclusive, 1);
      if (lane == 0) before = A{0};
      A total;
      if constexpr (kBlock) {
        if (lane == kWarpSize - 1) warp_totals[warp] = inclusive;
        __syncthreads();
        if (warp == 0) {
          A sums = lane < warps ? warp_totals[lane] : A{0};
          sums = warp_inclusive_scan(sums);
          if (lane < warps) warp_totals[lane] = sums;
        }
        __syncthreads();
        if (warp > 0) before += warp_totals[warp - 1];
        total = warp_totals[warps - 1];
        __syncthreads();  // warp_totals is rewritten by the next chunk
      } else {
        total = shuffle_from(inclusive, kWarpSize - 1);
      }
      const A base = carry + before;
      if (p.vectorized && first < p.length) {
        nn::Pack<T, kScanItems> pack;
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) {
          pack.v[p.reverse ? kScanItems - 1 - i : i] = from_scan_acc<T>(base + prefix[i]);
        }
        const int64_t at = p.reverse ? p.length - kScanItems - first : first;
        nn::store_pack<T, kScanItems>(y + at, pack);
      } else {
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) {
          const int64_t q = first + i;
          if (q < p.length)
            y[p.reverse ? p.length - 1 - q : q] = from_scan_acc<T>(base + prefix[i]);
        }
      }
      carry += total;
    }
  }
}

struct ScanStridedParams {
  int64_t outer = 0;
  int64_t length = 0;
  int64_t inner = 0;
  int64_t tiles = 0;  // ceil(inner / blockDim.x)
  bool exclusive = false;
  bool reverse = false;
};

// Block (columns, rows): threadIdx.x picks the line within a tile of neighbouring lines,
// threadIdx.y a run of kScanItems positions within the chunk. Dynamic shared memory holds one
// accumulator per thread.
template <typename T>
__global__ void cumsum_strided_kernel(const T* __restrict__ in, T* __restrict__ out,
                                      ScanStridedParams p) {
  using A = ScanAcc<T>;
  extern __shared__ unsigned char scan_shared[];
  A* totals = reinterpret_cast<A*>(scan_shared);
  const int64_t chunk = int64_t{blockDim.y} * kScanItems;
  const int64_t items = p.outer * p.tiles;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t o = item / p.tiles;
    const int64_t column = (item - o * p.tiles) * blockDim.x + threadIdx.x;
    const bool active = column < p.inner;
    const int64_t base_offset = o * p.length * p.inner + column;
    A carry = A{0};
    for (int64_t start = 0; start < p.length; start += chunk) {
      const int64_t first = start + int64_t{threadIdx.y} * kScanItems;
      A local = A{0};
      A prefix[kScanItems];
#pragma unroll
      for (int i = 0; i < kScanItems; ++i) {
        const int64_t q = first + i;
        A value = A{0};
        if (active && q < p.length) {
          const int64_t position = p.reverse ? p.length - 1 - q : q;
          value = to_scan_acc(in[base_offset + position * p.inner]);
        }
        if (p.exclusive) {
          prefix[i] = local;
          local += value;
        } else {
          local += value;
          prefix[i] = local;
        }
      }
      totals[threadIdx.y * blockDim.x + threadIdx.x] = local;
      __syncthreads();
      // Every thread of a column sums the column's run totals in the same order.
      A before = A{0};
      A total = A{0};
      for (unsigned r = 0; r < blockDim.y; ++r) {
        const A t = totals[r * blockDim.x + threadIdx.x];
        if (r < threadIdx.y) before += t;
        total += t;
      }
      __syncthreads();
      if (active) {
        const A base = carry + before;
#pragma unroll
        for (int i = 0; i < kScanItems; ++i) {
          const int64_t q = first + i;
          if (q < p.length) {
            const int64_t position = p.reverse ? p.length - 1 - q : q;
            out[base_offset + position * p.inner] = from_scan_acc<T>(base + prefix[i]);
          }
        }
      }
      carry += total;
    }
  }
}

template <typename T>
void run_cumsum(const LaunchContext& ctx, const AxisLines& lines,
                const ops::index::CumSumParams& params) {
  const T* in = static_cast<const T*>(ctx.inputs[0].data);
  T* out = static_cast<T*>(ctx.outputs[0].data);
  if (lines.inner == 1) {
    ScanRowParams p;
    p.lines = lines.outer;
    p.length = lines.length;
    p.exclusive = params.exclusive;
    p.reverse = params.reverse;
    const auto pack_bytes = static_cast<uintptr_t>(sizeof(T) * kScanItems);
    p.vectorized = p.length % kScanItems == 0 &&
                   reinterpret_cast<uintptr_t>(in) % pack_bytes == 0 &&
                   reinterpret_cast<uintptr_t>(out) % pack_bytes == 0;
    if (p.length <= int64_t{kWarpSize} * kScanItems) {
      constexpr int kWarpsPerBlock = kBlockSize / kWarpSize;
      cumsum_rows_kernel<T, false><<<capped_blocks((p.lines + kWarpsPerBlock - 1) / kWarpsPerBlock),
                                     kBlockSize, 0, ctx.stream>>>(in, out, p);
    } else {
      const unsigned threads = p.length > 1024 ? 256 : 128;
      cumsum_rows_kernel<T, true><<<capped_blocks(p.lines), threads, 0, ctx.stream>>>(in, out, p);
    }
  } else {
    ScanStridedParams p;
    p.outer = lines.outer;
    p.length = lines.length;
    p.inner = lines.inner;
    p.exclusive = params.exclusive;
    p.reverse = params.reverse;
    unsigned width = 1;
    while (width < 32 && static_cast<int64_t>(width) < lines.inner) width *= 2;
    unsigned height = kBlockSize / width;
    if (height > 32) height = 32;
    p.tiles = (lines.inner + width - 1) / width;
    const size_t shared = sizeof(ScanAcc<T>) * width * height;
    cumsum_strided_kernel<T>
        <<<capped_blocks(p.outer * p.tiles), dim3(width, height), shared, ctx.stream>>>(in, out, p);
  }
  check_launch(ctx);
}

void launch_cumsum(LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const ops::index::CumSumParams params = ops::index::cumsum_params(
      label_of(ctx), ctx.attrs, x.shape.size(), view_of(host_value(ctx, 1, "axis")));
  require_output(ctx, 0, x.dtype, x.shape);
  if (x.numel() == 0) return;
  const AxisLines lines = ops::index::lines_along(x.shape, params.axis);
  dispatch_numeric(ctx, x.dtype, [&]<typename T>() { run_cumsum<T>(ctx, lines, params); });
}

// ---- ArgMax / ArgMin ------------------------------------------------------------------------

template <typename T>
using ArgValue = std::conditional_t<std::is_integral_v<T>, int64_t, float>;

template <typename T>
__device__ __forceinline__ ArgValue<T> to_arg_value(T value) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<int64_t>(value);
  } else {
    return to_float(value);
  }
}

// Whether (a, ai) comes before (b, bi): a NaN beats every number, then the larger (ArgMax) or
// smaller (ArgMin) value, then the lower index (the higher with select_last_index). An index < 0
// marks an empty candidate.
template <bool kMax, typename V>
__device__ __forceinline__ bool arg_prefers(V a, int64_t ai, V b, int64_t bi, bool last) {
  if (bi < 0) return ai >= 0;
  if (ai < 0) return false;
  const bool a_nan = is_nan_value(a);
  const bool b_nan = is_nan_value(b);
  if (a_nan != b_nan) return a_nan;
  if (!a_nan && a != b) return kMax ? a > b : a < b;
  return last ? ai > bi : ai < bi;
}

template <typename V>
struct ArgBest {
  V value;
  int64_t index;
};

template <bool kMax, typename V>
__device__ __forceinline__ ArgBest<V> warp_arg_reduce(ArgBest<V> best, bool last) {
#pragma unroll
  for (int mask = kWarpSize / 2; mask > 0; mask >>= 1) {
    ArgBest<V> other;
    if constexpr (std::is_integral_v<V>) {
      other.value =
          static_cast<V>(__shfl_xor_sync(kFullMask, static_cast<long long>(best.value), mask));
    } else {
      other.value = __shfl_xor_sync(kFullMask, best.value, mask);
    }
    other.index =
        static_cast<int64_t>(__shfl_xor_sync(kFullMask, static_cast<long long>(best.index), mask));
    if (arg_prefers<kMax>(other.value, other.index, best.value, best.index, last)) best = other;
  }
  return best;
}

struct ArgRowParams {
  int64_t lines = 0;
  int64_t length = 0;
  bool last = false;
};

template <typename T, bool kMax, bool kBlock>
__global__ void arg_reduce_rows_kernel(const T* __restrict__ in, int64_t* __restrict__ out,
                                       ArgRowParams p) {
  using V = ArgValue<T>;
  __shared__ ArgBest<V> warp_best[kWarpSize];
  const nn::RowGroup<kBlock> group;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  for (int64_t line = group.index; line < p.lines; line += group.count) {
    const T* x = in + line * p.length;
    ArgBest<V> best{V{}, -1};
    for (int64_t i = group.rank; i < p.length; i += group.size) {
      const V value = to_arg_value(x[i]);
      if (arg_prefers<kMax>(value, i, best.value, best.index, p.last)) best = {value, i};
    }
    best = warp_arg_reduce<kMax>(best, p.last);
    if constexpr (kBlock) {
      if (lane == 0) warp_best[warp] = best;
      __syncthreads();
      if (warp == 0) {
        best = lane < warps ? warp_best[lane] : ArgBest<V>{V{}, -1};
        best = warp_arg_reduce<kMax>(best, p.last);
        if (lane == 0) out[line] = best.index;
      }
      __syncthreads();  // warp_best is rewritten for the next line
    } else {
      if (lane == 0) out[line] = best.index;
    }
  }
}

struct ArgStridedParams {
  int64_t outputs = 0;  // outer * inner
  int64_t length = 0;
  int64_t inner = 0;
  bool last = false;
};

template <typename T, bool kMax>
__global__ void arg_reduce_strided_kernel(const T* __restrict__ in, int64_t* __restrict__ out,
                                          ArgStridedParams p) {
  using V = ArgValue<T>;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < p.outputs;
       o += int64_t{gridDim.x} * blockDim.x) {
    const int64_t outer = o / p.inner;
    const T* x = in + outer * p.length * p.inner + (o - outer * p.inner);
    V best = to_arg_value(x[0]);
    int64_t best_index = 0;
    for (int64_t i = 1; i < p.length; ++i) {
      const V value = to_arg_value(x[i * p.inner]);
      if (arg_prefers<kMax>(value, i, best, best_index, p.last)) {
        best = value;
        best_index = i;
      }
    }
    out[o] = best_index;
  }
}

struct ArgColumnsParams {
  int64_t outer = 0;
  int64_t length = 0;
  int64_t inner = 0;
  int64_t tiles = 0;  // ceil(inner / blockDim.x)
  bool last = false;
};

// Few strided lines over a long axis: block (columns, rows), threadIdx.x picks the line within a
// tile of neighbouring lines (coalesced), threadIdx.y strides the axis; shared memory combines
// the rows' candidates. Dynamic shared memory holds one candidate per thread.
template <typename T, bool kMax>
__global__ void arg_reduce_columns_kernel(const T* __restrict__ in, int64_t* __restrict__ out,
                                          ArgColumnsParams p) {
  using V = ArgValue<T>;
  extern __shared__ unsigned char arg_shared[];
  auto* scratch = reinterpret_cast<ArgBest<V>*>(arg_shared);
  const int64_t items = p.outer * p.tiles;
  const unsigned slot = threadIdx.y * blockDim.x + threadIdx.x;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t o = item / p.tiles;
    const int64_t column = (item - o * p.tiles) * blockDim.x + threadIdx.x;
    ArgBest<V> best{V{}, -1};
    if (column < p.inner) {
      const T* x = in + o * p.length * p.inner + column;
      for (int64_t i = threadIdx.y; i < p.length; i += blockDim.y) {
        const V value = to_arg_value(x[i * p.inner]);
        if (arg_prefers<kMax>(value, i, best.value, best.index, p.last)) best = {value, i};
      }
    }
    scratch[slot] = best;
    __syncthreads();
    if (threadIdx.y == 0 && column < p.inner) {
      for (unsigned r = 1; r < blockDim.y; ++r) {
        const ArgBest<V> other = scratch[r * blockDim.x + threadIdx.x];
        if (arg_prefers<kMax>(other.value, other.index, best.value, best.index, p.last)) {
          best = other;
        }
      }
      out[o * p.inner + column] = best.index;
    }
    __syncthreads();  // scratch is rewritten for the next tile
  }
}

template <typename T, bool kMax>
void run_arg_reduce(const LaunchContext& ctx, const AxisLines& lines, bool last) {
  const T* in = static_cast<const T*>(ctx.inputs[0].data);
  auto* out = static_cast<int64_t*>(ctx.outputs[0].data);
  if (lines.inner == 1) {
    ArgRowParams p{lines.outer, lines.length, last};
    const bool many_lines = lines.outer >= int64_t{nn::multiprocessor_count(ctx)} * 32;
    if (lines.length <= 1024 || (many_lines && lines.length <= 8192)) {
      constexpr int kWarpsPerBlock = kBlockSize / kWarpSize;
      arg_reduce_rows_kernel<T, kMax, false>
          <<<capped_blocks((p.lines + kWarpsPerBlock - 1) / kWarpsPerBlock), kBlockSize, 0,
             ctx.stream>>>(in, out, p);
    } else {
      arg_reduce_rows_kernel<T, kMax, true>
          <<<capped_blocks(p.lines), 512, 0, ctx.stream>>>(in, out, p);
    }
  } else if (lines.length >= 64 &&
             lines.outer * lines.inner < int64_t{nn::multiprocessor_count(ctx)} * 512) {
    ArgColumnsParams p{lines.outer, lines.length, lines.inner, 0, last};
    unsigned width = 1;
    while (width < 32 && static_cast<int64_t>(width) < lines.inner) width *= 2;
    const unsigned height = kBlockSize / width;
    p.tiles = (lines.inner + width - 1) / width;
    const size_t shared = sizeof(ArgBest<ArgValue<T>>) * kBlockSize;
    arg_reduce_columns_kernel<T, kMax>
        <<<capped_blocks(p.outer * p.tiles), dim3(width, height), shared, ctx.stream>>>(in, out, p);
  } else {
    ArgStridedParams p{lines.outer * lines.inner, lines.length, lines.inner, last};
    arg_reduce_strided_kernel<T, kMax>
        <<<grid_for(p.outputs), kBlockSize, 0, ctx.stream>>>(in, out, p);
  }
  check_launch(ctx);
}

template <bool kMax>
void launch_arg_reduce(LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const ops::index::ArgReduceParams params =
      ops::index::arg_reduce_params(label_of(ctx), ctx.attrs, x.shape.size());
  require_output(ctx, 0, DType::kInt64, ops::index::arg_reduce_shape(x.shape, params));
  if (ctx.outputs[0].numel() == 0) return;
  const AxisLines lines = ops::index::lines_along(x.shape, params.axis);
  if (lines.length == 0) {
    ctx.fail(ErrorCode::kInvalidArgument, "cannot take ", ctx.op, " over axis ", params.axis,
             " of length 0");
  }
  dispatch_numeric(ctx, x.dtype, [&]<typename T>() {
    run_arg_reduce<T, kMax>(ctx, lines, params.select_last_index);
  });
}

// ---- TopK -----------------------------------------------------------------------------------

// Unsigned keys whose order is the output order (larger key first): order-preserving bits of the
// value, NaN above every number, -0 == +0, complemented for largest = 0.
template <typename T>
constexpr int key_bits() {
  return sizeof(T) == 8 ? 64 : 32;
}

template <typename T>
__device__ __forceinline__ uint64_t topk_key(T value, bool largest) {
  uint64_t ordered;
  if constexpr (std::is_same_v<T, int64_t>) {
    ordered = static_cast<uint64_t>(value) ^ (uint64_t{1} << 63);
  } else if constexpr (std::is_same_v<T, int32_t>) {
    ordered = static_cast<uint32_t>(value) ^ 0x80000000u;
  } else {
    const float f = to_float(value);
    uint32_t bits;
    if (isnan(f)) {
      bits = 0xffffffffu;
    } else {
      const uint32_t raw = f == 0.0f ? 0u : __float_as_uint(f);  // -0 ranks as +0
      bits = (raw & 0x80000000u) ? ~raw : (raw | 0x80000000u);
    }
    ordered = bits;
  }
  if (!largest) {
    ordered = ~ordered;
    if constexpr (key_bits<T>() == 32) ordered &= 0xffffffffull;
  }
  return ordered;
}

struct TopKEntry {
  uint64_t key;
  int64_t index;
};

// (a comes before b): larger key, then lower index.
__device__ __forceinline__ bool topk_before(const TopKEntry& a, const TopKEntry& b) {
  return a.key != b.key ? a.key > b.key : a.index < b.index;
}

struct TopKParams {
  int64_t lines = 0;  // outer * inner
  int64_t length = 0;
  int64_t inner = 0;
  int64_t k = 0;
  int64_t sort_size = 0;  // K rounded up to a power of two (block path)
  bool largest = true;
};

constexpr int64_t kThreadLineLimit = 64;  // lines up to this long get a thread each
constexpr int64_t kSharedEntries = 2048;  // winners sorted in shared memory up to this K
constexpr unsigned kTopKThreads = 512;    // the most; lines shorter than 8192 use 256
constexpr int64_t kMaxWorkspaceBlocks = 64;
constexpr int64_t kMaxWorkspaceBytes = int64_t{1} << 30;  // what the executor's prepare offers

// One thread per line: the j-th winner is the first element (in output order) after winner j-1.
template <typename T>
__global__ void topk_thread_kernel(const T* __restrict__ in, T* __restrict__ values,
                                   int64_t* __restrict__ indices, TopKParams p) {
  for (int64_t line = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; line < p.lines;
       line += int64_t{gridDim.x} * blockDim.x) {
    const int64_t outer = line / p.inner;
    const int64_t n = line - outer * p.inner;
    const T* x = in + outer * p.length * p.inner + n;
    const int64_t out_base = outer * p.k * p.inner + n;
    TopKEntry previous{0, -1};
    for (int64_t j = 0; j < p.k; ++j) {
      TopKEntry best{0, -1};
      for (int64_t i = 0; i < p.length; ++i) {
        const TopKEntry candidate{topk_key(x[i * p.inner], p.largest), i};
        if (previous.index >= 0 && !topk_before(previous, candidate)) continue;
        if (best.index < 0 || topk_before(candidate, best)) best = candidate;
      }
      values[out_base + j * p.inner] = x[best.index * p.inner];
      indices[out_base + j * p.inner] = best.index;
      previous = best;
    }
  }
}

// Bitonic sort of `count` (a power of two) entries into output order by the whole block.
__device__ void bitonic_sort(TopKEntry* entries, int64_t count) {
  for (int64_t size = 2; size <= count; size *= 2) {
    for (int64_t stride = size / 2; stride > 0; stride /= 2) {
      for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
        const int64_t partner = i ^ stride;
        if (partner <= i) continue;
        const bool ascending = (i & size) == 0;  // "ascending" = output order
        TopKEntry a = entries[i];
        TopKEntry b = entries[partner];
        if (topk_before(b, a) == ascending) {
          entries[i] = b;
          entries[partner] = a;
        }
      }
      __syncthreads();
    }
  }
}

struct RadixShared {
  unsigned int histogram[256];
  unsigned int selected_digit;
  unsigned int remaining;  // winners still to find among keys matching the prefix
  unsigned int bin_count;  // keys equal to the threshold (after the last pass)
  unsigned int greater_count;
  unsigned int equal_taken;
  unsigned int warp_counts[kTopKThreads / kWarpSize];
};

// One block per line: radix select of the K-th key, gather of the K winners, bitonic sort.
template <typename T, bool kShared>
__global__ void __launch_bounds__(kTopKThreads)
    topk_block_kernel(const T* __restrict__ in, T* __restrict__ values,
                      int64_t* __restrict__ indices, TopKEntry* __restrict__ workspace,
                      TopKParams p) {
  __shared__ RadixShared s;
  __shared__ TopKEntry shared_entries[kShared ? kSharedEntries : 1];
  TopKEntry* entries = kShared ? shared_entries : workspace + blockIdx.x * p.sort_size;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  for (int64_t line = blockIdx.x; line < p.lines; line += gridDim.x) {
    const int64_t outer = line / p.inner;
    const int64_t n = line - outer * p.inner;
    const T* x = in + outer * p.length * p.inner + n;
    const int64_t out_base = outer * p.k * p.inner + n;

    // 1. Radix select: the K-th key, digit by digit from the top.
    uint64_t prefix = 0;
    uint64_t prefix_mask = 0;
    if (threadIdx.x == 0) s.remaining = static_cast<unsigned int>(p.k);
    for (int shift = key_bits<T>() - 8; shift >= 0; shift -= 8) {
      for (int b = threadIdx.x; b < 256; b += blockDim.x) s.histogram[b] = 0;
      __syncthreads();
      // The loop bound is uniform across the block, so whole warps take part in the match:
      // lanes with the same digit add once (floats crowd into a few top-byte bins).
      for (int64_t start = 0; start < p.length; start += blockDim.x) {
        const int64_t i = start + threadIdx.x;
        unsigned int digit = 256;  // no bin
        if (i < p.length) {
          const uint64_t key = topk_key(x[i * p.inner], p.largest);
          if ((key & prefix_mask) == prefix)
            digit = static_cast<unsigned int>((key >> shift) & 0xff);
        }
        const unsigned int peers = __match_any_sync(kFullMask, digit);
        if (digit < 256 && __ffs(peers) - 1 == lane) {
          atomicAdd(&s.histogram[digit], static_cast<unsigned int>(__popc(peers)));
        }
      }
      __syncthreads();
      if (warp == 0) {
        // Lane l owns bins 255 - 8l down to 248 - 8l; the bin holding the remaining-th key
        // (counting from the top) is the digit.
        unsigned int own = 0;
        for (int b = 0; b < 8; ++b) own += s.histogram[255 - 8 * lane - b];
        unsigned int inclusive = own;
        for (int delta = 1; delta < kWarpSize; delta *= 2) {
          const unsigned int other = __shfl_up_sync(kFullMask, inclusive, delta);
          if (lane >= delta) inclusive += other;
        }
        const unsigned int before = inclusive - own;
        const unsigned int remaining = s.remaining;
        __syncwarp();  // every lane has read s.remaining before one lane rewrites it
        if (before < remaining && remaining <= inclusive) {
          unsigned int seen = before;
          for (int b = 0; b < 8; ++b) {
            const int bin = 255 - 8 * lane - b;
            const unsigned int count = s.histogram[bin];
            if (seen + count >= remaining) {
              s.selected_digit = static_cast<unsigned int>(bin);
              s.remaining = remaining - seen;
              s.bin_count = count;
              break;
            }
            seen += count;
          }
        }
      }
      __syncthreads();
      prefix |= static_cast<uint64_t>(s.selected_digit) << shift;
      prefix_mask |= uint64_t{0xff} << shift;
      __syncthreads();  // selected_digit and remaining are rewritten by the next pass
    }
    const uint64_t threshold = prefix;
    const unsigned int equal_needed = s.remaining;  // winners equal to the threshold
    const unsigned int equal_total = s.bin_count;
    const int64_t greater_total = p.k - equal_needed;

    // 2. Gather: every key above the threshold, and the lowest-index keys equal to it. Their
    // slots do not matter (the sort below orders by key and index).
    if (threadIdx.x == 0) {
      s.greater_count = 0;
      s.equal_taken = 0;
    }
    __syncthreads();
    if (equal_total == equal_needed) {
      for (int64_t i = threadIdx.x; i < p.length; i += blockDim.x) {
        const uint64_t key = topk_key(x[i * p.inner], p.largest);
        if (key > threshold) {
          entries[atomicAdd(&s.greater_count, 1u)] = TopKEntry{key, i};
        } else if (key == threshold) {
          entries[greater_total + atomicAdd(&s.equal_taken, 1u)] = TopKEntry{key, i};
        }
      }
    } else {
      // Ties at the threshold: walk the line in index order, a block-wide chunk at a time, so
      // the lowest indices are taken.
      unsigned int taken = 0;
      for (int64_t start = 0; start < p.length; start += blockDim.x) {
        const int64_t i = start + threadIdx.x;
        uint64_t key = 0;
        bool equal = false;
        if (i < p.length) {
          key = topk_key(x[i * p.inner], p.largest);
          if (key > threshold) entries[atomicAdd(&s.greater_count, 1u)] = TopKEntry{key, i};
          equal = key == threshold;
        }
        const unsigned int ballot = __ballot_sync(kFullMask, equal);
        if (lane == 0) s.warp_counts[warp] = __popc(ballot);
        __syncthreads();
        // Stable between the two barriers: this chunk's atomics are done, the next chunk's not
        // begun, so every thread takes the same decision to stop below.
        const unsigned int greater_so_far = s.greater_count;
        unsigned int rank = __popc(ballot & ((1u << lane) - 1u));
        unsigned int chunk_total = 0;
        for (int w = 0; w < static_cast<int>(blockDim.x / kWarpSize); ++w) {
          if (w < warp) rank += s.warp_counts[w];
          chunk_total += s.warp_counts[w];
        }
        if (equal && taken + rank < equal_needed) {
          entries[greater_total + taken + rank] = TopKEntry{key, i};
        }
        taken += chunk_total;
        __syncthreads();  // warp_counts is rewritten by the next chunk
        if (taken >= equal_needed && greater_so_far == static_cast<unsigned int>(greater_total)) {
          break;
        }
      }
    }
    for (int64_t j = p.k + threadIdx.x; j < p.sort_size; j += blockDim.x) {
      entries[j] = TopKEntry{0, INT64_MAX};  // after every real entry
    }
    __syncthreads();

    // 3. Sort the winners, 4. write them.
    bitonic_sort(entries, p.sort_size);
    for (int64_t j = threadIdx.x; j < p.k; j += blockDim.x) {
      const int64_t index = entries[j].index;
      values[out_base + j * p.inner] = x[index * p.inner];
      indices[out_base + j * p.inner] = index;
    }
    __syncthreads();  // entries and s are reused by the next line
  }
}

int64_t next_power_of_two(int64_t value) {
  int64_t power = 1;
  while (power < value) power *= 2;
  return power;
}

struct TopKPlan {
  TopKParams params;
  bool thread_path = false;
  bool shared = true;
  unsigned grid = 1;
  unsigned threads = kTopKThreads;
  size_t workspace_bytes = 0;
};

TopKPlan plan_topk(const LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const ops::nn::NodeLabel node = label_of(ctx);
  const ops::index::TopKParams attrs = ops::index::topk_params(node, ctx.attrs, x.shape.size());
  const AxisLines lines = ops::index::lines_along(x.shape, attrs.axis);
  const int64_t k = ops::index::topk_k(node, view_of(host_value(ctx, 1, "K")), lines.length);
  Shape expected = x.shape;
  expected[static_cast<size_t>(attrs.axis)] = k;
  require_output(ctx, 0, x.dtype, expected);
  require_output(ctx, 1, DType::kInt64, expected);
  if (lines.length > int64_t{0x7fffffff}) {
    ctx.fail(ErrorCode::kUnsupported, "TopK over an axis of length ", lines.length,
             " (the CUDA kernel supports up to 2^31 - 1)");
  }
  TopKPlan plan;
  TopKParams& p = plan.params;
  p.lines = lines.outer * lines.inner;
  p.length = lines.length;
  p.inner = lines.inner;
  p.k = k;
  p.largest = attrs.largest;
  p.sort_size = next_power_of_two(k);
  plan.thread_path = lines.length <= kThreadLineLimit;
  plan.shared = p.sort_size <= kSharedEntries;
  plan.threads = lines.length >= 8192 ? kTopKThreads : 256;
  if (plan.thread_path) {
    plan.grid = grid_for(p.lines);
  } else if (plan.shared) {
    plan.grid = capped_blocks(p.lines);
  } else {
    // As many blocks as fit the workspace the executor offers (1 GiB), at most 64.
    const auto slot_bytes = static_cast<int64_t>(p.sort_size * sizeof(TopKEntry));
    int64_t blocks = p.lines < kMaxWorkspaceBlocks ? p.lines : kMaxWorkspaceBlocks;
    if (blocks * slot_bytes > kMaxWorkspaceBytes) blocks = kMaxWorkspaceBytes / slot_bytes;
    if (blocks < 1) {
      ctx.fail(ErrorCode::kUnsupported, "TopK with K = ", k, " needs ", slot_bytes,
               " bytes of workspace per line, more than the ", kMaxWorkspaceBytes, " available");
    }
    plan.grid = static_cast<unsigned>(blocks);
    plan.workspace_bytes = static_cast<size_t>(blocks * p.sort_size) * sizeof(TopKEntry);
  }
  return plan;
}

bool topk_has_work(const LaunchContext& ctx) {
  return ctx.outputs[0].numel() > 0;
}

std::unique_ptr<LayerState> prepare_topk(LaunchContext& ctx, size_t* workspace_bytes) {
  const TopKPlan plan = plan_topk(ctx);
  *workspace_bytes = topk_has_work(ctx) ? plan.workspace_bytes : 0;
  if (*workspace_bytes > ctx.workspace_size) {
    ctx.fail(ErrorCode::kUnsupported, "TopK with K = ", plan.params.k, " needs ", *workspace_bytes,
             " bytes of workspace, more than the ", ctx.workspace_size, " available");
  }
  return nullptr;
}

void launch_topk(LaunchContext& ctx) {
  const TopKPlan plan = plan_topk(ctx);
  if (!topk_has_work(ctx)) return;
  if (plan.workspace_bytes > 0 && (!ctx.workspace || ctx.workspace_size < plan.workspace_bytes)) {
    ctx.fail(ErrorCode::kInternal, "workspace of ", ctx.workspace_size, " bytes, need ",
             plan.workspace_bytes);
  }
  auto* workspace = static_cast<TopKEntry*>(ctx.workspace);
  dispatch_numeric(ctx, ctx.inputs[0].dtype, [&]<typename T>() {
    const T* in = static_cast<const T*>(ctx.inputs[0].data);
    T* values = static_cast<T*>(ctx.outputs[0].data);
    auto* indices = static_cast<int64_t*>(ctx.outputs[1].data);
    if (plan.thread_path) {
      topk_thread_kernel<T>
          <<<plan.grid, kBlockSize, 0, ctx.stream>>>(in, values, indices, plan.params);
    } else if (plan.shared) {
      topk_block_kernel<T, true>
          <<<plan.grid, plan.threads, 0, ctx.stream>>>(in, values, indices, nullptr, plan.params);
    } else {
      topk_block_kernel<T, false>
          <<<plan.grid, plan.threads, 0, ctx.stream>>>(in, values, indices, workspace, plan.params);
    }
  });
  check_launch(ctx);
}

}  // namespace

void register_index_kernels(CudaKernelRegistry& registry) {
  // The kernels dispatch over float32, float16, bfloat16, int32 and int64 (dispatch_numeric): no
  // float64 (the CPU's).
  const backends::KernelSupport data{
      .inputs = {
          {{0},
           {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt32, DType::kInt64}}}};
  registry.add("CumSum", CudaKernel{nullptr, launch_cumsum}, data);
  registry.add("ArgMax", CudaKernel{nullptr, launch_arg_reduce<true>}, data);
  registry.add("ArgMin", CudaKernel{nullptr, launch_arg_reduce<false>}, data);
  registry.add("TopK", CudaKernel{prepare_topk, launch_topk}, data);
}

}  // namespace kiln::cuda
