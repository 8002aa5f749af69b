// Reduce* on CUDA. After dropping unit dims and merging neighbouring axes, a reduction is one of:
// contiguous rows ([rows, length]: a warp or a block per row, 16-byte loads), a middle axis
// ([outer, length, inner]: threads across inner for coalescing, the axis split over threadIdx.y)
// or anything else (one thread per output walking the reduced axes). Long reductions with few
// outputs are split across blocks through the workspace and finished by a second small kernel.
// Floating data accumulate in float32, integer data in int64 (as the CPU reference does).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/nn_block_reduce.cuh"
#include "backends/cuda/nn_row_reduce.cuh"
#include "ops/nn_reduce_axes.hpp"

namespace kiln::cuda {
namespace nn {
namespace {

template <typename T>
using AccOf = std::conditional_t<std::is_integral_v<T>, int64_t, float>;

template <typename A, typename T>
__device__ __forceinline__ A to_acc(T value) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<A>(value);
  } else {
    return to_float(value);
  }
}

template <typename T, typename A>
__device__ __forceinline__ T from_acc(A value) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(value);
  } else {
    return from_float<T>(value);
  }
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

template <typename A>
__device__ __forceinline__ bool is_nan(A value) {
  if constexpr (std::is_integral_v<A>) {
    return false;
  } else {
    return isnan(value);
  }
}

// Running maximum and sum of exp(x - maximum): LogSumExp in one pass.
struct LseState {
  float max;
  float sum;
};

__device__ __forceinline__ LseState shuffle_xor(LseState state, int mask) {
  return LseState{nn::shuffle_xor(state.max, mask), nn::shuffle_xor(state.sum, mask)};
}

// init / add one element / combine two partial states / finalize over `count` elements. Max and
// Min propagate NaN; the empty reduction gives the CPU's initial values.
template <ReduceOp kOp, typename A>
struct Reducer {
  using State = A;

  static __device__ __forceinline__ A init() {
    if constexpr (kOp == ReduceOp::kProd) {
      return A{1};
    } else if constexpr (kOp == ReduceOp::kMax) {
      if constexpr (std::is_integral_v<A>) {
        return std::numeric_limits<A>::lowest();
      } else {
        return -INFINITY;
      }
    } else if constexpr (kOp == ReduceOp::kMin) {
      if constexpr (std::is_integral_v<A>) {
        return std::numeric_limits<A>::max();
      } else {
        return INFINITY;
      }
    } else {
      return A{0};
    }
  }

  static __device__ __forceinline__ void add(A& state, A value) {
    if constexpr (kOp == ReduceOp::kProd) {
      state *= value;
    } else if constexpr (kOp == ReduceOp::kMax) {
      if (value > state || is_nan(value)) state = value;
    } else if constexpr (kOp == ReduceOp::kMin) {
      if (value < state || is_nan(value)) state = value;
    } else if constexpr (kOp == ReduceOp::kL1) {
      state += value < A{0} ? -value : value;
    } else if constexpr (kOp == ReduceOp::kL2 || kOp == ReduceOp::kSumSquare) {
      state += value * value;
    } else {
      state += value;
    }
  }

  static __device__ __forceinline__ A combine(A a, A b) {
    if constexpr (kOp == ReduceOp::kMax || kOp == ReduceOp::kMin) {
      add(a, b);
      return a;
    } else if constexpr (kOp == ReduceOp::kProd) {
      return a * b;
    } else {
      return a + b;
    }
  }

  static __device__ __forceinline__ A finalize(A state, int64_t count) {
    if constexpr (kOp == ReduceOp::kMean) {
      return state / static_cast<A>(count);  // 0/0 = NaN for an empty reduction, as on the CPU
    } else if constexpr (kOp == ReduceOp::kL2) {
      return sqrtf(state);
    } else if constexpr (kOp == ReduceOp::kLogSum) {
      return logf(state);
    } else {
      return state;
    }
  }
};

template <>
struct Reducer<ReduceOp::kLogSumExp, float> {
  using State = LseState;

