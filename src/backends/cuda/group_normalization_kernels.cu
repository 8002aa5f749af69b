// InstanceNormalization, GroupNormalization: CUDA kernels, float32 statistics for every float
// dtype (what stash_type=1 asks for; other stash types get the same float32 math).
//
// Each (n, group) row of X is contiguous (InstanceNormalization: one channel per group). A row is
// cut into chunks of one block each (256 threads x 32 elements at most); a thread keeps its part of
// the chunk in registers, moved with 16-byte accesses when the channel size and addresses allow.
// - A row that fits one chunk is normalised by one kernel: the block's two-pass mean and variance
//   over the registers, then (x - mean) * inv_std * scale[c] + bias[c]: one read, one write.
// - Longer rows run three kernels: each chunk's count/mean/M2 (two passes over registers) into the
//   workspace; one warp per row merges them (Chan et al.'s parallel formula, numerically sound for
//   any length) into mean and inv_std; then each chunk is re-read and normalised.
// Launch neither synchronises nor allocates (the partials live in the workspace prepare asks for),
// so it can be captured into a CUDA graph.
#include <algorithm>
#include <cstdint>
#include <memory>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/nn_block_reduce.cuh"
#include "ops/group_norm_geometry.hpp"

namespace kiln::cuda {
namespace {

using nn::block_all_reduce;
using nn::kWarpSize;
using nn::SumOp;

// Elements each thread holds in registers; a chunk is blockDim.x * kElemsPerThread elements.
constexpr int kElemsPerThread = 32;
constexpr int kMaxThreads = 256;

enum class ParamKind : int { kFloat32, kFloat16, kBFloat16 };

__device__ __forceinline__ float load_param(const void* data, ParamKind kind, int64_t i) {
  switch (kind) {
    case ParamKind::kFloat16:
      return __half2float(static_cast<const __half*>(data)[i]);
    case ParamKind::kBFloat16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
    default:
      return static_cast<const float*>(data)[i];
  }
}

struct GroupNormParams {
  const void* scale = nullptr;
  const void* bias = nullptr;
  ParamKind scale_kind = ParamKind::kFloat32;
  ParamKind bias_kind = ParamKind::kFloat32;
  bool per_group_affine = false;
  bool index_32bit = false;  // row offsets fit uint32 (cheaper channel division)
  float epsilon = 0;
  int64_t rows = 0;
  int64_t groups = 0;
  int64_t length = 0;   // elements per row
  int64_t spatial = 0;  // elements per channel
  int64_t channels_per_group = 0;
  int64_t chunk_length = 0;     // elements per chunk
  int64_t chunks = 0;           // per row
  float2* partials = nullptr;   // [rows * chunks]: (mean, M2) of each chunk
  float2* row_stats = nullptr;  // [rows]: (mean, inv_std)
};

// Position of pack k of this thread inside the chunk starting at `begin`.
template <int kVec>
__device__ __forceinline__ int64_t pack_offset(int64_t begin, int k) {
  return begin + (int64_t{k} * blockDim.x + threadIdx.x) * kVec;
}

// Loads this thread's part of row elements [begin, end) into `values`; returns their sum.
template <typename T, int kVec>
__device__ __forceinline__ float load_chunk(const T* __restrict__ row, int64_t begin, int64_t end,
                                            float (&values)[kElemsPerThread]) {
  constexpr int kPacks = kElemsPerThread / kVec;
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int64_t i = pack_offset<kVec>(begin, k);
    if (i < end) {
      const nn::Pack<T, kVec> pack = nn::load_pack<T, kVec>(row + i);
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        values[k * kVec + j] = to_float(pack.v[j]);
        sum += values[k * kVec + j];
      }
    }
  }
  return sum;
}

// The chunk's mean and M2 (sum of squared deviations), exact two-pass over the registers.
template <int kVec>
__device__ __forceinline__ float2 chunk_moments(const float (&values)[kElemsPerThread], float sum,
                                                int64_t begin, int64_t end, float* scratch) {
  constexpr int kPacks = kElemsPerThread / kVec;
  const float mean = block_all_reduce(sum, SumOp{}, scratch) / static_cast<float>(end - begin);
  float squares = 0.0f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    if (pack_offset<kVec>(begin, k) < end) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const float d = values[k * kVec + j] - mean;
        squares += d * d;
      }
    }
  }
  return make_float2(mean, block_all_reduce(squares, SumOp{}, scratch));
}

