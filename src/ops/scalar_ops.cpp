// The scalar op table (ops/scalar_ops.hpp). Each entry's function is in ops/scalar_math.h with the
// signature the entry describes; tests/unit/scalar_ops_test.cpp checks both against each other.
#include "ops/scalar_ops.hpp"

#include <string>

#include "base/error.hpp"

namespace kiln::ops {
namespace {

constexpr ScalarInputs kFloat = ScalarInputs::kFloat;
constexpr ScalarInputs kBool = ScalarInputs::kBool;
constexpr ScalarResult kSame = ScalarResult::kSameAsInputs;
constexpr ScalarResult kToBool = ScalarResult::kBool;

// ONNX's Selu defaults (float32 roundings of the exact constants).
constexpr float kSeluAlpha = 1.67326319217681884765625f;
constexpr float kSeluGamma = 1.05070102214813232421875f;

// One line per entry: {op_type, function, arity, attrs, inputs, result, selected_by}.
// clang-format off
std::vector<ScalarOp> make_table() {
  return {
      // unary, float -> float
      {"Identity", "kiln_identity", 1, {}, kFloat, kSame, ""},
      {"Relu", "kiln_relu", 1, {}, kFloat, kSame, ""},
      {"LeakyRelu", "kiln_leaky_relu", 1, {{"alpha", 0.01f}}, kFloat, kSame, ""},
      {"ThresholdedRelu", "kiln_thresholded_relu", 1, {{"alpha", 1.0f}}, kFloat, kSame, ""},
      {"Elu", "kiln_elu", 1, {{"alpha", 1.0f}}, kFloat, kSame, ""},
      {"Selu", "kiln_selu", 1, {{"alpha", kSeluAlpha}, {"gamma", kSeluGamma}}, kFloat, kSame, ""},
      {"Celu", "kiln_celu", 1, {{"alpha", 1.0f}}, kFloat, kSame, ""},
      {"Sigmoid", "kiln_sigmoid", 1, {}, kFloat, kSame, ""},
      {"HardSigmoid", "kiln_hard_sigmoid", 1, {{"alpha", 0.2f}, {"beta", 0.5f}}, kFloat, kSame, ""},
      {"HardSwish", "kiln_hard_swish", 1, {}, kFloat, kSame, ""},
      {"Tanh", "kiln_tanh", 1, {}, kFloat, kSame, ""},
      {"Erf", "kiln_erf", 1, {}, kFloat, kSame, ""},
      {"Gelu", "kiln_gelu", 1, {}, kFloat, kSame, "approximate=none"},
      {"Gelu", "kiln_gelu_tanh", 1, {}, kFloat, kSame, "approximate=tanh"},
      {"Softplus", "kiln_softplus", 1, {}, kFloat, kSame, ""},
      {"Softsign", "kiln_softsign", 1, {}, kFloat, kSame, ""},
      {"Mish", "kiln_mish", 1, {}, kFloat, kSame, ""},
      {"Neg", "kiln_neg", 1, {}, kFloat, kSame, ""},
      {"Abs", "kiln_abs", 1, {}, kFloat, kSame, ""},
      {"Sign", "kiln_sign", 1, {}, kFloat, kSame, ""},
      {"Reciprocal", "kiln_reciprocal", 1, {}, kFloat, kSame, ""},
      {"Sqrt", "kiln_sqrt", 1, {}, kFloat, kSame, ""},
      {"Exp", "kiln_exp", 1, {}, kFloat, kSame, ""},
      {"Log", "kiln_log", 1, {}, kFloat, kSame, ""},
      {"Floor", "kiln_floor", 1, {}, kFloat, kSame, ""},
      {"Ceil", "kiln_ceil", 1, {}, kFloat, kSame, ""},
      {"Round", "kiln_round", 1, {}, kFloat, kSame, ""},
      {"Sin", "kiln_sin", 1, {}, kFloat, kSame, ""},
      {"Cos", "kiln_cos", 1, {}, kFloat, kSame, ""},
      {"Tan", "kiln_tan", 1, {}, kFloat, kSame, ""},
      {"Asin", "kiln_asin", 1, {}, kFloat, kSame, ""},
      {"Acos", "kiln_acos", 1, {}, kFloat, kSame, ""},
      {"Atan", "kiln_atan", 1, {}, kFloat, kSame, ""},
      {"Sinh", "kiln_sinh", 1, {}, kFloat, kSame, ""},
      {"Cosh", "kiln_cosh", 1, {}, kFloat, kSame, ""},
      {"Asinh", "kiln_asinh", 1, {}, kFloat, kSame, ""},
      {"Acosh", "kiln_acosh", 1, {}, kFloat, kSame, ""},
      {"Atanh", "kiln_atanh", 1, {}, kFloat, kSame, ""},
      // unary predicates, float -> bool
      {"IsNaN", "kiln_is_nan", 1, {}, kFloat, kToBool, ""},
      {"IsInf", "kiln_is_inf", 1, {{"detect_negative", 1.0f}, {"detect_positive", 1.0f}}, kFloat,
       kToBool, ""},
      // binary, float -> float
      {"Add", "kiln_add", 2, {}, kFloat, kSame, ""},
      {"Sub", "kiln_sub", 2, {}, kFloat, kSame, ""},
      {"Mul", "kiln_mul", 2, {}, kFloat, kSame, ""},
      {"Div", "kiln_div", 2, {}, kFloat, kSame, ""},
      {"Pow", "kiln_pow", 2, {}, kFloat, kSame, ""},
      {"Mod", "kiln_mod", 2, {}, kFloat, kSame, "fmod=0"},
      {"Mod", "kiln_fmod", 2, {}, kFloat, kSame, "fmod=1"},
      {"PRelu", "kiln_prelu", 2, {}, kFloat, kSame, ""},
      {"Min", "kiln_min", 2, {}, kFloat, kSame, ""},
      {"Max", "kiln_max", 2, {}, kFloat, kSame, ""},
      {"Sum", "kiln_add", 2, {}, kFloat, kSame, ""},
      {"Mean", "kiln_mean", 2, {}, kFloat, kSame, ""},
      // comparisons, float -> bool
      {"Equal", "kiln_equal", 2, {}, kFloat, kToBool, ""},
      {"Less", "kiln_less", 2, {}, kFloat, kToBool, ""},
      {"Greater", "kiln_greater", 2, {}, kFloat, kToBool, ""},
      {"LessOrEqual", "kiln_less_or_equal", 2, {}, kFloat, kToBool, ""},
      {"GreaterOrEqual", "kiln_greater_or_equal", 2, {}, kFloat, kToBool, ""},
      // logic, bool -> bool
      {"And", "kiln_and", 2, {}, kBool, kToBool, ""},
      {"Or", "kiln_or", 2, {}, kBool, kToBool, ""},
      {"Xor", "kiln_xor", 2, {}, kBool, kToBool, ""},
      {"Not", "kiln_not", 1, {}, kBool, kToBool, ""},
      // ternary
      {"Where", "kiln_where", 3, {}, ScalarInputs::kConditionThenFloat, kSame, ""},
      {"Clip", "kiln_clip", 3, {}, kFloat, kSame, ""},
  };
}
// clang-format on

// The selecting attribute value of a node of `op_type`, written like ScalarOp::selected_by; empty
// for ops with one entry.
std::string selector_of(std::string_view op_type, const AttributeMap& attrs) {
  const auto require_kind = [&](std::string_view name, Attribute::Kind kind) {
    const Attribute* a = attrs.find(name);
    if (a != nullptr && a->kind != kind) {
      fail(ErrorCode::kInvalidArgument, op_type, " attribute '", name, "' should be of kind ",
           attribute_kind_name(kind), ", got ", attribute_kind_name(a->kind));
    }
    return a;
  };
  if (op_type == "Gelu") {
    const Attribute* a = require_kind("approximate", Attribute::Kind::kString);
    return "approximate=" + (a != nullptr ? a->s : std::string("none"));
  }
  if (op_type == "Mod") {
    const Attribute* a = require_kind("fmod", Attribute::Kind::kInt);
    return "fmod=" + std::to_string(a != nullptr ? a->i : 0);
  }
  return {};
}

}  // namespace

const std::vector<ScalarOp>& scalar_ops() {
  static const std::vector<ScalarOp> table = make_table();
  return table;
}

const ScalarOp* find_scalar_op(std::string_view op_type, const AttributeMap& attrs) {
  const std::vector<ScalarOp>& table = scalar_ops();
  bool known = false;
  for (const ScalarOp& op : table) known = known || op.op_type == op_type;
  if (!known) return nullptr;
  const std::string selector = selector_of(op_type, attrs);
  for (const ScalarOp& op : table) {
    if (op.op_type == op_type && op.selected_by == selector) return &op;
  }
  return nullptr;
}

std::vector<float> scalar_attr_values(const ScalarOp& op, const AttributeMap& attrs) {
  std::vector<float> values;
  values.reserve(op.attrs.size());
  for (const ScalarAttr& attr : op.attrs) {
    const Attribute* a = attrs.find(attr.name);
    if (a == nullptr) {
      values.push_back(attr.default_value);
    } else if (a->kind == Attribute::Kind::kFloat) {
      values.push_back(a->f);
    } else if (a->kind == Attribute::Kind::kInt) {
      values.push_back(static_cast<float>(a->i));
    } else {
      fail(ErrorCode::kInvalidArgument, op.op_type, " attribute '", attr.name,
           "' should be a float or an int, got ", attribute_kind_name(a->kind));
    }
  }
  return values;
}

}  // namespace kiln::ops
