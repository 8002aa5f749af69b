// MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool on CUDA (NCHW, 1-3 spatial axes).
// Windowed pools run one thread per output element over geometry normalised to three spatial
// axes (1-D and 2-D get leading axes of extent 1); only the in-bounds taps of each axis are
// visited. The global pools are per-(n, c) row reductions shared with ReduceMean/ReduceMax.
//
// With kiln_layout = "NHWC" (2-D, set by the builder on fp16/bf16 convolution regions) X and Y are
// [N, H, W, C]: each thread handles a vector of channels (16 bytes where C and the pointers allow)
// of one output position, so neighbouring threads touch neighbouring channels (coalesced); the
// global pools reduce over H * W with blocks of (channel vectors) x (slices of H * W).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/nn_block_reduce.cuh"
#include "backends/cuda/nn_row_reduce.cuh"
#include "ops/nn_layout.hpp"
#include "ops/nn_window.hpp"

namespace kiln::cuda {
namespace nn {
namespace {

struct PoolParams {
  int64_t in[3];
  int64_t out[3];
  int64_t kernel[3];
  int64_t stride[3];
  int64_t dilation[3];
  int64_t pad_begin[3];
  int64_t pad_end[3];
  int64_t total = 0;  // output elements
  bool include_pad = false;
};

__device__ __forceinline__ int64_t ceil_div_positive(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Taps k in [first, last) of a window starting at `start` whose positions start + k * dilation
// fall inside [lo, hi).
struct TapRange {
  int64_t first;
  int64_t last;
  __device__ __forceinline__ int64_t count() const { return last > first ? last - first : 0; }
};

__device__ __forceinline__ TapRange taps_within(int64_t start, int64_t dilation, int64_t kernel,
                                                int64_t lo, int64_t hi) {
  TapRange r;
  r.first = start >= lo ? 0 : ceil_div_positive(lo - start, dilation);
  r.last = start < hi ? ceil_div_positive(hi - start, dilation) : 0;
  if (r.last > kernel) r.last = kernel;
  return r;
}

template <typename T, bool kMax>
__global__ void pool_kernel(const T* __restrict__ in, T* __restrict__ out, PoolParams p) {
  const int64_t in_plane = p.in[0] * p.in[1] * p.in[2];
  for (int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; index < p.total;
       index += int64_t{gridDim.x} * blockDim.x) {
    int64_t rest = index;
    int64_t o[3];
    for (int a = 2; a >= 0; --a) {
      o[a] = rest % p.out[a];
      rest /= p.out[a];
    }
    const T* plane = in + rest * in_plane;
    int64_t start[3];
    TapRange taps[3];
    for (int a = 0; a < 3; ++a) {
      start[a] = o[a] * p.stride[a] - p.pad_begin[a];
      taps[a] = taps_within(start[a], p.dilation[a], p.kernel[a], 0, p.in[a]);
    }
    float best = -INFINITY;
    bool saw_nan = false;
    float sum = 0.0f;
    for (int64_t kd = taps[0].first; kd < taps[0].last; ++kd) {
      const int64_t id = start[0] + kd * p.dilation[0];
      for (int64_t kh = taps[1].first; kh < taps[1].last; ++kh) {
        const int64_t ih = start[1] + kh * p.dilation[1];
        const int64_t row = (id * p.in[1] + ih) * p.in[2] + start[2];
        for (int64_t kw = taps[2].first; kw < taps[2].last; ++kw) {
          const float v = to_float(plane[row + kw * p.dilation[2]]);
          if constexpr (kMax) {
            best = v > best ? v : best;
            saw_nan |= isnan(v);  // NaN propagates, as in numpy and PyTorch
          } else {
            sum += v;
          }
        }
      }
    }
    if constexpr (kMax) {
      out[index] = from_float<T>(saw_nan ? NAN : best);
    } else {
      // With count_include_pad, window points in the explicit padding count, those past it
      // (ceil_mode) do not.
      int64_t divisor = 1;
      for (int a = 0; a < 3; ++a) {
        divisor *= p.include_pad ? taps_within(start[a], p.dilation[a], p.kernel[a],
                                               -p.pad_begin[a], p.in[a] + p.pad_end[a])
                                       .count()
                                 : taps[a].count();
      }
      out[index] = from_float<T>(divisor > 0 ? sum / static_cast<float>(divisor) : NAN);
    }
  }
}

PoolParams resolve_pool(const LaunchContext& ctx) {
  if (ctx.outputs.size() > 1) {
    ctx.fail(ErrorCode::kUnsupported, "the Indices output of MaxPool is not supported");
  }
  const TensorView& x = ctx.inputs[0];
  if (x.shape.size() < 3) {
    ctx.fail(ErrorCode::kInvalidArgument, "input 0 must have rank >= 3, got ",
             shape_to_string(x.shape));
  }
  const size_t spatial = x.shape.size() - 2;
  if (spatial > 3) {
    ctx.fail(ErrorCode::kUnsupported, spatial, " spatial dimensions; at most 3 are supported");
  }
  if (!ctx.attrs.has("kernel_shape")) {
    ctx.fail(ErrorCode::kInvalidArgument, "missing required attribute 'kernel_shape'");
  }
  const std::vector<int64_t>& kernel = ctx.attrs.get_ints("kernel_shape");
  const bool ceil_mode = ctx.attrs.get_int_or("ceil_mode", 0) != 0;
  const ops::nn::WindowGeometry g = ops::nn::resolve_window(
      ops::nn::NodeLabel{ctx.node_name, ctx.op}, ctx.attrs,
      std::vector<int64_t>(x.shape.begin() + 2, x.shape.end()), kernel, ceil_mode);
  Shape expected{x.shape[0], x.shape[1]};
  expected.insert(expected.end(), g.output.begin(), g.output.end());
  const TensorView& y = ctx.outputs[0];
  if (y.shape != expected || y.dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 is ", dtype_name(y.dtype), " ",
             shape_to_string(y.shape), ", expected ", dtype_name(x.dtype), " ",
             shape_to_string(expected));
  }
  PoolParams p{};
  const size_t offset = 3 - spatial;
  for (size_t a = 0; a < 3; ++a) {
    p.in[a] = p.out[a] = p.kernel[a] = p.stride[a] = p.dilation[a] = 1;
    p.pad_begin[a] = p.pad_end[a] = 0;
  }
  for (size_t i = 0; i < spatial; ++i) {
    p.in[offset + i] = x.shape[2 + i];
    p.out[offset + i] = g.output[i];
    p.kernel[offset + i] = g.kernel[i];
    p.stride[offset + i] = g.strides[i];
    p.dilation[offset + i] = g.dilations[i];
    p.pad_begin[offset + i] = g.pad_begin[i];
    p.pad_end[offset + i] = g.pad_end[i];
  }
  p.total = y.numel();
  p.include_pad = ctx.attrs.get_int_or("count_include_pad", 0) != 0;
  return p;
}

// ---- NHWC ----

// kVec elements of T moved as one access (16 bytes for 8 halves or 4 floats).
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

// Max that propagates NaN (as numpy, PyTorch and the CPU reference do): once NaN, stays NaN.
__device__ __forceinline__ float max_with_nan(float best, float v) {
  return (v > best || isnan(v)) ? v : best;
}

struct PoolNhwcParams {
  int64_t in_h, in_w, channels;
  int64_t out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
  int64_t pad_top, pad_left, pad_bottom, pad_right;
  int64_t vectors;  // channels / kVec
  int64_t total;    // N * out_h * out_w * vectors
  bool include_pad;
};

template <typename T, int kVec, bool kMax>
__global__ void pool_nhwc_kernel(const T* __restrict__ in, T* __restrict__ out, PoolNhwcParams p) {
  using V = Pack<T, kVec>;
  for (int64_t index = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; index < p.total;
       index += int64_t{gridDim.x} * blockDim.x) {
    int64_t rest = index;
    const int64_t vec = rest % p.vectors;
    rest /= p.vectors;
    const int64_t ow = rest % p.out_w;
    rest /= p.out_w;
    const int64_t oh = rest % p.out_h;
    const int64_t n = rest / p.out_h;
    const int64_t start_h = oh * p.stride_h - p.pad_top;
    const int64_t start_w = ow * p.stride_w - p.pad_left;
    const TapRange th = taps_within(start_h, p.dilation_h, p.kernel_h, 0, p.in_h);
    const TapRange tw = taps_within(start_w, p.dilation_w, p.kernel_w, 0, p.in_w);
    const T* image = in + n * p.in_h * p.in_w * p.channels + vec * kVec;
    float acc[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc[j] = kMax ? -INFINITY : 0.0f;
    for (int64_t kh = th.first; kh < th.last; ++kh) {
      const int64_t ih = start_h + kh * p.dilation_h;
      for (int64_t kw = tw.first; kw < tw.last; ++kw) {
        const int64_t iw = start_w + kw * p.dilation_w;
        const V v = *reinterpret_cast<const V*>(image + (ih * p.in_w + iw) * p.channels);
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const float f = to_float(v.v[j]);
          acc[j] = kMax ? max_with_nan(acc[j], f) : acc[j] + f;
        }
      }
    }
    V result;
    if constexpr (kMax) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) result.v[j] = from_float<T>(acc[j]);
    } else {
      // With count_include_pad, window points in the explicit padding count, those past it
      // (ceil_mode) do not.
      const int64_t divisor = p.include_pad ? taps_within(start_h, p.dilation_h, p.kernel_h,
                                                          -p.pad_top, p.in_h + p.pad_bottom)
                                                      .count() *
                                                  taps_within(start_w, p.dilation_w, p.kernel_w,
                                                              -p.pad_left, p.in_w + p.pad_right)
                                                      .count()
                                            : th.count() * tw.count();
      const float scale = divisor > 0 ? 1.0f / static_cast<float>(divisor) : NAN;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        result.v[j] = from_float<T>(divisor > 0 ? acc[j] * scale : NAN);
      }
    }
    // Output vector `index` is exactly element index * kVec: [n, oh, ow, vec * kVec].
    *reinterpret_cast<V*>(out + index * kVec) = result;
  }
}

