// BatchNormalization (inference) and LayerNormalization on CUDA, float32 math for every float
// dtype.
// - BatchNormalization: y = x * m[c] + o[c] with m = scale / sqrt(var + eps), o = B - mean * m
//   computed in double per channel as the CPU does; a block handles a chunk of one (n, c) plane
//   with 16-byte accesses. Tiny planes (inner < 32) use a flat elementwise loop instead.
// - LayerNormalization: a warp (rows up to 1024) or a block per normalized row keeps the row in
//   registers for the exact two-pass mean/variance; longer rows re-read memory. Scale/B that are
//   broadcast (not simply the normalized shape) are first expanded into the workspace.
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/nn_block_reduce.cuh"

namespace kiln::cuda {
namespace nn {
namespace {

enum class FloatKind : int { kFloat32, kFloat16, kBFloat16 };

FloatKind float_kind(const LaunchContext& ctx, DType dtype, const char* what) {
  switch (dtype) {
    case DType::kFloat32:
      return FloatKind::kFloat32;
    case DType::kFloat16:
      return FloatKind::kFloat16;
    case DType::kBFloat16:
      return FloatKind::kBFloat16;
    default:
      break;
  }
  ctx.fail(ErrorCode::kUnsupported, what, " has unsupported dtype ", dtype_name(dtype),
           "; supported: float32, float16, bfloat16");
}

__device__ __forceinline__ float load_as_float(const void* data, FloatKind kind, int64_t i) {
  switch (kind) {
    case FloatKind::kFloat16:
      return __half2float(static_cast<const __half*>(data)[i]);
    case FloatKind::kBFloat16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i]);
    default:
      return static_cast<const float*>(data)[i];
  }
}

__device__ __forceinline__ void store_from_float(void* data, FloatKind kind, int64_t i, float v) {
  switch (kind) {
    case FloatKind::kFloat16:
      static_cast<__half*>(data)[i] = __float2half_rn(v);
      break;
    case FloatKind::kBFloat16:
      static_cast<__nv_bfloat16*>(data)[i] = __float2bfloat16_rn(v);
      break;
    default:
      static_cast<float*>(data)[i] = v;
      break;
  }
}

bool is_aligned_to(const void* pointer, size_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

// ---- BatchNormalization -------------------------------------------------------------------------

struct BatchNormParams {
  const void* scale;
  const void* bias;
  const void* mean;
  const void* var;
  FloatKind scale_kind;
  FloatKind bias_kind;
  FloatKind mean_kind;
  FloatKind var_kind;
  double epsilon;
  int64_t channels;
  int64_t planes;        // N * C
  int64_t inner;         // elements per plane
  int64_t chunks;        // per plane
  int64_t chunk_length;  // elements per chunk, a multiple of the vector width
};

struct ChannelAffine {
  float multiplier;
  float offset;
};

__device__ __forceinline__ ChannelAffine channel_affine(const BatchNormParams& p, int64_t c) {
  const double multiplier =
      static_cast<double>(load_as_float(p.scale, p.scale_kind, c)) /
      sqrt(static_cast<double>(load_as_float(p.var, p.var_kind, c)) + p.epsilon);
  const double offset = static_cast<double>(load_as_float(p.bias, p.bias_kind, c)) -
                        static_cast<double>(load_as_float(p.mean, p.mean_kind, c)) * multiplier;
  return ChannelAffine{static_cast<float>(multiplier), static_cast<float>(offset)};
}

template <typename T, int kVec>
__global__ void batch_norm_planes_kernel(const T* __restrict__ in, T* __restrict__ out,
                                         BatchNormParams p) {
  __shared__ ChannelAffine affine;
  const int64_t items = p.planes * p.chunks;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t plane = item / p.chunks;
    const int64_t begin = (item - plane * p.chunks) * p.chunk_length;
    const int64_t end = begin + p.chunk_length < p.inner ? begin + p.chunk_length : p.inner;
    if (threadIdx.x == 0) affine = channel_affine(p, plane % p.channels);
    __syncthreads();
    const ChannelAffine a = affine;
    const T* x = in + plane * p.inner;
    T* y = out + plane * p.inner;
    for (int64_t i = begin + int64_t{threadIdx.x} * kVec; i < end;
         i += int64_t{blockDim.x} * kVec) {
      const Pack<T, kVec> pack = load_pack<T, kVec>(x + i);
      Pack<T, kVec> result;
#pragma unroll
      for (int j = 0; j < kVec; ++j)
        result.v[j] = from_float<T>(to_float(pack.v[j]) * a.multiplier + a.offset);
      store_pack<T, kVec>(y + i, result);
    }
    __syncthreads();  // `affine` is rewritten by the next item
  }
}

template <typename T>
__global__ void batch_norm_flat_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t n,
                                       BatchNormParams p) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const ChannelAffine a = channel_affine(p, (i / p.inner) % p.channels);
    out[i] = from_float<T>(to_float(in[i]) * a.multiplier + a.offset);
  }
}

