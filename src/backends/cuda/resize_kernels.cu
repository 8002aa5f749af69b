// Resize on CUDA: nearest and N-linear interpolation over any set of axes, float32/float16/
// bfloat16 (computed in float32). Attributes and the output plan come from the helpers the CPU
// kernel uses (src/ops/nn_resize.hpp); per-axis constants are computed on the host with the same
// float expressions, and the per-position arithmetic uses round-to-nearest intrinsics (no fused
// multiply-add) in the CPU kernel's order, so both backends pick the same taps and weights.
// Cubic mode, tf_crop_and_resize and antialias (the CPU kernel's filter-tap path) are not
// implemented here: check_resize_attributes refuses them when the engine is built or loaded.
#include <cstring>
#include <vector>

#include "backends/cuda/dm_common.cuh"
#include "base/half.hpp"
#include "ops/nn_resize.hpp"

namespace kiln::cuda {
namespace {

using ops::nn::CoordinateTransform;
using ops::nn::NearestRounding;

enum class AxisKind : int { kIdentity, kNearest, kLinear };

struct ResizeAxis {
  AxisKind kind = AxisKind::kIdentity;
  int64_t in = 1;
  int64_t out = 1;
  int64_t in_stride = 0;
  float scale = 1.0f;
  float symmetric_shift = 0.0f;  // half_pixel_symmetric: center * (1 - adjustment)
  float in_last = 0.0f;          // float(in - 1)
  float out_last = 0.0f;         // float(out - 1)
};

struct ResizeParams {
  int rank = 0;
  CoordinateTransform transform = CoordinateTransform::kHalfPixel;
  NearestRounding rounding = NearestRounding::kRoundPreferFloor;
  ResizeAxis axes[kMaxRank];
};

__device__ __forceinline__ float original_coordinate(CoordinateTransform transform, float x,
                                                     const ResizeAxis& a) {
  switch (transform) {
    case CoordinateTransform::kHalfPixel:
      return __fsub_rn(__fdiv_rn(__fadd_rn(x, 0.5f), a.scale), 0.5f);
    case CoordinateTransform::kHalfPixelSymmetric:
      return __fsub_rn(__fadd_rn(a.symmetric_shift, __fdiv_rn(__fadd_rn(x, 0.5f), a.scale)), 0.5f);
    case CoordinateTransform::kPytorchHalfPixel:
      return a.out > 1 ? __fsub_rn(__fdiv_rn(__fadd_rn(x, 0.5f), a.scale), 0.5f) : 0.0f;
    case CoordinateTransform::kAlignCorners:
      return a.out == 1 ? 0.0f : __fdiv_rn(__fmul_rn(x, a.in_last), a.out_last);
    case CoordinateTransform::kAsymmetric:
      return __fdiv_rn(x, a.scale);
  }
  return 0.0f;
}

__device__ __forceinline__ int64_t nearest_index(NearestRounding rounding, float x, int64_t in) {
  float rounded = 0.0f;
  switch (rounding) {
    case NearestRounding::kRoundPreferFloor:
      rounded = (x == __fadd_rn(floorf(x), 0.5f)) ? floorf(x) : roundf(x);
      break;
    case NearestRounding::kRoundPreferCeil:
      rounded = (x == __fadd_rn(floorf(x), 0.5f)) ? ceilf(x) : roundf(x);
      break;
    case NearestRounding::kFloor:
      rounded = floorf(x);
      break;
    case NearestRounding::kCeil:
      rounded = ceilf(x);
      break;
  }
  if (!(rounded >= 0.0f)) return 0;  // also maps NaN to 0
  const auto index = static_cast<int64_t>(rounded);
  return index < in - 1 ? index : in - 1;
}

// One axis' contribution to an output position: a single input offset (identity, nearest) or two
// offsets blended with weight_high.
struct Tap {
  int64_t low = 0;
  int64_t high = 0;
  float weight_high = 0.0f;
};

__device__ __forceinline__ Tap axis_tap(const ResizeParams& p, const ResizeAxis& a, int64_t o) {
  Tap tap;
  if (a.kind == AxisKind::kIdentity) {
    tap.low = o * a.in_stride;
    return tap;
  }
  const float coordinate = original_coordinate(p.transform, static_cast<float>(o), a);
  if (a.kind == AxisKind::kNearest) {
    tap.low = nearest_index(p.rounding, coordinate, a.in) * a.in_stride;
    return tap;
  }
  float clamped = coordinate;
  if (isnan(coordinate)) {
    clamped = 0.0f;
  } else if (coordinate < 0.0f) {
    clamped = 0.0f;
  } else if (a.in_last < coordinate) {
    clamped = a.in_last;
  }
  const auto low = static_cast<int64_t>(clamped);
  const int64_t high = low + 1 < a.in - 1 ? low + 1 : a.in - 1;
  tap.low = low * a.in_stride;
  tap.high = high * a.in_stride;
  tap.weight_high = __fsub_rn(clamped, static_cast<float>(low));
  return tap;
}

// One thread per output element. The blend follows the CPU kernel: the outer linear axes expand
// into corners (first axis most significant, low before high, a high corner only when its weight
// is non-zero), each corner's weight is the running product, and the sum starts at 0.
template <typename T, typename Index>
__global__ void resize_kernel(const T* __restrict__ in, T* __restrict__ out, Index n,
                              ResizeParams p, dm::DimDividers<Index> out_dims) {
  KILN_DM_GRID_STRIDE(i, Index, n) {
    Tap taps[kMaxRank];
    Index rest = i;
    for (int d = p.rank - 1; d >= 0; --d) {
      const Index quotient = out_dims.dims[d].div(rest);
      const Index coord = rest - quotient * static_cast<Index>(out_dims.dims[d].divisor);
      rest = quotient;
      taps[d] = axis_tap(p, p.axes[d], static_cast<int64_t>(coord));
    }
    const int last = p.rank - 1;
    int64_t base = 0;
    int blended[kMaxRank];
    int blended_count = 0;
    for (int d = 0; d < last; ++d) {
      if (p.axes[d].kind == AxisKind::kLinear) {
        blended[blended_count++] = d;
      } else {
        base += taps[d].low;
      }
    }
    const Tap& inner = taps[last];
    const bool inner_blend = p.axes[last].kind == AxisKind::kLinear;
    float sum = 0.0f;
    for (int corner = 0; corner < (1 << blended_count); ++corner) {
      float weight = 1.0f;
      int64_t offset = base;
      bool exists = true;
      for (int j = 0; j < blended_count; ++j) {
        const Tap& tap = taps[blended[j]];
        if ((corner >> (blended_count - 1 - j)) & 1) {
          exists &= tap.weight_high != 0.0f;
          weight = __fmul_rn(weight, tap.weight_high);
          offset += tap.high;
        } else {
          weight = __fmul_rn(weight, __fsub_rn(1.0f, tap.weight_high));
          offset += tap.low;
        }
      }
      if (!exists) continue;
      if (inner_blend) {
        const float low = to_float(in[offset + inner.low]);
        const float high = to_float(in[offset + inner.high]);
        const float value = __fadd_rn(low, __fmul_rn(inner.weight_high, __fsub_rn(high, low)));
        sum = __fadd_rn(sum, __fmul_rn(weight, value));
      } else {
        sum = __fadd_rn(sum, __fmul_rn(weight, to_float(in[offset + inner.low])));
      }
    }
    out[i] = from_float<T>(sum);
  }
}

// kUnsupported naming the node and the attribute for what only the CPU kernel implements.
void refuse_filter_taps(std::string_view node_name, std::string_view op,
                        const ops::nn::ResizeAttributes& attrs) {
  const char* what = attrs.mode == ops::nn::ResizeMode::kCubic ? "attribute 'mode' = 'cubic'"
                     : attrs.antialias ? "attribute 'antialias' = 1"
                                       : "attribute 'coordinate_transformation_mode' = "
                                         "'tf_crop_and_resize'";
  fail(ErrorCode::kUnsupported, "node '", node_name, "' (", op, ") on cuda: ", what,
       " is not supported by the CUDA Resize kernel (nearest and linear are); build this model for "
       "the cpu target");
}

void check_resize_attributes(std::string_view node_name, std::string_view op,
                             const AttributeMap& attrs) {
  // Without the input's rank here, 'axes' (validated at launch) is left out.
  AttributeMap without_axes = attrs;
  without_axes.erase("axes");
  const ops::nn::ResizeAttributes parsed =
      ops::nn::read_resize_attributes(ops::nn::NodeLabel{node_name, op}, without_axes, 1);
  if (parsed.uses_filter_taps()) refuse_filter_taps(node_name, op, parsed);
}

std::vector<float> scales_of(const LaunchContext& ctx) {
  const HostTensor& value = dm::host_input(ctx, 2, "scales");
  std::vector<float> scales(static_cast<size_t>(value.numel()));
  for (size_t i = 0; i < scales.size(); ++i) {
    switch (value.dtype) {
      case DType::kFloat32:
        scales[i] = value.data<float>()[i];
        break;
      case DType::kFloat16:
        scales[i] = half_to_float(value.data<uint16_t>()[i]);
        break;
      case DType::kBFloat16:
        scales[i] = bfloat16_to_float(value.data<uint16_t>()[i]);
        break;
      default:
        ctx.fail(ErrorCode::kUnsupported, "input 2 (scales) has unsupported dtype ",
                 dtype_name(value.dtype));
    }
  }
  return scales;
}

void launch_resize(LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& y = ctx.outputs[0];
  const size_t rank = x.shape.size();
  const ops::nn::NodeLabel node{ctx.node_name, ctx.op};
  const ops::nn::ResizeAttributes attrs = ops::nn::read_resize_attributes(node, ctx.attrs, rank);
  if (attrs.uses_filter_taps()) refuse_filter_taps(ctx.node_name, ctx.op, attrs);
  const bool has_scales = ctx.has_input(2) && ctx.inputs[2].numel() > 0;
  const bool has_sizes = ctx.has_input(3) && ctx.inputs[3].numel() > 0;
  if (has_scales == has_sizes) {
    ctx.fail(ErrorCode::kInvalidArgument, "exactly one of scales and sizes must be given");
  }
  const ops::nn::ResizePlan plan =
      has_scales ? ops::nn::plan_resize_from_scales(node, attrs, x.shape, scales_of(ctx))
                 : ops::nn::plan_resize_from_sizes(node, attrs, x.shape,
                                                   dm::host_indices(ctx, 3, "sizes"));
  if (y.shape != plan.output) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 has shape ", shape_to_string(y.shape),
             ", expected ", shape_to_string(plan.output));
  }
  if (rank == 0 || rank > static_cast<size_t>(kMaxRank)) {
    ctx.fail(ErrorCode::kUnsupported, "rank ", rank, " (the CUDA backend handles 1..", kMaxRank,
             ")");
  }
  const int64_t n = y.numel();
  if (n == 0) return;
  if (x.numel() == 0) ctx.fail(ErrorCode::kInvalidArgument, "cannot resize an empty input");
  if (y.dtype != x.dtype) ctx.fail(ErrorCode::kInvalidArgument, "output dtype differs from input");

