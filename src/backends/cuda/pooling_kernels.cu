// MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool on CUDA (NCHW, 1-3 spatial axes).
// Windowed pools run one thread per output element over geometry normalised to three spatial
// axes (1-D and 2-D get leading axes of extent 1); only the in-bounds taps of each axis are
// visited. The global pools are per-(n, c) row reductions shared with ReduceMean/ReduceMax.
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/nn_block_reduce.cuh"
#include "backends/cuda/nn_row_reduce.cuh"
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

template <bool kMax>
void launch_pool(LaunchContext& ctx) {
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
  const GlobalShape s = global_shape(ctx);
  *workspace_bytes = row_reduce_workspace(ctx, ctx.inputs[0].dtype, s.rows, s.length);
  return nullptr;
}

template <bool kMax>
void launch_global_pool(LaunchContext& ctx) {
  const GlobalShape s = global_shape(ctx);
  launch_row_reduce(ctx, kMax ? ReduceOp::kMax : ReduceOp::kMean, ctx.inputs[0], ctx.outputs[0],
                    s.rows, s.length);
}

}  // namespace
}  // namespace nn

void register_pooling_kernels(CudaKernelRegistry& registry) {
  registry.add("MaxPool", CudaKernel{nullptr, nn::launch_pool<true>});
  registry.add("AveragePool", CudaKernel{nullptr, nn::launch_pool<false>});
  registry.add("GlobalAveragePool",
               CudaKernel{nn::prepare_global_pool, nn::launch_global_pool<false>});
  registry.add("GlobalMaxPool", CudaKernel{nn::prepare_global_pool, nn::launch_global_pool<true>});
}

}  // namespace kiln::cuda