void launch_batch_norm(LaunchContext& ctx) {
  if (ctx.attrs.get_int_or("training_mode", 0) != 0) {
    ctx.fail(ErrorCode::kUnsupported, "training_mode=1 is not supported");
  }
  if (ctx.outputs.size() != 1) {
    ctx.fail(ErrorCode::kUnsupported, "only output 0 (Y) is supported, got ", ctx.outputs.size(),
             " outputs");
  }
  if (ctx.inputs.size() != 5) {
    ctx.fail(ErrorCode::kInvalidArgument, "expected 5 inputs, got ", ctx.inputs.size());
  }
  const TensorView& x = ctx.inputs[0];
  const TensorView& y = ctx.outputs[0];
  if (x.shape.size() < 2) {
    ctx.fail(ErrorCode::kInvalidArgument, "X must have rank >= 2, got ", shape_to_string(x.shape));
  }
  const int64_t channels = x.shape[1];
  for (size_t i = 1; i < 5; ++i) {
    if (ctx.inputs[i].numel() != channels) {
      ctx.fail(ErrorCode::kInvalidArgument, "input ", i, " must have ", channels,
               " elements, got shape ", shape_to_string(ctx.inputs[i].shape));
    }
  }
  if (y.shape != x.shape || y.dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 is ", dtype_name(y.dtype), " ",
             shape_to_string(y.shape), ", expected ", dtype_name(x.dtype), " ",
             shape_to_string(x.shape));
  }
  BatchNormParams p{};
  p.scale = ctx.inputs[1].data;
  p.bias = ctx.inputs[2].data;
  p.mean = ctx.inputs[3].data;
  p.var = ctx.inputs[4].data;
  p.scale_kind = float_kind(ctx, ctx.inputs[1].dtype, "input 1 (scale)");
  p.bias_kind = float_kind(ctx, ctx.inputs[2].dtype, "input 2 (B)");
  p.mean_kind = float_kind(ctx, ctx.inputs[3].dtype, "input 3 (input_mean)");
  p.var_kind = float_kind(ctx, ctx.inputs[4].dtype, "input 4 (input_var)");
  p.epsilon = ctx.attrs.get_float_or("epsilon", 1e-5f);
  p.channels = channels;
  const int64_t n = x.numel();
  dispatch_float(ctx, x.dtype, [&]<typename T>() {
    if (n == 0) return;
    p.planes = x.shape[0] * channels;
    p.inner = n / p.planes;
    const T* in = x.as<const T>();
    T* out = y.as<T>();
    if (p.inner < 32) {
      batch_norm_flat_kernel<T><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(in, out, n, p);
      check_launch(ctx);
      return;
    }
    constexpr int kVec = kVecWidth<T>;
    const bool vectorized = p.inner % kVec == 0 && is_aligned16(in) && is_aligned16(out);
    const int vec = vectorized ? kVec : 1;
    // Threads sized to the plane so small planes do not idle most of a block; each thread then
    // handles up to four vectors per chunk.
    const int64_t vectors = (p.inner + vec - 1) / vec;
    const int threads = static_cast<int>(std::min<int64_t>(kBlockSize, (vectors + 31) / 32 * 32));
    p.chunk_length = int64_t{threads} * vec * 4;
    p.chunks = (p.inner + p.chunk_length - 1) / p.chunk_length;
    const unsigned grid = blocks_for(p.planes * p.chunks, 1);
    if (vectorized) {
      batch_norm_planes_kernel<T, kVec><<<grid, threads, 0, ctx.stream>>>(in, out, p);
    } else {
      batch_norm_planes_kernel<T, 1><<<grid, threads, 0, ctx.stream>>>(in, out, p);
    }
    check_launch(ctx);
  });
}