  static __device__ __forceinline__ LseState init() { return LseState{-INFINITY, 0.0f}; }

  static __device__ __forceinline__ void add(LseState& state, float value) {
    if (isnan(value)) {
      state.max = value;
      state.sum = value;
    } else if (value > state.max) {
      state.sum = state.sum * expf(state.max - value) + 1.0f;
      state.max = value;
    } else if (state.max != -INFINITY) {
      state.sum += expf(value - state.max);
    }
  }

  static __device__ __forceinline__ LseState combine(LseState a, LseState b) {
    if (isnan(a.max)) return a;
    if (isnan(b.max)) return b;
    const float max = fmaxf(a.max, b.max);
    if (max == -INFINITY) return LseState{max, 0.0f};
    const float from_a = a.max == -INFINITY ? 0.0f : a.sum * expf(a.max - max);
    const float from_b = b.max == -INFINITY ? 0.0f : b.sum * expf(b.max - max);
    return LseState{max, from_a + from_b};
  }

  // An infinite maximum (all -inf, or a +inf present) is the result itself, as on the CPU.
  static __device__ __forceinline__ float finalize(LseState state, int64_t) {
    return isinf(state.max) ? state.max : state.max + logf(state.sum);
  }
};

template <typename T, ReduceOp kOp>
using StateOf = typename Reducer<kOp, AccOf<T>>::State;

// ---- kernels ------------------------------------------------------------------------------------

struct RowParams {
  int64_t rows = 0;
  int64_t length = 0;
  int64_t segments = 1;        // per row; more than one writes partial states to the workspace
  int64_t segment_length = 0;  // a multiple of 8 when segments > 1
  bool vectorized = false;     // rows start 16-byte aligned and length is a multiple of the width
  bool block_mode = false;     // a block per row segment, else a warp
};

template <typename T, ReduceOp kOp>
__global__ void reduce_rows_kernel(const T* __restrict__ in, T* __restrict__ out,
                                   StateOf<T, kOp>* __restrict__ partial, RowParams p) {
  using R = Reducer<kOp, AccOf<T>>;
  using State = StateOf<T, kOp>;
  using A = AccOf<T>;
  constexpr int kVec = kVecWidth<T>;
  __shared__ State scratch[kWarpSize];
  int64_t group;
  int64_t groups;
  int rank;
  int size;
  if (p.block_mode) {
    group = blockIdx.x;
    groups = gridDim.x;
    rank = threadIdx.x;
    size = blockDim.x;
  } else {
    const int warps = blockDim.x / kWarpSize;
    group = int64_t{blockIdx.x} * warps + threadIdx.x / kWarpSize;
    groups = int64_t{gridDim.x} * warps;
    rank = threadIdx.x % kWarpSize;
    size = kWarpSize;
  }
  const auto combine = [](State a, State b) { return R::combine(a, b); };
  const int64_t items = p.rows * p.segments;
  for (int64_t item = group; item < items; item += groups) {
    const int64_t row = item / p.segments;
    const int64_t segment = item - row * p.segments;
    const int64_t begin = segment * p.segment_length;
    const int64_t end = min64(p.length, begin + p.segment_length);
    const T* x = in + row * p.length;
    State state = R::init();
    if (p.vectorized) {
      for (int64_t i = begin + int64_t{rank} * kVec; i < end; i += int64_t{size} * kVec) {
        const Pack<T, kVec> pack = load_pack<T, kVec>(x + i);
#pragma unroll
        for (int j = 0; j < kVec; ++j) R::add(state, to_acc<A>(pack.v[j]));
      }
    } else {
      for (int64_t i = begin + rank; i < end; i += size) R::add(state, to_acc<A>(x[i]));
    }
    state =
        p.block_mode ? block_all_reduce(state, combine, scratch) : warp_all_reduce(state, combine);
    if (rank == 0) {
      if (p.segments == 1) {
        out[row] = from_acc<T>(R::finalize(state, p.length));
      } else {
        partial[item] = state;
      }
    }
  }
}