// Writes (v - mean) * inv_std * scale[param] + bias[param] for this thread's packs. A pack lies in
// one channel (kVec > 1 only when the channel size is a multiple of kVec).
template <typename T, int kVec>
__device__ __forceinline__ void normalize_chunk(const GroupNormParams& p, int64_t row,
                                                const float (&values)[kElemsPerThread],
                                                int64_t begin, int64_t end, float mean,
                                                float inv_std, T* __restrict__ out_row) {
  constexpr int kPacks = kElemsPerThread / kVec;
  const int64_t group = row % p.groups;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int64_t i = pack_offset<kVec>(begin, k);
    if (i < end) {
      int64_t param = group;
      if (!p.per_group_affine) {
        const int64_t channel =
            p.index_32bit
                ? static_cast<int64_t>(static_cast<uint32_t>(i) / static_cast<uint32_t>(p.spatial))
                : i / p.spatial;
        param = group * p.channels_per_group + channel;
      }
      const float multiplier = inv_std * load_param(p.scale, p.scale_kind, param);
      const float offset = load_param(p.bias, p.bias_kind, param);
      nn::Pack<T, kVec> result;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        result.v[j] = from_float<T>((values[k * kVec + j] - mean) * multiplier + offset);
      }
      nn::store_pack<T, kVec>(out_row + i, result);
    }
  }
}

__device__ __forceinline__ float inverse_std(float m2, int64_t length, float epsilon) {
  return 1.0f / sqrtf(m2 / static_cast<float>(length) + epsilon);
}

// Rows of one chunk: statistics and normalisation from registers.
template <typename T, int kVec>
__global__ void group_norm_fused_kernel(const T* __restrict__ in, T* __restrict__ out,
                                        GroupNormParams p) {
  __shared__ float scratch[kWarpSize];
  float values[kElemsPerThread];
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const T* x = in + row * p.length;
    const float sum = load_chunk<T, kVec>(x, 0, p.length, values);
    const float2 moments = chunk_moments<kVec>(values, sum, 0, p.length, scratch);
    normalize_chunk<T, kVec>(p, row, values, 0, p.length, moments.x,
                             inverse_std(moments.y, p.length, p.epsilon), out + row * p.length);
  }
}

__device__ __forceinline__ int64_t chunk_end(const GroupNormParams& p, int64_t begin) {
  return begin + p.chunk_length < p.length ? begin + p.chunk_length : p.length;
}

// Long rows, step 1: each chunk's (mean, M2).
template <typename T, int kVec>
__global__ void group_norm_partials_kernel(const T* __restrict__ in, GroupNormParams p) {
  __shared__ float scratch[kWarpSize];
  float values[kElemsPerThread];
  const int64_t items = p.rows * p.chunks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t row = item / p.chunks;
    const int64_t begin = (item - row * p.chunks) * p.chunk_length;
    const int64_t end = chunk_end(p, begin);
    const float sum = load_chunk<T, kVec>(in + row * p.length, begin, end, values);
    const float2 moments = chunk_moments<kVec>(values, sum, begin, end, scratch);
    if (threadIdx.x == 0) p.partials[item] = moments;
  }
}

struct Moments {
  float count;
  float mean;
  float m2;
};

// Chan, Golub and LeVeque's pairwise update: the moments of the union of two disjoint sets.
__device__ __forceinline__ Moments merge_moments(const Moments& a, const Moments& b) {
  const float count = a.count + b.count;
  if (count == 0.0f) return a;
  const float delta = b.mean - a.mean;
  const float weight_b = b.count / count;
  return Moments{count, a.mean + delta * weight_b,
                 a.m2 + b.m2 + delta * delta * a.count * weight_b};
}

