// QuantizeLinear and DequantizeLinear on the CPU, matching ONNX's reference arithmetic:
//   quantize:   q = x / scale in the dtype numpy would divide in (float32 for float32 operands,
//               float16 / bfloat16 when both are, `precision` when set, float64 for int32 x);
//               integers (8/16-bit and int4/uint4/int2/uint2): clamp(round_half_even(q) +
//               zero_point); float8: Cast(q, saturate); float4e2m1: Cast(q) (round to nearest
//               even, saturating at ±6). The float zero points must be 0.
//   dequantize: (float32(x) - zero_point) * scale in float32, rounded to the output dtype.
// Scales may be float32, float16, bfloat16 or float8e8m0 (powers of two, the MX formats').
#include <cmath>
#include <optional>

#include "backends/cpu/cpu_kernel.hpp"
#include "base/float8.hpp"
#include "base/half.hpp"
#include "base/sub_byte.hpp"
#include "ops/quantize_params.hpp"

namespace kiln::cpu {
namespace {

ops::QuantizeLayout layout_of(const KernelContext& ctx) {
  std::optional<Shape> zero_point;
  if (ctx.has_input(2)) zero_point = ctx.inputs[2].shape;
  return ops::resolve_quantize_layout(ops::NodeRef{ctx.node_name, ctx.op}, ctx.inputs[0].shape,
                                      ctx.inputs[1].shape, zero_point, ctx.attrs.get_int_or("axis", 1),
                                      ctx.attrs.get_int_or("block_size", 0));
}

// `value` rounded to `dtype` (float32, float16, bfloat16 or float64) and back.
double round_to(double value, DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return half_to_float(float_to_half(static_cast<float>(value)));
    case DType::kBFloat16: return bfloat16_to_float(float_to_bfloat16(static_cast<float>(value)));
    case DType::kFloat64: return value;
    default: return static_cast<float>(value);
  }
}

// The dtype numpy divides x by the scale in: float64 for int32 x, the common type otherwise.
DType division_dtype(const KernelContext& ctx) {
  if (const int64_t precision = ctx.attrs.get_int_or("precision", 0); precision != 0) {
    return static_cast<DType>(precision);
  }
  const DType x = ctx.inputs[0].dtype;
  const DType scale = ctx.inputs[1].dtype;
  if (x == DType::kInt32) return DType::kFloat64;
  return x == scale ? x : DType::kFloat32;
}

void store_to(const TensorView& out, int64_t i, double value) {
  switch (out.dtype) {
    case DType::kFloat32: out.as<float>()[i] = static_cast<float>(value); return;
    case DType::kFloat16: out.as<uint16_t>()[i] = float_to_half(static_cast<float>(value)); return;
    case DType::kBFloat16:
      out.as<uint16_t>()[i] = float_to_bfloat16(static_cast<float>(value));
      return;
    default: break;
  }
}

// ONNX defines float8 and float4e2m1 (de)quantization without an offset: the zero point must be
// 0 (the reference's Q adds a float4e2m1 zero point while its DQ ignores it, so kiln refuses any
// other value rather than pick one reading).
void require_zero_zero_point(const KernelContext& ctx, DType quantized, const char* input_name) {
  const TensorView& zero = ctx.inputs[2];
  for (int64_t k = 0; k < zero.numel(); ++k) {
    if (read_as_double(zero, k) != 0.0) {
      ctx.fail(ErrorCode::kUnsupported, "a ", dtype_name(quantized), " ", input_name, " must be 0, got ",
               read_as_double(zero, k), " at element ", k);
    }
  }
}

template <typename T>
void store_integer(const TensorView& out, int64_t i, double value) {
  out.as<T>()[i] = static_cast<T>(value);
}

void quantize_linear_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& scale = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const ops::QuantizeLayout layout = layout_of(ctx);
  const DType divide_in = division_dtype(ctx);
  const bool has_zero_point = ctx.has_input(2);
  const std::optional<Float8Format> float8 = float8_format(out.dtype);
  const bool float4 = out.dtype == DType::kFloat4E2M1;
  const bool saturate = ctx.attrs.get_int_or("saturate", 1) != 0;
  double lowest = 0.0, highest = 0.0;
  switch (out.dtype) {
    case DType::kInt8: lowest = -128.0, highest = 127.0; break;
    case DType::kUInt8: lowest = 0.0, highest = 255.0; break;
    case DType::kInt16: lowest = -32768.0, highest = 32767.0; break;
    case DType::kUInt16: lowest = 0.0, highest = 65535.0; break;
    case DType::kInt4:
    case DType::kUInt4:
    case DType::kInt2:
    case DType::kUInt2: {
      const auto [low, high] = sub_byte_int_range(out.dtype);
      lowest = low, highest = high;
      break;
    }
    default:
      if (!float8 && !float4) ctx.fail(ErrorCode::kUnsupported, "no CPU QuantizeLinear to ", dtype_name(out.dtype));
  }
  if ((float8 || float4) && has_zero_point) require_zero_zero_point(ctx, out.dtype, "y_zero_point");
  int64_t i = 0;
  for (int64_t o = 0; o < layout.outer; ++o) {
    for (int64_t a = 0; a < layout.axis_length; ++a) {
      for (int64_t n = 0; n < layout.inner; ++n, ++i) {
        const int64_t s = layout.scale_index(o, a, n);
        const double quotient = round_to(
            round_to(read_as_double(x, i), divide_in) / round_to(read_as_double(scale, s), divide_in),
            divide_in);
        if (float8) {
          out.as<uint8_t>()[i] = float_to_float8(static_cast<float>(quotient), *float8, saturate);
          continue;
        }
        if (float4) {
          out.as<uint8_t>()[i] = double_to_float4e2m1(quotient);
          continue;
        }
        // NaN quantizes to the zero point (ONNX leaves it undefined).
        double value = std::isnan(quotient) ? 0.0 : std::nearbyint(quotient);
        if (has_zero_point) value += read_as_double(ctx.inputs[2], s);
        value = std::fmin(std::fmax(value, lowest), highest);
        switch (out.dtype) {
          case DType::kInt8: store_integer<int8_t>(out, i, value); break;
          case DType::kUInt8: store_integer<uint8_t>(out, i, value); break;
          case DType::kInt16: store_integer<int16_t>(out, i, value); break;
          case DType::kUInt16: store_integer<uint16_t>(out, i, value); break;
          default: out.as<uint8_t>()[i] = sub_byte_int_wrap(static_cast<int64_t>(value), out.dtype); break;
        }
      }
    }
  }
}