struct MiddleParams {
  int64_t outer = 0;
  int64_t length = 0;
  int64_t inner = 0;
  int64_t tiles = 0;  // ceil(inner / blockDim.x)
  int64_t segments = 1;
  int64_t segment_length = 0;
};

// Block (tile, rows): threadIdx.x walks `inner` (coalesced), threadIdx.y strides the reduced axis.
template <typename T, ReduceOp kOp>
__global__ void reduce_middle_kernel(const T* __restrict__ in, T* __restrict__ out,
                                     StateOf<T, kOp>* __restrict__ partial, MiddleParams p) {
  using R = Reducer<kOp, AccOf<T>>;
  using State = StateOf<T, kOp>;
  using A = AccOf<T>;
  __shared__ State scratch[kBlockSize];
  const int64_t items = p.outer * p.tiles * p.segments;
  const unsigned slot = threadIdx.y * blockDim.x + threadIdx.x;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t tile_index = item / p.segments;
    const int64_t segment = item - tile_index * p.segments;
    const int64_t o = tile_index / p.tiles;
    const int64_t column = (tile_index - o * p.tiles) * blockDim.x + threadIdx.x;
    const int64_t begin = segment * p.segment_length;
    const int64_t end = min64(p.length, begin + p.segment_length);
    State state = R::init();
    if (column < p.inner) {
      const int64_t step = int64_t{blockDim.y} * p.inner;
      int64_t offset = (o * p.length + begin + threadIdx.y) * p.inner + column;
      for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y, offset += step) {
        R::add(state, to_acc<A>(in[offset]));
      }
    }
    scratch[slot] = state;
    __syncthreads();
    if (threadIdx.y == 0 && column < p.inner) {
      for (unsigned y = 1; y < blockDim.y; ++y) {
        state = R::combine(state, scratch[y * blockDim.x + threadIdx.x]);
      }
      const int64_t output = o * p.inner + column;
      if (p.segments == 1) {
        out[output] = from_acc<T>(R::finalize(state, p.length));
      } else {
        partial[output * p.segments + segment] = state;
      }
    }
    __syncthreads();
  }
}

// Finishes split reductions: partial states are laid out [output][segment].
template <typename T, ReduceOp kOp>
__global__ void reduce_partials_kernel(const StateOf<T, kOp>* __restrict__ partial,
                                       T* __restrict__ out, int64_t outputs, int64_t segments,
                                       int64_t count) {
  using R = Reducer<kOp, AccOf<T>>;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < outputs;
       o += int64_t{gridDim.x} * blockDim.x) {
    StateOf<T, kOp> state = R::init();
    for (int64_t s = 0; s < segments; ++s) state = R::combine(state, partial[o * segments + s]);
    out[o] = from_acc<T>(R::finalize(state, count));
  }
}

struct GeneralParams {
  int kept_rank = 0;
  int reduced_rank = 0;
  int64_t kept_dims[kMaxRank];
  int64_t kept_strides[kMaxRank];
  int64_t reduced_dims[kMaxRank];
  int64_t reduced_strides[kMaxRank];
  int64_t outputs = 0;
  int64_t count = 0;  // elements reduced into each output
};

// One thread per output; the reduced axes are walked with an odometer (no division per element).
template <typename T, ReduceOp kOp>
__global__ void reduce_general_kernel(const T* __restrict__ in, T* __restrict__ out,
                                      GeneralParams p) {
  using R = Reducer<kOp, AccOf<T>>;
  using A = AccOf<T>;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < p.outputs;
       o += int64_t{gridDim.x} * blockDim.x) {
    int64_t rest = o;
    int64_t offset = 0;
    for (int d = p.kept_rank - 1; d >= 0; --d) {
      const int64_t coordinate = rest % p.kept_dims[d];
      rest /= p.kept_dims[d];
      offset += coordinate * p.kept_strides[d];
    }
    int64_t index[kMaxRank] = {};
    StateOf<T, kOp> state = R::init();
    for (int64_t k = 0; k < p.count; ++k) {
      R::add(state, to_acc<A>(in[offset]));
      for (int d = p.reduced_rank - 1; d >= 0; --d) {
        offset += p.reduced_strides[d];
        if (++index[d] < p.reduced_dims[d]) break;
        offset -= p.reduced_strides[d] * p.reduced_dims[d];
        index[d] = 0;
      }
    }
    out[o] = from_acc<T>(R::finalize(state, p.count));
  }
}