// Long rows, step 2: one warp per row merges the chunks' moments into (mean, inv_std).
__global__ void group_norm_merge_kernel(GroupNormParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = blockDim.x / kWarpSize;
  for (int64_t row = blockIdx.x * warps + threadIdx.x / kWarpSize; row < p.rows;
       row += int64_t{gridDim.x} * warps) {
    Moments total{0.0f, 0.0f, 0.0f};
    for (int64_t chunk = lane; chunk < p.chunks; chunk += kWarpSize) {
      const float2 partial = p.partials[row * p.chunks + chunk];
      const int64_t begin = chunk * p.chunk_length;
      const auto count = static_cast<float>(chunk_end(p, begin) - begin);
      total = merge_moments(total, Moments{count, partial.x, partial.y});
    }
#pragma unroll
    for (int mask = kWarpSize / 2; mask > 0; mask >>= 1) {
      const Moments other{__shfl_xor_sync(0xffffffffu, total.count, mask),
                          __shfl_xor_sync(0xffffffffu, total.mean, mask),
                          __shfl_xor_sync(0xffffffffu, total.m2, mask)};
      total = merge_moments(total, other);
    }
    if (lane == 0) {
      p.row_stats[row] = make_float2(total.mean, inverse_std(total.m2, p.length, p.epsilon));
    }
  }
}

// Long rows, step 3: each chunk re-read and normalised.
template <typename T, int kVec>
__global__ void group_norm_apply_kernel(const T* __restrict__ in, T* __restrict__ out,
                                        GroupNormParams p) {
  float values[kElemsPerThread];
  const int64_t items = p.rows * p.chunks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t row = item / p.chunks;
    const int64_t begin = (item - row * p.chunks) * p.chunk_length;
    const int64_t end = chunk_end(p, begin);
    load_chunk<T, kVec>(in + row * p.length, begin, end, values);
    const float2 stats = p.row_stats[row];
    normalize_chunk<T, kVec>(p, row, values, begin, end, stats.x, stats.y, out + row * p.length);
  }
}

ParamKind param_kind(const LaunchContext& ctx, DType dtype, const char* what) {
  switch (dtype) {
    case DType::kFloat32:
      return ParamKind::kFloat32;
    case DType::kFloat16:
      return ParamKind::kFloat16;
    case DType::kBFloat16:
      return ParamKind::kBFloat16;
    default:
      ctx.fail(ErrorCode::kUnsupported, what, " has unsupported dtype ", dtype_name(dtype),
               "; supported: float32, float16, bfloat16");
  }
}

size_t round_up_256(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

// The launch geometry: a function of the shapes and dtype only, so prepare and launch agree.
struct GroupNormPlan {
  GroupNormParams params;
  int threads = 0;
  size_t workspace_bytes = 0;
};

GroupNormPlan plan_group_norm(const LaunchContext& ctx) {
  if (ctx.inputs.size() != 3 || ctx.outputs.size() != 1) {
    ctx.fail(ErrorCode::kInvalidArgument, "expected 3 inputs and 1 output, got ", ctx.inputs.size(),
             " and ", ctx.outputs.size());
  }
  const TensorView& x = ctx.inputs[0];
  const ops::GroupNormGeometry g =
      ops::resolve_group_norm(ops::NodeRef{ctx.node_name, ctx.op}, ctx.attrs, x.shape,
                              ctx.inputs[1].shape, ctx.inputs[2].shape);
  const TensorView& y = ctx.outputs[0];
  if (y.shape != x.shape || y.dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 is ", dtype_name(y.dtype), " ",
             shape_to_string(y.shape), ", expected ", dtype_name(x.dtype), " ",
             shape_to_string(x.shape));
  }
  GroupNormPlan plan;
  GroupNormParams& p = plan.params;
  p.scale_kind = param_kind(ctx, ctx.inputs[1].dtype, "scale (input 1)");
  p.bias_kind = param_kind(ctx, ctx.inputs[2].dtype, "B (input 2)");
  param_kind(ctx, x.dtype, "X (input 0)");
  p.per_group_affine = g.per_group_affine;
  p.epsilon = g.epsilon;
  p.rows = g.rows();
  p.groups = g.groups;
  p.length = g.row_length();
  p.spatial = g.spatial;
  p.channels_per_group = g.channels_per_group();
  p.index_32bit = p.length <= int64_t{0xffffffff};
  if (p.rows == 0 || p.length == 0) return plan;
  // Threads sized to the row so that short rows do not idle most of a block.
  const int64_t vec = 16 / static_cast<int64_t>(dtype_size(x.dtype));
  const int64_t vectors = (p.length + vec - 1) / vec;
  plan.threads = static_cast<int>(std::min<int64_t>(kMaxThreads, (vectors + 31) / 32 * 32));
  p.chunk_length = int64_t{plan.threads} * kElemsPerThread;
  p.chunks = (p.length + p.chunk_length - 1) / p.chunk_length;
  if (p.chunks > 1) {
    const size_t partial_bytes = static_cast<size_t>(p.rows * p.chunks) * sizeof(float2);
    plan.workspace_bytes =
        round_up_256(partial_bytes) + static_cast<size_t>(p.rows) * sizeof(float2);
  }
  return plan;
}