// ---- LayerNormalization -------------------------------------------------------------------------

struct LayerNormParams {
  const void* residual = nullptr;  // optional, X's shape: normalize X + residual (builder fusion)
  int64_t rows = 0;
  int64_t length = 0;  // elements per normalized row
  float epsilon = 0;
  void* mean_out = nullptr;     // optional, [rows]
  void* inv_std_out = nullptr;  // optional, [rows]
  FloatKind stats_kind = FloatKind::kFloat32;
};

__device__ __forceinline__ void store_stats(const LayerNormParams& p, int64_t row, float mean,
                                            float inv_std) {
  if (p.mean_out) store_from_float(p.mean_out, p.stats_kind, row, mean);
  if (p.inv_std_out) store_from_float(p.inv_std_out, p.stats_kind, row, inv_std);
}

template <typename P>
__device__ __forceinline__ float param_or(const P* params, int64_t i, float fallback) {
  return params ? to_float(params[i]) : fallback;
}

// Row in registers: chunk c of a thread covers [(c * size + rank) * kVec, + kVec).
template <typename T, typename P, bool kBlock, int kVec, int kElems>
__global__ void layer_norm_cached_kernel(const T* __restrict__ in, T* __restrict__ out,
                                         const P* __restrict__ scale, const P* __restrict__ bias,
                                         LayerNormParams p) {
  constexpr int kChunks = kElems / kVec;
  __shared__ float scratch[kWarpSize];
  const RowGroup<kBlock> group;
  const float inv_length = 1.0f / static_cast<float>(p.length);
  for (int64_t row = group.index; row < p.rows; row += group.count) {
    const T* x = in + row * p.length;
    const T* r = p.residual ? static_cast<const T*>(p.residual) + row * p.length : nullptr;
    T* y = out + row * p.length;
    float values[kElems];
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t i = (int64_t{c} * group.size + group.rank) * kVec;
      if (i < p.length) {
        const Pack<T, kVec> pack = load_pack<T, kVec>(x + i);
#pragma unroll
        for (int j = 0; j < kVec; ++j) values[c * kVec + j] = to_float(pack.v[j]);
        if (r != nullptr) {
          const Pack<T, kVec> residual = load_pack<T, kVec>(r + i);
#pragma unroll
          for (int j = 0; j < kVec; ++j) values[c * kVec + j] += to_float(residual.v[j]);
        }
#pragma unroll
        for (int j = 0; j < kVec; ++j) sum += values[c * kVec + j];
      }
    }
    const float mean = group_all_reduce<kBlock>(sum, SumOp{}, scratch) * inv_length;
    float squares = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t i = (int64_t{c} * group.size + group.rank) * kVec;
      if (i < p.length) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const float d = values[c * kVec + j] - mean;
          squares += d * d;
        }
      }
    }
    const float variance = group_all_reduce<kBlock>(squares, SumOp{}, scratch) * inv_length;
    const float inv_std = 1.0f / sqrtf(variance + p.epsilon);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t i = (int64_t{c} * group.size + group.rank) * kVec;
      if (i < p.length) {
        const Pack<P, kVec> s = load_pack<P, kVec>(scale + i);
        Pack<P, kVec> b;
        if (bias) b = load_pack<P, kVec>(bias + i);
        Pack<T, kVec> result;
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const float normalized = (values[c * kVec + j] - mean) * inv_std * to_float(s.v[j]);
          result.v[j] = from_float<T>(bias ? normalized + to_float(b.v[j]) : normalized);
        }
        store_pack<T, kVec>(y + i, result);
      }
    }
    if (group.rank == 0) store_stats(p, row, mean, inv_std);
  }
}