// Elements per thread: 16 bytes when the channels split evenly and both pointers are aligned.
template <typename T>
int channel_vector(int64_t channels, const void* in, const void* out) {
  constexpr int kWide = static_cast<int>(16 / sizeof(T));
  const bool aligned =
      reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  return aligned && channels % kWide == 0 ? kWide : 1;
}

// Rank-4 check for NHWC nodes.
void require_nhwc_rank(const LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  if (x.shape.size() != 4) {
    ctx.fail(ErrorCode::kInvalidArgument, "kiln_layout \"NHWC\" needs a 4-D X, got ",
             shape_to_string(x.shape));
  }
  if (x.dtype != DType::kFloat32 && x.dtype != DType::kFloat16 && x.dtype != DType::kBFloat16) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 has unsupported dtype ", dtype_name(x.dtype),
             "; supported: float32, float16, bfloat16");
  }
}

PoolNhwcParams resolve_pool_nhwc(const LaunchContext& ctx) {
  if (ctx.outputs.size() > 1) {
    ctx.fail(ErrorCode::kUnsupported, "the Indices output of MaxPool is not supported");
  }
  require_nhwc_rank(ctx);
  if (!ctx.attrs.has("kernel_shape")) {
    ctx.fail(ErrorCode::kInvalidArgument, "missing required attribute 'kernel_shape'");
  }
  const Shape& x = ctx.inputs[0].shape;  // [N, H, W, C]
  const std::vector<int64_t>& kernel = ctx.attrs.get_ints("kernel_shape");
  const bool ceil_mode = ctx.attrs.get_int_or("ceil_mode", 0) != 0;
  const ops::nn::WindowGeometry g =
      ops::nn::resolve_window(ops::nn::NodeLabel{ctx.node_name, ctx.op}, ctx.attrs,
                              std::vector<int64_t>{x[1], x[2]}, kernel, ceil_mode);
  const Shape expected{x[0], g.output[0], g.output[1], x[3]};
  const TensorView& y = ctx.outputs[0];
  if (y.shape != expected || y.dtype != ctx.inputs[0].dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 is ", dtype_name(y.dtype), " ",
             shape_to_string(y.shape), ", expected ", dtype_name(ctx.inputs[0].dtype), " ",
             shape_to_string(expected));
  }
  PoolNhwcParams p{};
  p.in_h = x[1];
  p.in_w = x[2];
  p.channels = x[3];
  p.out_h = g.output[0];
  p.out_w = g.output[1];
  p.kernel_h = g.kernel[0];
  p.kernel_w = g.kernel[1];
  p.stride_h = g.strides[0];
  p.stride_w = g.strides[1];
  p.dilation_h = g.dilations[0];
  p.dilation_w = g.dilations[1];
  p.pad_top = g.pad_begin[0];
  p.pad_left = g.pad_begin[1];
  p.pad_bottom = g.pad_end[0];
  p.pad_right = g.pad_end[1];
  p.include_pad = ctx.attrs.get_int_or("count_include_pad", 0) != 0;
  return p;
}