void dequantize_linear_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& scale = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const ops::QuantizeLayout layout = layout_of(ctx);
  const bool float_codes = is_float8(x.dtype) || x.dtype == DType::kFloat4E2M1;
  if (float_codes && ctx.has_input(2)) require_zero_zero_point(ctx, x.dtype, "x_zero_point");
  const bool has_zero_point = ctx.has_input(2) && !float_codes;
  // int32 minus an int32 zero point is float64 arithmetic in the reference; the rest float32.
  const bool wide = x.dtype == DType::kInt32 && has_zero_point;
  int64_t i = 0;
  for (int64_t o = 0; o < layout.outer; ++o) {
    for (int64_t a = 0; a < layout.axis_length; ++a) {
      for (int64_t n = 0; n < layout.inner; ++n, ++i) {
        const int64_t s = layout.scale_index(o, a, n);
        double shifted = static_cast<float>(read_as_double(x, i));
        if (has_zero_point) shifted -= read_as_double(ctx.inputs[2], s);
        const double scale_value = read_as_double(scale, s);
        const double value = wide ? shifted * scale_value
                                  : static_cast<double>(static_cast<float>(shifted) *
                                                        static_cast<float>(scale_value));
        store_to(out, i, value);
      }
    }
  }
}

}  // namespace

void register_quantize_kernels(CpuKernelRegistry& registry) {
  // Both handle every dtype themselves: the rounding steps depend on the operands' own dtypes.
  registry.add("QuantizeLinear", {quantize_linear_kernel, false});
  registry.add("DequantizeLinear", {dequantize_linear_kernel, false});
}

}  // namespace kiln::cpu