// Rows too long for registers: three passes over memory (mean, variance, output), a block each.
template <typename T, typename P>
__global__ void layer_norm_long_kernel(const T* __restrict__ in, T* __restrict__ out,
                                       const P* __restrict__ scale, const P* __restrict__ bias,
                                       LayerNormParams p) {
  __shared__ float scratch[kWarpSize];
  const float inv_length = 1.0f / static_cast<float>(p.length);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const T* x = in + row * p.length;
    const T* r = p.residual ? static_cast<const T*>(p.residual) + row * p.length : nullptr;
    const auto value = [&](int64_t i) { return r ? to_float(x[i]) + to_float(r[i]) : to_float(x[i]); };
    T* y = out + row * p.length;
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < p.length; i += blockDim.x) sum += value(i);
    const float mean = block_all_reduce(sum, SumOp{}, scratch) * inv_length;
    float squares = 0.0f;
    for (int64_t i = threadIdx.x; i < p.length; i += blockDim.x) {
      const float d = value(i) - mean;
      squares += d * d;
    }
    const float variance = block_all_reduce(squares, SumOp{}, scratch) * inv_length;
    const float inv_std = 1.0f / sqrtf(variance + p.epsilon);
    for (int64_t i = threadIdx.x; i < p.length; i += blockDim.x) {
      const float normalized = (value(i) - mean) * inv_std * to_float(scale[i]);
      y[i] = from_float<T>(bias ? normalized + to_float(bias[i]) : normalized);
    }
    if (threadIdx.x == 0) store_stats(p, row, mean, inv_std);
  }
}

__global__ void empty_rows_stats_kernel(LayerNormParams p, float inv_std) {
  for (int64_t row = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; row < p.rows;
       row += int64_t{gridDim.x} * blockDim.x) {
    store_stats(p, row, 0.0f, inv_std);
  }
}

// Scale/B broadcast (trailing-aligned) to the normalized shape, written out as float32.
struct ExpandParams {
  int rank = 0;
  int64_t dims[kMaxRank];
  int64_t strides[kMaxRank];  // per normalized axis into the parameter, 0 where broadcast
  int64_t length = 0;
};

__global__ void expand_params_kernel(const void* __restrict__ param, FloatKind kind,
                                     float* __restrict__ out, ExpandParams p) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < p.length;
       i += int64_t{gridDim.x} * blockDim.x) {
    int64_t rest = i;
    int64_t offset = 0;
    for (int d = p.rank - 1; d >= 0; --d) {
      offset += (rest % p.dims[d]) * p.strides[d];
      rest /= p.dims[d];
    }
    out[i] = load_as_float(param, kind, offset);
  }
}

struct LayerNormSetup {
  int64_t axis = 0;
  int64_t rows = 0;
  int64_t length = 0;
  Shape normalized;
  bool expand = false;  // Scale or B must be expanded into the workspace
  size_t workspace_bytes = 0;
};

// Fails unless `param` broadcasts (trailing-aligned) to `normalized`; true when it must be
// expanded (its element count differs, so it is not laid out like the normalized shape).
bool needs_expansion(const LaunchContext& ctx, const TensorView& param, const Shape& normalized) {
  bool ok = param.shape.size() <= normalized.size();
  const size_t lead = normalized.size() - std::min(normalized.size(), param.shape.size());
  for (size_t i = 0; ok && i < param.shape.size(); ++i) {
    ok = param.shape[i] == 1 || param.shape[i] == normalized[lead + i];
  }
  if (!ok) {
    ctx.fail(ErrorCode::kInvalidArgument, "shape ", shape_to_string(param.shape),
             " does not broadcast to the normalized shape ", shape_to_string(normalized));
  }
  return param.numel() != shape_numel(normalized);
}

size_t round_up_256(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

LayerNormSetup layer_norm_setup(const LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const auto rank = static_cast<int64_t>(x.shape.size());
  int64_t axis = ctx.attrs.get_int_or("axis", -1);
  if (rank == 0 || axis < -rank || axis >= rank) {
    ctx.fail(ErrorCode::kInvalidArgument, "axis ", axis, " is out of range for X ",
             shape_to_string(x.shape));
  }
  if (axis < 0) axis += rank;
  LayerNormSetup s;
  s.axis = axis;
  s.normalized.assign(x.shape.begin() + axis, x.shape.end());
  s.length = shape_numel(s.normalized);
  s.rows = shape_numel(Shape(x.shape.begin(), x.shape.begin() + axis));
  s.expand = needs_expansion(ctx, ctx.inputs[1], s.normalized);
  if (ctx.has_input(2) && needs_expansion(ctx, ctx.inputs[2], s.normalized)) s.expand = true;
  if (s.expand) {
    s.workspace_bytes = 2 * round_up_256(static_cast<size_t>(s.length) * sizeof(float));
  }
  if (ctx.outputs[0].shape != x.shape || ctx.outputs[0].dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 is ", dtype_name(ctx.outputs[0].dtype), " ",
             shape_to_string(ctx.outputs[0].shape), ", expected ", dtype_name(x.dtype), " ",
             shape_to_string(x.shape));
  }
  Shape stats = x.shape;
  for (auto i = static_cast<size_t>(axis); i < stats.size(); ++i) stats[i] = 1;
  for (size_t i = 1; i < ctx.outputs.size(); ++i) {
    if (ctx.outputs[i].data && ctx.outputs[i].shape != stats) {
      ctx.fail(ErrorCode::kInvalidArgument, "output ", i, " has shape ",
               shape_to_string(ctx.outputs[i].shape), ", expected ", shape_to_string(stats));
    }
  }
  return s;
}