template <bool kMax>
void launch_pool_nhwc(LaunchContext& ctx) {
  PoolNhwcParams p = resolve_pool_nhwc(ctx);
  const TensorView& x = ctx.inputs[0];
  const TensorView& y = ctx.outputs[0];
  dispatch_float(ctx, x.dtype, [&]<typename T>() {
    if (y.numel() == 0) return;
    auto run = [&]<int kVec>() {
      p.vectors = p.channels / kVec;
      p.total = y.numel() / kVec;
      pool_nhwc_kernel<T, kVec, kMax>
          <<<grid_for(p.total), kBlockSize, 0, ctx.stream>>>(x.as<const T>(), y.as<T>(), p);
    };
    constexpr int kWide = static_cast<int>(16 / sizeof(T));
    if (channel_vector<T>(p.channels, x.data, y.data) == kWide) {
      run.template operator()<kWide>();
    } else {
      run.template operator()<1>();
    }
    check_launch(ctx);
  });
}

struct GlobalNhwcParams {
  int64_t batch;
  int64_t spatial;  // H * W
  int64_t vectors;  // C / kVec
};

// Block (bx, by): threadIdx.x picks a channel vector, threadIdx.y a slice of the H * W positions;
// partial results meet in shared memory. blockIdx.y (grid-strided) picks the image.
template <typename T, int kVec, bool kMax>
__global__ void global_pool_nhwc_kernel(const T* __restrict__ in, T* __restrict__ out,
                                        GlobalNhwcParams p) {
  using V = Pack<T, kVec>;
  __shared__ float partial[kBlockSize * kVec];
  const int64_t vec = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int slot = (threadIdx.y * blockDim.x + threadIdx.x) * kVec;
  const int64_t row = p.vectors * kVec;  // elements per position: C
  for (int64_t n = blockIdx.y; n < p.batch; n += gridDim.y) {
    float acc[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc[j] = kMax ? -INFINITY : 0.0f;
    if (vec < p.vectors) {
      const T* image = in + n * p.spatial * row + vec * kVec;
      for (int64_t i = threadIdx.y; i < p.spatial; i += blockDim.y) {
        const V v = *reinterpret_cast<const V*>(image + i * row);
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const float f = to_float(v.v[j]);
          acc[j] = kMax ? max_with_nan(acc[j], f) : acc[j] + f;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) partial[slot + j] = acc[j];
    __syncthreads();
    if (threadIdx.y == 0 && vec < p.vectors) {
      for (unsigned y = 1; y < blockDim.y; ++y) {
        const int other = (y * blockDim.x + threadIdx.x) * kVec;
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          acc[j] = kMax ? max_with_nan(acc[j], partial[other + j]) : acc[j] + partial[other + j];
        }
      }
      V result;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        result.v[j] = from_float<T>(kMax ? acc[j] : acc[j] / static_cast<float>(p.spatial));
      }
      *reinterpret_cast<V*>(out + n * row + vec * kVec) = result;
    }
    __syncthreads();  // `partial` is reused by the next image
  }
}