  ResizeParams p{};
  p.rank = static_cast<int>(rank);
  p.transform = attrs.transform;
  p.rounding = attrs.rounding;
  const bool linear = attrs.mode == ops::nn::ResizeMode::kLinear;
  const std::vector<int64_t> strides = dm::dense_strides(x.shape);
  for (size_t a = 0; a < rank; ++a) {
    ResizeAxis& axis = p.axes[a];
    axis.in = x.shape[a];
    axis.out = y.shape[a];
    axis.in_stride = strides[a];
    axis.scale = plan.scales[a];
    const bool identity = axis.in == axis.out && axis.scale == 1.0f;
    axis.kind = identity ? AxisKind::kIdentity : (linear ? AxisKind::kLinear : AxisKind::kNearest);
    // The same float expressions as the CPU kernel's per-position code, hoisted.
    const float adjustment =
        static_cast<float>(axis.out) / (axis.scale * static_cast<float>(axis.in));
    const float center = static_cast<float>(axis.in) / 2.0f;
    axis.symmetric_shift = center * (1.0f - adjustment);
    axis.in_last = static_cast<float>(axis.in - 1);
    axis.out_last = static_cast<float>(axis.out - 1);
  }
  dispatch_float(ctx, x.dtype, [&]<typename T>() {
    dm::dispatch_index(n, [&]<typename Index>() {
      resize_kernel<T, Index><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
          x.as<const T>(), y.as<T>(), static_cast<Index>(n), p, dm::make_dividers<Index>(y.shape));
    });
  });
  check_launch(ctx);
}

}  // namespace

void register_resize_kernels(CudaKernelRegistry& registry) {
  registry.add("Resize", CudaKernel{nullptr, launch_resize, check_resize_attributes});
}

}  // namespace kiln::cuda