std::unique_ptr<LayerState> prepare_layer_norm(LaunchContext& ctx, size_t* workspace_bytes) {
  *workspace_bytes = layer_norm_setup(ctx).workspace_bytes;
  return nullptr;
}

template <typename T, typename P, int kVec>
void launch_layer_norm_rows(const LaunchContext& ctx, const T* in, T* out, const P* scale,
                            const P* bias, const LayerNormParams& p) {
  const unsigned warp_grid = blocks_for(p.rows, kBlockSize / kWarpSize);
  const unsigned block_grid = blocks_for(p.rows, 1);
  cudaStream_t stream = ctx.stream;
  if (p.length <= int64_t{kWarpSize} * 8) {
    layer_norm_cached_kernel<T, P, false, kVec, 8>
        <<<warp_grid, kBlockSize, 0, stream>>>(in, out, scale, bias, p);
  } else if (p.length <= int64_t{kWarpSize} * 32) {
    layer_norm_cached_kernel<T, P, false, kVec, 32>
        <<<warp_grid, kBlockSize, 0, stream>>>(in, out, scale, bias, p);
  } else if (p.length <= int64_t{kBlockSize} * 16) {
    layer_norm_cached_kernel<T, P, true, kVec, 16>
        <<<block_grid, kBlockSize, 0, stream>>>(in, out, scale, bias, p);
  } else if (p.length <= int64_t{kBlockSize} * 32) {
    layer_norm_cached_kernel<T, P, true, kVec, 32>
        <<<block_grid, kBlockSize, 0, stream>>>(in, out, scale, bias, p);
  } else {
    layer_norm_long_kernel<T, P><<<block_grid, 512, 0, stream>>>(in, out, scale, bias, p);
  }
}

template <typename T, typename P>
void launch_layer_norm_typed(const LaunchContext& ctx, const T* in, T* out, const P* scale,
                             const P* bias, const LayerNormParams& p) {
  constexpr int kVec = kVecWidth<T>;
  const size_t param_bytes = sizeof(P) * kVec;
  const bool vectorized = p.length % kVec == 0 && is_aligned16(in) && is_aligned16(out) &&
                          (p.residual == nullptr || is_aligned16(p.residual)) &&
                          is_aligned_to(scale, param_bytes) &&
                          (bias == nullptr || is_aligned_to(bias, param_bytes));
  if (vectorized) {
    launch_layer_norm_rows<T, P, kVec>(ctx, in, out, scale, bias, p);
  } else {
    launch_layer_norm_rows<T, P, 1>(ctx, in, out, scale, bias, p);
  }
}

void expand_param(const LaunchContext& ctx, const TensorView& param, const Shape& normalized,
                  float* out) {
  ExpandParams e{};
  e.rank = static_cast<int>(normalized.size());
  if (e.rank > kMaxRank)
    ctx.fail(ErrorCode::kUnsupported, "normalized rank ", e.rank, " > ", kMaxRank);
  e.length = shape_numel(normalized);
  const size_t lead = normalized.size() - param.shape.size();
  int64_t stride = 1;
  for (size_t i = normalized.size(); i-- > 0;) {
    e.dims[i] = normalized[i];
    const int64_t dim = i < lead ? 1 : param.shape[i - lead];
    e.strides[i] = dim == 1 ? 0 : stride;
    stride *= dim;
  }
  const FloatKind kind = float_kind(ctx, param.dtype, "Scale/B");
  expand_params_kernel<<<grid_for(e.length), kBlockSize, 0, ctx.stream>>>(param.data, kind, out, e);
  check_launch(ctx);
}