template <bool kMax>
void launch_global_pool_nhwc(LaunchContext& ctx) {
  require_nhwc_rank(ctx);
  const TensorView& x = ctx.inputs[0];
  const TensorView& y = ctx.outputs[0];
  const Shape expected{x.shape[0], 1, 1, x.shape[3]};
  if (y.shape != expected || y.dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 is ", dtype_name(y.dtype), " ",
             shape_to_string(y.shape), ", expected ", dtype_name(x.dtype), " ",
             shape_to_string(expected));
  }
  dispatch_float(ctx, x.dtype, [&]<typename T>() {
    if (y.numel() == 0) return;
    auto run = [&]<int kVec>() {
      GlobalNhwcParams p{x.shape[0], x.shape[1] * x.shape[2], x.shape[3] / kVec};
      const unsigned bx = static_cast<unsigned>(std::min<int64_t>(p.vectors, 32));
      const dim3 block(bx, kBlockSize / bx);
      const dim3 grid(static_cast<unsigned>((p.vectors + bx - 1) / bx),
                      static_cast<unsigned>(std::min<int64_t>(p.batch, 65535)));
      global_pool_nhwc_kernel<T, kVec, kMax>
          <<<grid, block, 0, ctx.stream>>>(x.as<const T>(), y.as<T>(), p);
    };
    constexpr int kWide = static_cast<int>(16 / sizeof(T));
    if (channel_vector<T>(x.shape[3], x.data, y.data) == kWide) {
      run.template operator()<kWide>();
    } else {
      run.template operator()<1>();
    }
    check_launch(ctx);
  });
}