// ---- host planning ------------------------------------------------------------------------------

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

struct ReducePlan {
  enum class Kind { kRows, kMiddle, kGeneral };
  Kind kind = Kind::kRows;
  RowParams rows;
  MiddleParams middle;
  GeneralParams general;
  dim3 block{kBlockSize};
  unsigned grid = 1;
  size_t workspace_bytes = 0;
};

// Partial states are at most 8 bytes (int64 or LogSumExp's pair); sizing with 8 keeps prepare and
// launch agreeing without knowing the op.
constexpr size_t kPartialStateBytes = 8;

// Rows shorter than this get a thread each (general kernel) rather than a warp.
constexpr int64_t kShortRow = 16;

void plan_general(ReducePlan& plan, const std::vector<int64_t>& sizes,
                  const std::vector<bool>& reduced, int64_t outputs, int64_t count) {
  plan.kind = ReducePlan::Kind::kGeneral;
  GeneralParams& g = plan.general;
  int64_t stride = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    // Axes are collected innermost first and reversed below.
    if (reduced[i]) {
      g.reduced_dims[g.reduced_rank] = sizes[i];
      g.reduced_strides[g.reduced_rank++] = stride;
    } else {
      g.kept_dims[g.kept_rank] = sizes[i];
      g.kept_strides[g.kept_rank++] = stride;
    }
    stride *= sizes[i];
  }
  std::reverse(g.reduced_dims, g.reduced_dims + g.reduced_rank);
  std::reverse(g.reduced_strides, g.reduced_strides + g.reduced_rank);
  std::reverse(g.kept_dims, g.kept_dims + g.kept_rank);
  std::reverse(g.kept_strides, g.kept_strides + g.kept_rank);
  g.outputs = outputs;
  g.count = count;
  plan.block = dim3(kBlockSize);
  plan.grid = grid_for(outputs);
}

void plan_rows(ReducePlan& plan, int multiprocessors, int64_t rows, int64_t length,
               size_t available) {
  if (length < kShortRow) {
    plan_general(plan, {rows, length}, {false, true}, rows, length);
    return;
  }
  plan.kind = ReducePlan::Kind::kRows;
  RowParams& p = plan.rows;
  p.rows = rows;
  p.length = length;
  p.segments = 1;
  p.segment_length = length;
  const bool many_rows = rows >= int64_t{multiprocessors} * 32;
  p.block_mode = length > 1024 && !(many_rows && length <= 16384);
  if (!p.block_mode) {
    plan.block = dim3(kBlockSize);
    plan.grid = blocks_for(rows, kBlockSize / kWarpSize);
    return;
  }
  plan.block = dim3(length >= 16384 ? 512 : 256);
  if (rows < 2 * int64_t{multiprocessors} && length >= 32768) {
    const int64_t wanted =
        std::min(ceil_div(4 * int64_t{multiprocessors}, rows), ceil_div(length, 8192));
    const int64_t segment_length = ceil_div(ceil_div(length, wanted), 8) * 8;
    const int64_t segments = ceil_div(length, segment_length);
    const size_t bytes = static_cast<size_t>(rows * segments) * kPartialStateBytes;
    if (segments > 1 && bytes <= available) {
      p.segments = segments;
      p.segment_length = segment_length;
      plan.workspace_bytes = bytes;
    }
  }
  plan.grid = blocks_for(rows * p.segments, 1);
}