void launch_layer_norm(LaunchContext& ctx) {
  const LayerNormSetup s = layer_norm_setup(ctx);
  const TensorView& x = ctx.inputs[0];
  LayerNormParams p;
  p.rows = s.rows;
  p.length = s.length;
  p.epsilon = ctx.attrs.get_float_or("epsilon", 1e-5f);
  if (ctx.has_input(3)) {
    if (ctx.inputs[3].shape != x.shape || ctx.inputs[3].dtype != x.dtype) {
      ctx.fail(ErrorCode::kInvalidArgument, "residual ", dtype_name(ctx.inputs[3].dtype), " ",
               shape_to_string(ctx.inputs[3].shape), " does not match X");
    }
    p.residual = ctx.inputs[3].data;
  }
  if (ctx.outputs.size() > 1 && ctx.outputs[1].data) p.mean_out = ctx.outputs[1].data;
  if (ctx.outputs.size() > 2 && ctx.outputs[2].data) p.inv_std_out = ctx.outputs[2].data;
  if (p.mean_out || p.inv_std_out) {
    const TensorView& stats = p.mean_out ? ctx.outputs[1] : ctx.outputs[2];
    p.stats_kind = float_kind(ctx, stats.dtype, "Mean/InvStdDev output");
    if (p.mean_out && p.inv_std_out && ctx.outputs[1].dtype != ctx.outputs[2].dtype) {
      ctx.fail(ErrorCode::kUnsupported, "Mean and InvStdDev outputs have different dtypes");
    }
  }
  const bool has_bias = ctx.has_input(2);
  const DType param_dtype = ctx.inputs[1].dtype;
  if (has_bias && ctx.inputs[2].dtype != param_dtype) {
    ctx.fail(ErrorCode::kUnsupported, "Scale is ", dtype_name(param_dtype), " but B is ",
             dtype_name(ctx.inputs[2].dtype));
  }
  if (s.expand && ctx.workspace_size < s.workspace_bytes) {
    ctx.fail(ErrorCode::kInternal, "workspace of ", ctx.workspace_size, " bytes, ",
             s.workspace_bytes, " needed");
  }
  dispatch_float(ctx, x.dtype, [&]<typename T>() {
    if (p.rows == 0) return;
    const T* in = x.as<const T>();
    T* out = ctx.outputs[0].as<T>();
    if (p.length == 0) {
      // Nothing to normalize: empty rows have mean 0 and variance 0, as on the CPU.
      if (p.mean_out || p.inv_std_out) {
        const auto inv_std = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.epsilon)));
        empty_rows_stats_kernel<<<grid_for(p.rows), kBlockSize, 0, ctx.stream>>>(p, inv_std);
      }
      check_launch(ctx);
      return;
    }
    if (s.expand) {
      float* expanded = static_cast<float*>(ctx.workspace);
      float* expanded_bias =
          expanded + round_up_256(static_cast<size_t>(s.length) * sizeof(float)) / sizeof(float);
      expand_param(ctx, ctx.inputs[1], s.normalized, expanded);
      if (has_bias) expand_param(ctx, ctx.inputs[2], s.normalized, expanded_bias);
      launch_layer_norm_typed<T, float>(ctx, in, out, expanded, has_bias ? expanded_bias : nullptr,
                                        p);
    } else if (param_dtype == x.dtype) {
      launch_layer_norm_typed<T, T>(ctx, in, out, ctx.inputs[1].as<const T>(),
                                    has_bias ? ctx.inputs[2].as<const T>() : nullptr, p);
    } else if (param_dtype == DType::kFloat32) {
      launch_layer_norm_typed<T, float>(ctx, in, out, ctx.inputs[1].as<const float>(),
                                        has_bias ? ctx.inputs[2].as<const float>() : nullptr, p);
    } else {
      ctx.fail(ErrorCode::kUnsupported, "Scale/B dtype ", dtype_name(param_dtype), " with X ",
               dtype_name(x.dtype), "; supported: the same dtype as X, or float32");
    }
    check_launch(ctx);
  });
}

}  // namespace
}  // namespace nn

void register_normalization_kernels(CudaKernelRegistry& registry) {
  registry.add("BatchNormalization", CudaKernel{nullptr, nn::launch_batch_norm});
  registry.add("LayerNormalization", CudaKernel{nn::prepare_layer_norm, nn::launch_layer_norm});
}

}  // namespace kiln::cuda
