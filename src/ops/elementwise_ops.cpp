// Elementwise ops: unary math and activations, broadcasting binary arithmetic, comparisons and
// logic, variadic Min/Max/Sum/Mean, Clip, Where, Cast and CastLike (to and from float8, float8e8m0,
// float4e2m1 and the 4- and 2-bit integers too).
#include <initializer_list>

#include "ops/op_families.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::ops {
namespace {

constexpr std::initializer_list<DType> kFloatTypes = {DType::kFloat32, DType::kFloat16,
                                                      DType::kBFloat16, DType::kFloat64};
constexpr std::initializer_list<DType> kSignedTypes = {
    DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64,
    DType::kInt8,    DType::kInt16,   DType::kInt32,    DType::kInt64};
constexpr std::initializer_list<DType> kNumericTypes = {
    DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt8,   DType::kInt16,
    DType::kInt32,   DType::kInt64,   DType::kUInt8,    DType::kUInt16,  DType::kUInt32, DType::kUInt64};
constexpr std::initializer_list<DType> kNumericOrBoolTypes = {
    DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt8,   DType::kInt16,
    DType::kInt32,   DType::kInt64,   DType::kUInt8,    DType::kUInt16,  DType::kUInt32, DType::kUInt64,
    DType::kBool};
constexpr std::initializer_list<DType> kBoolType = {DType::kBool};

void infer_unary(InferContext& ctx, std::initializer_list<DType> allowed, bool bool_output) {
  // The kernels read these as floats; check their kind here so the error names the node.
  for (const char* name : {"alpha", "beta", "gamma", "bias", "lambd"}) float_attr(ctx, name, 0.0f);
  for (const char* name : {"detect_negative", "detect_positive"}) int_attr(ctx, name, 0);
  const ValueInfo& x = ctx.input(0);
  require_dtype(ctx, "input 0", x.dtype, allowed);
  ctx.output(0).dtype = bool_output ? DType::kBool : x.dtype;
  ctx.output(0).shape = x.shape;
  ctx.link_same_shape(0, 0);
}

// Broadcast shape of inputs [first, num_inputs), requiring one dtype among `allowed`.
Shape broadcast_inputs(InferContext& ctx, size_t first, std::initializer_list<DType> allowed) {
  const DType dtype = ctx.input(first).dtype;
  require_dtype(ctx, "input " + std::to_string(first), dtype, allowed);
  Shape shape = ctx.input(first).shape;
  for (size_t i = first + 1; i < ctx.num_inputs(); ++i) {
    if (ctx.input(i).dtype != dtype) {
      ctx.fail("input ", i, " has dtype ", dtype_name(ctx.input(i).dtype), " but input ", first,
               " has ", dtype_name(dtype), "; they must match");
    }
    shape = broadcast_shapes(ctx, shape, ctx.input(i).shape);
  }
  return shape;
}

void infer_broadcast(InferContext& ctx, std::initializer_list<DType> allowed, bool bool_output) {
  const Shape shape = broadcast_inputs(ctx, 0, allowed);
  ctx.output(0).dtype = bool_output ? DType::kBool : ctx.input(0).dtype;
  ctx.output(0).shape = shape;
  ctx.link_broadcast(0);
}

void infer_float_unary(InferContext& ctx) {
  infer_unary(ctx, kFloatTypes, false);
}
void infer_signed_unary(InferContext& ctx) {
  infer_unary(ctx, kSignedTypes, false);
}
void infer_numeric_unary(InferContext& ctx) {
  infer_unary(ctx, kNumericTypes, false);
}
void infer_float_predicate(InferContext& ctx) {
  infer_unary(ctx, kFloatTypes, true);
}
void infer_not(InferContext& ctx) {
  infer_unary(ctx, kBoolType, false);
}

void infer_gelu(InferContext& ctx) {
  const std::string approximate = string_attr(ctx, "approximate", "none");
  if (approximate != "none" && approximate != "tanh") {
    ctx.fail("attribute 'approximate' must be \"none\" or \"tanh\", got \"", approximate, "\"");
  }
  infer_unary(ctx, kFloatTypes, false);
}

void infer_arithmetic(InferContext& ctx) {
  infer_broadcast(ctx, kNumericTypes, false);
}
void infer_float_binary(InferContext& ctx) {
  infer_broadcast(ctx, kFloatTypes, false);
}
void infer_compare(InferContext& ctx) {
  infer_broadcast(ctx, kNumericTypes, true);
}
void infer_equal(InferContext& ctx) {
  infer_broadcast(ctx, kNumericOrBoolTypes, true);
}
void infer_logical(InferContext& ctx) {
  infer_broadcast(ctx, kBoolType, true);
}

void infer_mod(InferContext& ctx) {
  const int64_t fmod = int_attr(ctx, "fmod", 0);
  if (fmod != 0 && fmod != 1) ctx.fail("attribute 'fmod' must be 0 or 1, got ", fmod);
  infer_broadcast(ctx, kNumericTypes, false);
}

void infer_pow(InferContext& ctx) {
  const ValueInfo& base = ctx.input(0);
  const ValueInfo& exponent = ctx.input(1);
  require_dtype(ctx, "base (input 0)", base.dtype,
                {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt32,
                 DType::kInt64});
  require_dtype(ctx, "exponent (input 1)", exponent.dtype,
                {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt8, DType::kInt16,
                 DType::kInt32, DType::kInt64, DType::kUInt8, DType::kUInt16, DType::kUInt32, DType::kUInt64});
  ctx.output(0).dtype = base.dtype;
  ctx.output(0).shape = broadcast_shapes(ctx, base.shape, exponent.shape);
  ctx.link_broadcast(0);
}

void infer_variadic(InferContext& ctx) {
  std::initializer_list<DType> allowed = ctx.op() == "Mean" ? kFloatTypes : kNumericTypes;
  infer_broadcast(ctx, allowed, false);
}

void infer_clip(InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  require_dtype(ctx, "input 0", x.dtype, kNumericTypes);
  for (size_t i = 1; i < 3; ++i) {
    if (!ctx.has_input(i)) continue;
    const ValueInfo& bound = ctx.input(i);
    if (bound.dtype != x.dtype) {
      ctx.fail(i == 1 ? "min" : "max", " has dtype ", dtype_name(bound.dtype), " but input has ",
               dtype_name(x.dtype));
    }
    if (bound.shape.size() > 1 || (bound.shape.size() == 1 && bound.shape[0] > 1)) {
      ctx.fail(i == 1 ? "min" : "max", " must be a scalar, got shape ",
               shape_to_string(bound.shape));
    }
  }
  ctx.output(0).dtype = x.dtype;
  ctx.output(0).shape = x.shape;
  ctx.link_same_shape(0, 0);  // min and max are scalars
}

void infer_where(InferContext& ctx) {
  if (ctx.input(0).dtype != DType::kBool) {
    ctx.fail("condition must be bool, got ", dtype_name(ctx.input(0).dtype));
  }
  const Shape xy = broadcast_inputs(ctx, 1, kNumericOrBoolTypes);
  ctx.output(0).dtype = ctx.input(1).dtype;
  ctx.output(0).shape = broadcast_shapes(ctx, ctx.input(0).shape, xy);
  ctx.link_broadcast(0);
}

constexpr std::initializer_list<DType> kCastTypes = {
    DType::kFloat32,        DType::kFloat16,     DType::kBFloat16,       DType::kFloat64,
    DType::kInt8,           DType::kInt16,       DType::kInt32,          DType::kInt64,
    DType::kUInt8,          DType::kUInt16,      DType::kUInt32,         DType::kUInt64,
    DType::kBool,           DType::kFloat8E4M3FN, DType::kFloat8E4M3FNUZ, DType::kFloat8E5M2,
    DType::kFloat8E5M2FNUZ, DType::kFloat8E8M0,  DType::kFloat4E2M1,     DType::kInt4,
    DType::kUInt4,          DType::kInt2,        DType::kUInt2};

// `saturate` (opset 19) decides what casts to float8 do with values beyond the format's range;
// `round_mode` (opset 24) how casts to float8e8m0 round.
void check_saturate(InferContext& ctx) {
  const int64_t saturate = int_attr(ctx, "saturate", 1);
  if (saturate != 0 && saturate != 1) ctx.fail("attribute 'saturate' must be 0 or 1, got ", saturate);
  const std::string round_mode = ctx.attrs().get_string_or("round_mode", "up");
  if (round_mode != "up" && round_mode != "down" && round_mode != "nearest") {
    ctx.fail("attribute 'round_mode' must be 'up', 'down' or 'nearest', got '", round_mode, "'");
  }
}

void infer_cast(InferContext& ctx) {
  check_saturate(ctx);
  const int64_t to = int_attr(ctx, "to", -1);
  if (to < 0 || to > 255 || !is_valid_dtype(static_cast<int>(to))) {
    ctx.fail("attribute 'to' must be a supported dtype number, got ", to);
  }
  require_dtype(ctx, "attribute 'to'", static_cast<DType>(to), kCastTypes);
  require_dtype(ctx, "input 0", ctx.input(0).dtype, kCastTypes);
  ctx.output(0).dtype = static_cast<DType>(to);
  ctx.output(0).shape = ctx.input(0).shape;
  ctx.link_same_shape(0, 0);
}

void infer_cast_like(InferContext& ctx) {
  check_saturate(ctx);
  require_dtype(ctx, "input 0", ctx.input(0).dtype, kCastTypes);
  require_dtype(ctx, "target_type (input 1)", ctx.input(1).dtype, kCastTypes);
  ctx.output(0).dtype = ctx.input(1).dtype;
  ctx.output(0).shape = ctx.input(0).shape;
  ctx.link_same_shape(0, 0);
}

OpDef def(std::string name, int min_inputs, int max_inputs, InferFn infer) {
  OpDef d;
  d.name = std::move(name);
  d.min_inputs = min_inputs;
  d.max_inputs = max_inputs;
  d.infer = infer;
  return d;
}

}  // namespace