void plan_middle(ReducePlan& plan, int multiprocessors, int64_t outer, int64_t length,
                 int64_t inner, size_t available) {
  plan.kind = ReducePlan::Kind::kMiddle;
  MiddleParams& p = plan.middle;
  unsigned width = 1;
  while (width < 32 && width < inner) width *= 2;
  plan.block = dim3(width, kBlockSize / width);
  p.outer = outer;
  p.length = length;
  p.inner = inner;
  p.tiles = ceil_div(inner, width);
  p.segments = 1;
  p.segment_length = length;
  const int64_t items = outer * p.tiles;
  if (items < 2 * int64_t{multiprocessors} && length >= 1024) {
    const int64_t wanted =
        std::min(ceil_div(4 * int64_t{multiprocessors}, items), ceil_div(length, 256));
    const int64_t segment_length = ceil_div(length, wanted);
    const int64_t segments = ceil_div(length, segment_length);
    const size_t bytes = static_cast<size_t>(outer * inner * segments) * kPartialStateBytes;
    if (segments > 1 && bytes <= available) {
      p.segments = segments;
      p.segment_length = segment_length;
      plan.workspace_bytes = bytes;
    }
  }
  plan.grid = blocks_for(items * p.segments, 1);
}

// Chooses the layout for reducing `mask`ed axes of `shape` (input numel > 0).
ReducePlan plan_reduce(const LaunchContext& ctx, const Shape& shape, const std::vector<bool>& mask,
                       size_t available) {
  // Unit axes do not matter; neighbouring axes of the same kind merge into one.
  std::vector<int64_t> sizes;
  std::vector<bool> reduced;
  int64_t outputs = 1;
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    (mask[i] ? count : outputs) *= shape[i];
    if (shape[i] == 1) continue;
    if (!sizes.empty() && reduced.back() == mask[i]) {
      sizes.back() *= shape[i];
    } else {
      sizes.push_back(shape[i]);
      reduced.push_back(mask[i]);
    }
  }
  const int multiprocessors = multiprocessor_count(ctx);
  ReducePlan plan;
  size_t reduced_groups = 0;
  size_t reduced_at = 0;
  for (size_t i = 0; i < reduced.size(); ++i) {
    if (reduced[i]) {
      ++reduced_groups;
      reduced_at = i;
    }
  }
  if (reduced_groups == 0) {
    plan_middle(plan, multiprocessors, 1, 1, outputs, available);
  } else if (reduced_groups == 1 && reduced_at + 1 == sizes.size()) {
    plan_rows(plan, multiprocessors, outputs, count, available);
  } else if (reduced_groups == 1 && reduced_at + 2 == sizes.size()) {
    plan_middle(plan, multiprocessors, reduced_at == 1 ? sizes[0] : 1, count, sizes.back(),
                available);
  } else {
    if (sizes.size() - reduced_groups > static_cast<size_t>(kMaxRank) ||
        reduced_groups > static_cast<size_t>(kMaxRank)) {
      ctx.fail(ErrorCode::kUnsupported, "input ", shape_to_string(shape),
               " has too many alternating reduced/kept axes");
    }
    plan_general(plan, sizes, reduced, outputs, count);
  }
  return plan;
}

template <typename T, ReduceOp kOp>
void run_plan(const LaunchContext& ctx, const ReducePlan& plan, const void* in_data,
              void* out_data) {
  using State = StateOf<T, kOp>;
  const T* in = static_cast<const T*>(in_data);
  T* out = static_cast<T*>(out_data);
  State* partial = plan.workspace_bytes > 0 ? static_cast<State*>(ctx.workspace) : nullptr;
  switch (plan.kind) {
    case ReducePlan::Kind::kRows: {
      RowParams p = plan.rows;
      constexpr int kVec = kVecWidth<T>;
      p.vectorized = is_aligned16(in) && p.length % kVec == 0 && p.segment_length % kVec == 0;
      reduce_rows_kernel<T, kOp><<<plan.grid, plan.block, 0, ctx.stream>>>(in, out, partial, p);
      if (p.segments > 1) {
        reduce_partials_kernel<T, kOp><<<grid_for(p.rows), kBlockSize, 0, ctx.stream>>>(
            partial, out, p.rows, p.segments, p.length);
      }
      break;
    }
    case ReducePlan::Kind::kMiddle: {
      const MiddleParams& p = plan.middle;
      reduce_middle_kernel<T, kOp><<<plan.grid, plan.block, 0, ctx.stream>>>(in, out, partial, p);
      if (p.segments > 1) {
        const int64_t outputs = p.outer * p.inner;
        reduce_partials_kernel<T, kOp><<<grid_for(outputs), kBlockSize, 0, ctx.stream>>>(
            partial, out, outputs, p.segments, p.length);
      }
      break;
    }
    case ReducePlan::Kind::kGeneral:
      reduce_general_kernel<T, kOp>
          <<<plan.grid, plan.block, 0, ctx.stream>>>(in, out, plan.general);
      break;
  }
  check_launch(ctx);
}