// ---- NCHW ----

template <bool kMax>
void launch_pool(LaunchContext& ctx) {
  if (ops::nn::is_nhwc_layout(ctx.attrs)) {
    launch_pool_nhwc<kMax>(ctx);
    return;
  }
  const PoolParams p = resolve_pool(ctx);
  const TensorView& x = ctx.inputs[0];
  dispatch_float(ctx, x.dtype, [&]<typename T>() {
    if (p.total == 0) return;
    pool_kernel<T, kMax><<<grid_for(p.total), kBlockSize, 0, ctx.stream>>>(
        x.as<const T>(), ctx.outputs[0].as<T>(), p);
    check_launch(ctx);
  });
}

// Global pools: rows = N * C planes of the spatial size.
struct GlobalShape {
  int64_t rows;
  int64_t length;
};

GlobalShape global_shape(const LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  if (x.shape.size() < 3) {
    ctx.fail(ErrorCode::kInvalidArgument, "X must have rank >= 3, got ", shape_to_string(x.shape));
  }
  if (x.dtype != DType::kFloat32 && x.dtype != DType::kFloat16 && x.dtype != DType::kBFloat16) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 has unsupported dtype ", dtype_name(x.dtype),
             "; supported: float32, float16, bfloat16");
  }
  Shape expected = x.shape;
  for (size_t i = 2; i < expected.size(); ++i) expected[i] = 1;
  const TensorView& y = ctx.outputs[0];
  if (y.shape != expected || y.dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 is ", dtype_name(y.dtype), " ",
             shape_to_string(y.shape), ", expected ", dtype_name(x.dtype), " ",
             shape_to_string(expected));
  }
  const int64_t rows = x.shape[0] * x.shape[1];
  return GlobalShape{rows, shape_numel(Shape(x.shape.begin() + 2, x.shape.end()))};
}

std::unique_ptr<LayerState> prepare_global_pool(LaunchContext& ctx, size_t* workspace_bytes) {
  if (ops::nn::is_nhwc_layout(ctx.attrs)) {
    *workspace_bytes = 0;
    return nullptr;
  }
  const GlobalShape s = global_shape(ctx);
  *workspace_bytes = row_reduce_workspace(ctx, ctx.inputs[0].dtype, s.rows, s.length);
  return nullptr;
}

template <bool kMax>
void launch_global_pool(LaunchContext& ctx) {
  if (ops::nn::is_nhwc_layout(ctx.attrs)) {
    launch_global_pool_nhwc<kMax>(ctx);
    return;
  }
  const GlobalShape s = global_shape(ctx);
  launch_row_reduce(ctx, kMax ? ReduceOp::kMax : ReduceOp::kMean, ctx.inputs[0], ctx.outputs[0],
                    s.rows, s.length);
}

}  // namespace
}  // namespace nn

namespace {
// The MaxPool kernel writes the pooled values only: the Indices output is computed on the cpu.
std::string refuse_max_pool_indices(const format::EngineModel&, const format::Layer& layer) {
  return layer.outputs.size() > 1 ? "its Indices output (output 1) is computed by the cpu backend only" : "";
}
}  // namespace

void register_pooling_kernels(CudaKernelRegistry& registry) {
  // float32/float16/bfloat16 only (no int8/uint8 or float64 MaxPool).
  registry.add("MaxPool", CudaKernel{nullptr, nn::launch_pool<true>},
               {.inputs = {{{0}, backends::kNnFloatDTypes}}, .check = refuse_max_pool_indices});
  registry.add("AveragePool", CudaKernel{nullptr, nn::launch_pool<false>});
  registry.add("GlobalAveragePool",
               CudaKernel{nn::prepare_global_pool, nn::launch_global_pool<false>});
  registry.add("GlobalMaxPool", CudaKernel{nn::prepare_global_pool, nn::launch_global_pool<true>});
}

}  // namespace kiln::cuda
