// QuantizeLinear and DequantizeLinear (ONNX opsets 10-25): per-tensor, per-axis (`axis`) and
// blocked (`block_size`) scales; int8/uint8/int16/uint16, int4/uint4/int2/uint2, float8 and
// float4e2m1 quantized values; float32/float16/bfloat16 and float8e8m0 (MX) scales.
#include <cmath>
#include <string>

#include "base/host_tensor.hpp"
#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"
#include "ops/quantize_params.hpp"

namespace kiln::ops {
namespace {

constexpr std::initializer_list<DType> kQuantizedTypes = {
    DType::kInt8,         DType::kUInt8,          DType::kInt16,      DType::kUInt16,
    DType::kInt4,         DType::kUInt4,          DType::kInt2,       DType::kUInt2,
    DType::kFloat8E4M3FN, DType::kFloat8E4M3FNUZ, DType::kFloat8E5M2, DType::kFloat8E5M2FNUZ,
    DType::kFloat4E2M1};
constexpr std::initializer_list<DType> kScaleTypes = {DType::kFloat32, DType::kFloat16,
                                                      DType::kBFloat16, DType::kFloat8E8M0};
// The dtypes of DequantizeLinear's output and QuantizeLinear's `precision`.
constexpr std::initializer_list<DType> kFloatTypes = {DType::kFloat32, DType::kFloat16,
                                                      DType::kBFloat16};

bool dims_match(int64_t a, int64_t b) { return a == kDynamicDim || b == kDynamicDim || a == b; }

// An attribute holding a dtype number: the DType, or a failure naming the attribute.
DType dtype_attr(const InferContext& ctx, const char* name, int64_t value,
                 std::initializer_list<DType> allowed) {
  if (value < 0 || value > 255 || !is_valid_dtype(static_cast<int>(value))) {
    ctx.fail("attribute '", name, "' = ", value, " is not a dtype kiln supports");
  }
  require_dtype(ctx, std::string("attribute '") + name + "'", static_cast<DType>(value), allowed);
  return static_cast<DType>(value);
}

std::optional<Shape> zero_point_shape(const InferContext& ctx) {
  if (!ctx.has_input(2)) return std::nullopt;
  return ctx.input(2).shape;
}

void check_saturate(const InferContext& ctx) {
  const int64_t saturate = int_attr(ctx, "saturate", 1);
  if (saturate != 0 && saturate != 1) ctx.fail("attribute 'saturate' must be 0 or 1, got ", saturate);
}

void infer_quantize_linear(InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  require_dtype(ctx, "input 0 (x)", x.dtype,
                {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt32});
  require_dtype(ctx, "input 1 (y_scale)", ctx.input(1).dtype, kScaleTypes);
  check_known_scale(ctx, 1, "y_scale");
  check_saturate(ctx);
  if (const int64_t precision = int_attr(ctx, "precision", 0); precision != 0) {
    dtype_attr(ctx, "precision", precision, kFloatTypes);
  }
  DType out = DType::kUInt8;
  const int64_t output_dtype = int_attr(ctx, "output_dtype", 0);
  if (output_dtype != 0) out = dtype_attr(ctx, "output_dtype", output_dtype, kQuantizedTypes);
  if (ctx.has_input(2)) {
    const DType zero = ctx.input(2).dtype;
    require_dtype(ctx, "input 2 (y_zero_point)", zero, kQuantizedTypes);
    if (output_dtype != 0 && zero != out) {
      ctx.fail("attribute 'output_dtype' (", dtype_name(out), ") differs from y_zero_point's dtype ",
               dtype_name(zero));
    }
    out = zero;
  }
  resolve_quantize_layout(node_ref(ctx), x.shape, ctx.input(1).shape, zero_point_shape(ctx),
                          int_attr(ctx, "axis", 1), int_attr(ctx, "block_size", 0));
  ctx.output(0).dtype = out;
  ctx.output(0).shape = x.shape;
  ctx.link_same_shape(0, 0);
}

void infer_dequantize_linear(InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  std::initializer_list<DType> inputs = {
      DType::kInt8,         DType::kUInt8,          DType::kInt16,      DType::kUInt16,
      DType::kInt32,        DType::kInt4,           DType::kUInt4,      DType::kInt2,
      DType::kUInt2,        DType::kFloat8E4M3FN,   DType::kFloat8E4M3FNUZ, DType::kFloat8E5M2,
      DType::kFloat8E5M2FNUZ, DType::kFloat4E2M1};
  require_dtype(ctx, "input 0 (x)", x.dtype, inputs);
  const DType scale = ctx.input(1).dtype;
  require_dtype(ctx, "input 1 (x_scale)", scale, kScaleTypes);
  check_known_scale(ctx, 1, "x_scale");
  if (ctx.has_input(2) && ctx.input(2).dtype != x.dtype) {
    ctx.fail("input 2 (x_zero_point) has dtype ", dtype_name(ctx.input(2).dtype),
             ", expected x's dtype ", dtype_name(x.dtype));
  }
  const int64_t output_dtype = int_attr(ctx, "output_dtype", 0);
  resolve_quantize_layout(node_ref(ctx), x.shape, ctx.input(1).shape, zero_point_shape(ctx),
                          int_attr(ctx, "axis", 1), int_attr(ctx, "block_size", 0));
  if (output_dtype == 0 && scale == DType::kFloat8E8M0) {
    ctx.fail("a float8e8m0 x_scale needs attribute 'output_dtype' (float32, float16 or bfloat16)");
  }
  ctx.output(0).dtype = output_dtype != 0 ? dtype_attr(ctx, "output_dtype", output_dtype, kFloatTypes)
                                          : scale;
  ctx.output(0).shape = x.shape;
  ctx.link_same_shape(0, 0);
}

}  // namespace

void check_known_scale(const InferContext& ctx, size_t input, const char* name) {
  const HostTensor* scale = ctx.input(input).value;
  if (scale == nullptr) return;
  const TensorView view = view_of(*scale);
  const int64_t count = view.numel();
  for (int64_t i = 0; i < count; ++i) {
    const double value = read_as_double(view, i);
    if (!(value > 0.0) || !std::isfinite(value)) {
      ctx.fail("input ", input, " (", name, ") is ", value, count > 1 ? " at element " + std::to_string(i) : "",
               ": a quantization scale must be finite and greater than zero");
    }
  }
}

bool is_quantized_dtype(DType dtype) {
  for (const DType t : kQuantizedTypes) {
    if (t == dtype) return true;
  }
  return false;
}

QuantizeLayout resolve_quantize_layout(const NodeRef& node, const Shape& x, const Shape& scale,
                                       const std::optional<Shape>& zero_point, int64_t axis,
                                       int64_t block_size) {
  const auto is_one_element = [](const Shape& s) { return s.empty() || (s.size() == 1 && s[0] == 1); };
  // ONNX's reference takes a one-element zero point with a one-element scale whatever their ranks.
  if (zero_point && *zero_point != scale && !(is_one_element(*zero_point) && is_one_element(scale))) {
    node.fail(ErrorCode::kInvalidArgument, "the zero point's shape ", shape_to_string(*zero_point),
              " differs from the scale's ", shape_to_string(scale));
  }
  if (block_size < 0) {
    node.fail(ErrorCode::kInvalidArgument, "attribute 'block_size' must be >= 0, got ", block_size);
  }
  QuantizeLayout layout;
  if (is_one_element(scale)) {  // per-tensor (ONNX takes a one-element 1-D scale as one too)
    if (shape_is_static(x)) layout.outer = shape_numel(x);
    return layout;
  }
  const auto rank = static_cast<int64_t>(x.size());
  if (axis < -rank || axis >= rank) {
    node.fail(ErrorCode::kInvalidArgument, "attribute 'axis' = ", axis, " is out of range for input x of rank ",
              rank);
  }
  const auto a = static_cast<size_t>(axis < 0 ? axis + rank : axis);
  const bool known = shape_is_static(x) && shape_is_static(scale);
  if (known) {
    for (size_t d = 0; d < a; ++d) layout.outer *= x[d];
    layout.axis_length = x[a];
    for (size_t d = a + 1; d < x.size(); ++d) layout.inner *= x[d];
  }
  if (block_size == 0) {
    if (scale.size() != 1 || !dims_match(scale[0], x[a])) {
      node.fail(ErrorCode::kInvalidArgument, "a per-axis scale must be 1-D with x.shape[axis] = ",
                x[a], " elements (axis ", axis, "), got shape ", shape_to_string(scale),
                "; blocked scales need attribute 'block_size'");
    }
    layout.scale_axis_stride = 1;
    return layout;
  }
  if (scale.size() != x.size()) {
    node.fail(ErrorCode::kInvalidArgument, "a blocked scale (block_size ", block_size,
              ") must have x's rank ", x.size(), ", got shape ", shape_to_string(scale));
  }
  for (size_t d = 0; d < x.size(); ++d) {
    const int64_t expected =
        d == a && x[d] != kDynamicDim ? (x[d] + block_size - 1) / block_size : x[d];
    if (!dims_match(scale[d], expected)) {
      node.fail(ErrorCode::kInvalidArgument, "a blocked scale for x ", shape_to_string(x), " with axis ", axis,
                " and block_size ", block_size, " must have shape dim ", d, " = ", expected,
                ", got shape ", shape_to_string(scale));
    }
  }
  if (known) {
    layout.block = block_size;
    layout.scale_inner_stride = 1;
    layout.scale_axis_stride = layout.inner;
    layout.scale_outer_stride = scale[a] * layout.inner;
  }
  return layout;
}

void register_quantize_ops(OpRegistry& registry) {
  registry.add(OpDef{"QuantizeLinear", 2, 3, 1, 1, {}, &nn::infer_with_node_errors<infer_quantize_linear>});
  registry.add(
      OpDef{"DequantizeLinear", 2, 3, 1, 1, {}, &nn::infer_with_node_errors<infer_dequantize_linear>});
}

}  // namespace kiln::ops