template <typename T>
void run_with_op(const LaunchContext& ctx, ReduceOp op, const ReducePlan& plan, const void* in,
                 void* out) {
  if constexpr (std::is_integral_v<T>) {
    switch (op) {
      case ReduceOp::kSum:
        return run_plan<T, ReduceOp::kSum>(ctx, plan, in, out);
      case ReduceOp::kMax:
        return run_plan<T, ReduceOp::kMax>(ctx, plan, in, out);
      case ReduceOp::kMin:
        return run_plan<T, ReduceOp::kMin>(ctx, plan, in, out);
      case ReduceOp::kProd:
        return run_plan<T, ReduceOp::kProd>(ctx, plan, in, out);
      default:
        break;
    }
    ctx.fail(ErrorCode::kUnsupported, "integer data are supported by ReduceSum, ReduceProd, ",
             "ReduceMax and ReduceMin only");
  } else {
    switch (op) {
      case ReduceOp::kSum:
        return run_plan<T, ReduceOp::kSum>(ctx, plan, in, out);
      case ReduceOp::kMean:
        return run_plan<T, ReduceOp::kMean>(ctx, plan, in, out);
      case ReduceOp::kMax:
        return run_plan<T, ReduceOp::kMax>(ctx, plan, in, out);
      case ReduceOp::kMin:
        return run_plan<T, ReduceOp::kMin>(ctx, plan, in, out);
      case ReduceOp::kProd:
        return run_plan<T, ReduceOp::kProd>(ctx, plan, in, out);
      case ReduceOp::kL1:
        return run_plan<T, ReduceOp::kL1>(ctx, plan, in, out);
      case ReduceOp::kL2:
        return run_plan<T, ReduceOp::kL2>(ctx, plan, in, out);
      case ReduceOp::kSumSquare:
        return run_plan<T, ReduceOp::kSumSquare>(ctx, plan, in, out);
      case ReduceOp::kLogSum:
        return run_plan<T, ReduceOp::kLogSum>(ctx, plan, in, out);
      case ReduceOp::kLogSumExp:
        return run_plan<T, ReduceOp::kLogSumExp>(ctx, plan, in, out);
    }
  }
}

void run_reduce(const LaunchContext& ctx, ReduceOp op, const ReducePlan& plan, DType dtype,
                const void* in, void* out) {
  dispatch_numeric(ctx, dtype, [&]<typename T>() { run_with_op<T>(ctx, op, plan, in, out); });
}

const std::unordered_map<std::string, ReduceOp>& reduce_ops() {
  static const std::unordered_map<std::string, ReduceOp> ops = {
      {"ReduceSum", ReduceOp::kSum},       {"ReduceMean", ReduceOp::kMean},
      {"ReduceMax", ReduceOp::kMax},       {"ReduceMin", ReduceOp::kMin},
      {"ReduceProd", ReduceOp::kProd},     {"ReduceL1", ReduceOp::kL1},
      {"ReduceL2", ReduceOp::kL2},         {"ReduceSumSquare", ReduceOp::kSumSquare},
      {"ReduceLogSum", ReduceOp::kLogSum}, {"ReduceLogSumExp", ReduceOp::kLogSumExp},
  };
  return ops;
}