void register_elementwise_ops(OpRegistry& registry) {
  for (const char* name :
       {"Sigmoid",    "Tanh", "Erf",   "HardSigmoid", "HardSwish", "Sqrt",
        "Reciprocal", "Exp",  "Log",   "Floor",       "Ceil",      "Round",
        "Sin",        "Cos",  "Tan",   "Asin",        "Acos",      "Atan",
        "Sinh",       "Cosh", "Asinh", "Acosh",       "Atanh",     "Softplus",
        "Softsign",   "Elu",  "Selu",  "Celu",        "Mish",      "ThresholdedRelu",
        "LeakyRelu"}) {
    registry.add(def(name, 1, 1, infer_float_unary));
  }
  registry.add(def("Gelu", 1, 1, infer_gelu));
  for (const char* name : {"Relu", "Neg"}) registry.add(def(name, 1, 1, infer_signed_unary));
  for (const char* name : {"Abs", "Sign"}) registry.add(def(name, 1, 1, infer_numeric_unary));
  for (const char* name : {"IsNaN", "IsInf"}) registry.add(def(name, 1, 1, infer_float_predicate));
  registry.add(def("Not", 1, 1, infer_not));

  for (const char* name : {"Add", "Sub", "Mul", "Div"}) {
    registry.add(def(name, 2, 2, infer_arithmetic));
  }
  registry.add(def("Mod", 2, 2, infer_mod));
  registry.add(def("Pow", 2, 2, infer_pow));
  registry.add(def("PRelu", 2, 2, infer_float_binary));
  for (const char* name : {"Less", "Greater", "LessOrEqual", "GreaterOrEqual"}) {
    registry.add(def(name, 2, 2, infer_compare));
  }
  registry.add(def("Equal", 2, 2, infer_equal));
  for (const char* name : {"And", "Or", "Xor"}) registry.add(def(name, 2, 2, infer_logical));
  for (const char* name : {"Min", "Max", "Sum", "Mean"}) {
    registry.add(def(name, 1, 1 << 20, infer_variadic));
  }
  registry.add(def("Clip", 1, 3, infer_clip));
  registry.add(def("Where", 3, 3, infer_where));
  registry.add(def("Cast", 1, 1, infer_cast));
  registry.add(def("CastLike", 2, 2, infer_cast_like));
}

}  // namespace kiln::ops
