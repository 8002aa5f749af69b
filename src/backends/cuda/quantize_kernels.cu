// QuantizeLinear and DequantizeLinear on CUDA, with the CPU kernels' arithmetic
// (src/backends/cpu/quantize_kernels.cpp), for the integer codes the CUDA backend has tensors of:
//   quantize:   q = x / scale, divided in float32 (float16 / bfloat16 when x and the scale both are:
//               the quotient is rounded to that dtype), then clamp(round_half_even(q) + zero_point)
//               to int8, uint8 or int16; NaN gives the zero point.
//   dequantize: (float32(x) - zero_point) * scale in float32, rounded to the output dtype.
// Per-tensor, per-axis and blocked scales share one index rule (ops::QuantizeLayout). Not here
// (refused, so such layers stay on the CPU): float8 / sub-byte codes (the CUDA backend has no
// tensors of those dtypes), int32 inputs (their reference arithmetic is float64) and the
// `precision` attribute.
#include <cmath>
#include <limits>
#include <optional>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_kernel.hpp"
#include "ops/quantize_params.hpp"

namespace kiln::cuda {
namespace {

ops::QuantizeLayout layout_of(const LaunchContext& ctx) {
  std::optional<Shape> zero_point;
  if (ctx.has_input(2)) zero_point = ctx.inputs[2].shape;
  return ops::resolve_quantize_layout(ops::NodeRef{ctx.node_name, ctx.op}, ctx.inputs[0].shape, ctx.inputs[1].shape,
                                      zero_point, ctx.attrs.get_int_or("axis", 1),
                                      ctx.attrs.get_int_or("block_size", 0));
}

// The scale (and zero point) element of flat input element `i`.
__device__ __forceinline__ int64_t scale_index(const ops::QuantizeLayout& layout, int64_t i) {
  const int64_t n = i % layout.inner;
  const int64_t rest = i / layout.inner;
  const int64_t a = rest % layout.axis_length;
  const int64_t o = rest / layout.axis_length;
  return layout.scale_index(o, a, n);
}

template <typename T>
__device__ __forceinline__ float round_like(float v) {
  return to_float<T>(from_float<T>(v));
}

template <typename X, typename S, typename Q, bool kHalfDivision>
__global__ void quantize_kernel(const X* __restrict__ x, const S* __restrict__ scale, const Q* __restrict__ zero_point,
                                Q* __restrict__ out, ops::QuantizeLayout layout, int64_t n, float lowest,
                                float highest) {
  for (int64_t i = first_index<int64_t>(); i < n; i += grid_stride<int64_t>()) {
    const int64_t s = scale_index(layout, i);
    float quotient = __fdiv_rn(to_float<X>(x[i]), to_float<S>(scale[s]));
    if constexpr (kHalfDivision) quotient = round_like<X>(quotient);
    float value = isnan(quotient) ? 0.0f : rintf(quotient);
    if (zero_point != nullptr) value += static_cast<float>(zero_point[s]);
    value = fminf(fmaxf(value, lowest), highest);
    out[i] = static_cast<Q>(value);
  }
}

template <typename Q, typename S, typename Y>
__global__ void dequantize_kernel(const Q* __restrict__ x, const S* __restrict__ scale,
                                  const Q* __restrict__ zero_point, Y* __restrict__ out, ops::QuantizeLayout layout,
                                  int64_t n) {
  for (int64_t i = first_index<int64_t>(); i < n; i += grid_stride<int64_t>()) {
    const int64_t s = scale_index(layout, i);
    float shifted = static_cast<float>(x[i]);
    if (zero_point != nullptr) shifted -= static_cast<float>(zero_point[s]);
    out[i] = from_float<Y>(__fmul_rn(shifted, to_float<S>(scale[s])));
  }
}

template <typename F>
void dispatch_code(const LaunchContext& ctx, DType dtype, F&& f) {
  switch (dtype) {
    case DType::kInt8: f.template operator()<int8_t>(); return;
    case DType::kUInt8: f.template operator()<uint8_t>(); return;
    case DType::kInt16: f.template operator()<int16_t>(); return;
    default: ctx.fail(ErrorCode::kUnsupported, "no CUDA kernel for ", dtype_name(dtype), " codes");
  }
}

void launch_quantize(LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& scale = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const int64_t n = x.numel();
  if (n == 0) return;
  const ops::QuantizeLayout layout = layout_of(ctx);
  // Divided in float16 / bfloat16 when both operands are (numpy's common type), else float32.
  const bool half_division = x.dtype == scale.dtype && x.dtype != DType::kFloat32;
  dispatch_float(ctx, x.dtype, [&]<typename X>() {
    dispatch_float(ctx, scale.dtype, [&]<typename S>() {
      dispatch_code(ctx, out.dtype, [&]<typename Q>() {
        const float lowest = static_cast<float>(std::numeric_limits<Q>::lowest());
        const float highest = static_cast<float>(std::numeric_limits<Q>::max());
        const Q* zero_point = ctx.has_input(2) ? ctx.inputs[2].as<const Q>() : nullptr;
        auto* kernel = half_division ? quantize_kernel<X, S, Q, true> : quantize_kernel<X, S, Q, false>;
        kernel<<<grid_for(n), kBlockSize, 0, ctx.stream>>>(x.as<const X>(), scale.as<const S>(), zero_point,
                                                            out.as<Q>(), layout, n, lowest, highest);
      });
    });
  });
  check_launch(ctx);
}

void launch_dequantize(LaunchContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& scale = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const int64_t n = x.numel();
  if (n == 0) return;
  const ops::QuantizeLayout layout = layout_of(ctx);
  dispatch_code(ctx, x.dtype, [&]<typename Q>() {
    dispatch_float(ctx, scale.dtype, [&]<typename S>() {
      dispatch_float(ctx, out.dtype, [&]<typename Y>() {
        const Q* zero_point = ctx.has_input(2) ? ctx.inputs[2].as<const Q>() : nullptr;
        dequantize_kernel<Q, S, Y><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(
            x.as<const Q>(), scale.as<const S>(), zero_point, out.as<Y>(), layout, n);
      });
    });
  });
  check_launch(ctx);
}

void check_quantize_attributes(std::string_view node_name, std::string_view op, const AttributeMap& attrs) {
  if (attrs.get_int_or("precision", 0) != 0) {
    fail(ErrorCode::kUnsupported, "node '", node_name, "' (", op,
         ") on cuda: the `precision` attribute is not supported (the CPU backend takes it)");
  }
}

constexpr backends::DTypeSet kCodes{DType::kInt8, DType::kUInt8, DType::kInt16};

}  // namespace

void register_quantize_kernels(CudaKernelRegistry& registry) {
  // Inputs: x, scale, zero point (absent inputs are skipped by the dtype rules).
  registry.add("QuantizeLinear", CudaKernel{nullptr, launch_quantize, check_quantize_attributes},
               {.inputs = {{{0, 1}, backends::kNnFloatDTypes}, {{2}, kCodes}}});
  registry.add("DequantizeLinear", CudaKernel{nullptr, launch_dequantize},
               {.inputs = {{{0, 2}, kCodes}, {{1}, backends::kNnFloatDTypes}}});
}

}  // namespace kiln::cuda