// The reduced-axes mask of a Reduce* node, after checking its output against the CPU's rules.
std::vector<bool> node_mask(const LaunchContext& ctx) {
  const ops::nn::NodeLabel label{ctx.node_name, ctx.op};
  const TensorView& x = ctx.inputs[0];
  std::vector<int64_t> axes;
  if (ctx.inputs.size() > 1 && ctx.inputs[1].numel() > 0 && ctx.inputs[1].data != nullptr) {
    const HostTensor* host = ctx.host_inputs.size() > 1 ? ctx.host_inputs[1] : nullptr;
    if (!host) ctx.fail(ErrorCode::kInternal, "the axes input has no host value");
    axes = read_indices(view_of(*host));
  }
  const bool keepdims = ops::nn::read_flag(label, ctx.attrs, "keepdims", true);
  const bool noop = ops::nn::read_flag(label, ctx.attrs, "noop_with_empty_axes", false);
  std::vector<bool> mask = ops::nn::reduce_axis_mask(label, axes, x.shape.size(), noop);
  const Shape expected = ops::nn::reduced_shape(x.shape, mask, keepdims);
  if (ctx.outputs[0].shape != expected) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 has shape ",
             shape_to_string(ctx.outputs[0].shape), ", expected ", shape_to_string(expected));
  }
  if (ctx.outputs[0].dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output dtype ", dtype_name(ctx.outputs[0].dtype),
             " differs from the input's ", dtype_name(x.dtype));
  }
  const bool integer = x.dtype == DType::kInt32 || x.dtype == DType::kInt64;
  if (integer && !ops::nn::reduce_accepts_integers(ctx.op)) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 has unsupported dtype ", dtype_name(x.dtype));
  }
  return mask;
}

// An empty input with outputs (a reduced axis of extent 0) reduces nothing into each output.
ReducePlan plan_node(const LaunchContext& ctx, const std::vector<bool>& mask, size_t available) {
  const TensorView& x = ctx.inputs[0];
  ReducePlan plan;
  if (x.numel() == 0) {
    plan_general(plan, {}, {}, ctx.outputs[0].numel(), 0);
    return plan;
  }
  return plan_reduce(ctx, x.shape, mask, available);
}

std::unique_ptr<LayerState> prepare_reduce(LaunchContext& ctx, size_t* workspace_bytes) {
  const std::vector<bool> mask = node_mask(ctx);
  *workspace_bytes =
      ctx.outputs[0].numel() == 0 ? 0 : plan_node(ctx, mask, ctx.workspace_size).workspace_bytes;
  return nullptr;
}

void launch_reduce(LaunchContext& ctx) {
  const std::vector<bool> mask = node_mask(ctx);
  if (ctx.outputs[0].numel() == 0) return;
  const size_t available = ctx.workspace ? ctx.workspace_size : 0;
  const ReducePlan plan = plan_node(ctx, mask, available);
  run_reduce(ctx, reduce_ops().at(std::string(ctx.op)), plan, ctx.inputs[0].dtype,
             ctx.inputs[0].data, ctx.outputs[0].data);
}

}  // namespace

size_t row_reduce_workspace(const LaunchContext& ctx, DType, int64_t rows, int64_t length) {
  if (rows == 0 || length == 0) return 0;
  ReducePlan plan;
  plan_rows(plan, multiprocessor_count(ctx), rows, length, ctx.workspace_size);
  return plan.workspace_bytes;
}

void launch_row_reduce(const LaunchContext& ctx, ReduceOp op, const TensorView& in,
                       const TensorView& out, int64_t rows, int64_t length) {
  if (rows == 0) return;
  ReducePlan plan;
  if (length == 0) {
    plan_general(plan, {}, {}, rows, 0);
  } else {
    plan_rows(plan, multiprocessor_count(ctx), rows, length,
              ctx.workspace ? ctx.workspace_size : 0);
  }
  run_reduce(ctx, op, plan, in.dtype, in.data, out.data);
}

}  // namespace nn

void register_reduce_kernels(CudaKernelRegistry& registry) {
  for (const auto& [name, op] : nn::reduce_ops()) {
    // dispatch_numeric's dtypes (no float64 or bool); axes, when an input, are int64.
    registry.add(name, CudaKernel{nn::prepare_reduce, nn::launch_reduce}, {.every_tensor = kCudaNumericDTypes});
  }
}

}  // namespace kiln::cuda