std::unique_ptr<LayerState> prepare_group_norm(LaunchContext& ctx, size_t* workspace_bytes) {
  const GroupNormPlan plan = plan_group_norm(ctx);
  if (plan.workspace_bytes > ctx.workspace_size) {
    ctx.fail(ErrorCode::kUnsupported, "needs ", plan.workspace_bytes,
             " bytes of workspace for its per-chunk statistics, the limit is ", ctx.workspace_size);
  }
  *workspace_bytes = plan.workspace_bytes;
  return nullptr;
}

template <typename T, int kVec>
void launch_group_norm_typed(const LaunchContext& ctx, const T* in, T* out,
                             const GroupNormPlan& plan) {
  const GroupNormParams& p = plan.params;
  if (p.chunks == 1) {
    group_norm_fused_kernel<T, kVec>
        <<<nn::blocks_for(p.rows, 1), plan.threads, 0, ctx.stream>>>(in, out, p);
    return;
  }
  const unsigned chunk_grid = nn::blocks_for(p.rows * p.chunks, 1);
  group_norm_partials_kernel<T, kVec><<<chunk_grid, plan.threads, 0, ctx.stream>>>(in, p);
  group_norm_merge_kernel<<<nn::blocks_for(p.rows, kBlockSize / kWarpSize), kBlockSize, 0,
                            ctx.stream>>>(p);
  group_norm_apply_kernel<T, kVec><<<chunk_grid, plan.threads, 0, ctx.stream>>>(in, out, p);
}

void launch_group_norm(LaunchContext& ctx) {
  GroupNormPlan plan = plan_group_norm(ctx);
  GroupNormParams& p = plan.params;
  if (p.rows == 0 || p.length == 0) return;
  if (plan.workspace_bytes > 0) {
    if (ctx.workspace == nullptr || ctx.workspace_size < plan.workspace_bytes) {
      ctx.fail(ErrorCode::kInternal, "workspace of ", ctx.workspace_size, " bytes, ",
               plan.workspace_bytes, " needed");
    }
    p.partials = static_cast<float2*>(ctx.workspace);
    p.row_stats = reinterpret_cast<float2*>(
        static_cast<uint8_t*>(ctx.workspace) +
        round_up_256(static_cast<size_t>(p.rows * p.chunks) * sizeof(float2)));
  }
  p.scale = ctx.inputs[1].data;
  p.bias = ctx.inputs[2].data;
  const TensorView& x = ctx.inputs[0];
  dispatch_float(ctx, x.dtype, [&]<typename T>() {
    constexpr int kVec = nn::kVecWidth<T>;
    const T* in = x.as<const T>();
    T* out = ctx.outputs[0].as<T>();
    if (p.spatial % kVec == 0 && nn::is_aligned16(in) && nn::is_aligned16(out)) {
      launch_group_norm_typed<T, kVec>(ctx, in, out, plan);
    } else {
      launch_group_norm_typed<T, 1>(ctx, in, out, plan);
    }
    check_launch(ctx);
  });
}

}  // namespace

void register_group_normalization_kernels(CudaKernelRegistry& registry) {
  registry.add("InstanceNormalization", CudaKernel{prepare_group_norm, launch_group_norm});
  registry.add("GroupNormalization", CudaKernel{prepare_group_norm, launch_group_norm});
}

}  // namespace kiln::cuda
