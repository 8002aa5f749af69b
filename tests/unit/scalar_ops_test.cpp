// The scalar op table (ops/scalar_ops.hpp) against its formulas (ops/scalar_math.h): every entry
// names a function of the header with the signature the code generator will call, every float
// elementwise op has an entry, and every formula, evaluated on the host in float, matches an
// independent double-precision expectation at ordinary values and at NaN, +-Inf, -0 and denormals,
// with the NaN rules the header documents (PyTorch's).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "codegen/scalar_math_source.hpp"
#include "ops/op_families.hpp"
#include "ops/scalar_math.h"
#include "ops/scalar_ops.hpp"

namespace kiln::ops {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kDenormal = 1e-40f;
constexpr float kDenormMin = std::numeric_limits<float>::denorm_min();

// ---- the header's text and signatures ----------------------------------------------------------

struct Signature {
  std::string result;               // "T" or "bool"
  std::vector<std::string> params;  // parameter types: "T", "bool" or "float"
};

// `template <typename T> KILN_SCALAR_FN R kiln_name(params)` of the header, by name.
std::map<std::string, Signature> header_functions() {
  const std::string text(codegen::scalar_math_source());
  const std::regex declaration(
      R"(template <typename T>\s*KILN_SCALAR_FN\s+(\w+)\s+(kiln_\w+)\(([^)]*)\))");
  std::map<std::string, Signature> functions;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), declaration);
       it != std::sregex_iterator(); ++it) {
    Signature signature{(*it)[1], {}};
    std::stringstream params((*it)[3].str());
    std::string param;
    while (std::getline(params, param, ',')) {
      std::stringstream words(param);
      std::string type;
      words >> type;
      signature.params.push_back(type);
    }
    functions[(*it)[2]] = signature;
  }
  return functions;
}

TEST(ScalarOps, EmbeddedSourceIsTheHeaderByteForByte) {
  std::ifstream file(std::string(KILN_SOURCE_DIR) + "/src/ops/scalar_math.h", std::ios::binary);
  ASSERT_TRUE(file.good());
  std::stringstream text;
  text << file.rdbuf();
  EXPECT_EQ(codegen::scalar_math_source(), text.str());
}

TEST(ScalarOps, EveryEntryNamesAHeaderFunctionWithItsSignature) {
  const std::map<std::string, Signature> functions = header_functions();
  ASSERT_GT(functions.size(), 50u);
  for (const ScalarOp& op : scalar_ops()) {
    SCOPED_TRACE(std::string(op.op_type) + " -> " + std::string(op.function));
    const auto it = functions.find(std::string(op.function));
    ASSERT_NE(it, functions.end()) << "not in scalar_math.h";
    const Signature& signature = it->second;
    EXPECT_EQ(signature.result, op.result == ScalarResult::kBool ? "bool" : "T");
    ASSERT_EQ(signature.params.size(), static_cast<size_t>(op.arity) + op.attrs.size());
    for (int i = 0; i < op.arity; ++i) {
      const bool is_bool = op.inputs == ScalarInputs::kBool ||
                           (op.inputs == ScalarInputs::kConditionThenFloat && i == 0);
      EXPECT_EQ(signature.params[i], is_bool ? "bool" : "T") << "operand " << i;
    }
    for (size_t i = 0; i < op.attrs.size(); ++i) {
      EXPECT_EQ(signature.params[op.arity + i], "float") << "attribute " << op.attrs[i].name;
    }
  }
}

TEST(ScalarOps, EveryHeaderFormulaIsInTheTable) {
  std::set<std::string> named;
  for (const ScalarOp& op : scalar_ops()) named.insert(std::string(op.function));
  for (const auto& [name, signature] : header_functions()) {
    if (name == "kiln_infinity") continue;  // a helper: Clip's absent bounds
    EXPECT_TRUE(named.count(name)) << name << " is in scalar_math.h but no table entry uses it";
  }
}

TEST(ScalarOps, EveryEntryIsARegisteredOp) {
  for (const ScalarOp& op : scalar_ops()) {
    EXPECT_NE(find_op(op.op_type), nullptr) << op.op_type;
    EXPECT_GE(op.arity, 1);
    EXPECT_LE(op.arity, 3);
  }
}

TEST(ScalarOps, EveryFloatElementwiseOpHasAnEntry) {
  OpRegistry elementwise;
  for (const OpFamily& family : op_families()) {
    if (family.name == "elementwise") family.register_into(elementwise);
  }
  std::vector<std::string> names = elementwise.names();
  ASSERT_GT(names.size(), 60u);
  names.push_back("Identity");
  const AttributeMap defaults;
  for (const std::string& name : names) {
    if (name == "Cast" || name == "CastLike") continue;  // dtype conversions, not formulas
    const ScalarOp* op = find_scalar_op(name, defaults);
    ASSERT_NE(op, nullptr) << name;
    EXPECT_EQ(op->op_type, name);
  }
}

TEST(ScalarOps, FindSelectsTheFormulaByAttribute) {
  AttributeMap attrs;
  EXPECT_EQ(find_scalar_op("Gelu", attrs)->function, "kiln_gelu");
  attrs.set("approximate", Attribute::of_string("tanh"));
  EXPECT_EQ(find_scalar_op("Gelu", attrs)->function, "kiln_gelu_tanh");
  attrs.set("approximate", Attribute::of_string("none"));
  EXPECT_EQ(find_scalar_op("Gelu", attrs)->function, "kiln_gelu");
  attrs.set("approximate", Attribute::of_string("bogus"));
  EXPECT_EQ(find_scalar_op("Gelu", attrs), nullptr);
  attrs.set("approximate", Attribute::of_int(1));
  EXPECT_THROW(find_scalar_op("Gelu", attrs), Error);

  AttributeMap mod;
  EXPECT_EQ(find_scalar_op("Mod", mod)->function, "kiln_mod");
  mod.set("fmod", Attribute::of_int(1));
  EXPECT_EQ(find_scalar_op("Mod", mod)->function, "kiln_fmod");
  mod.set("fmod", Attribute::of_int(2));
  EXPECT_EQ(find_scalar_op("Mod", mod), nullptr);

  EXPECT_EQ(find_scalar_op("Conv", AttributeMap{}), nullptr);
  EXPECT_EQ(find_scalar_op("Cast", AttributeMap{}), nullptr);
  EXPECT_EQ(find_scalar_op("LeakyRelu", AttributeMap{})->function, "kiln_leaky_relu");
}

TEST(ScalarOps, AttributeValuesComeFromTheNodeElseTheTable) {
  AttributeMap attrs;
  const ScalarOp& selu = *find_scalar_op("Selu", attrs);
  EXPECT_EQ(scalar_attr_values(selu, attrs),
            (std::vector<float>{1.67326319217681884765625f, 1.05070102214813232421875f}));
  attrs.set("gamma", Attribute::of_float(2.5f));
  EXPECT_EQ(scalar_attr_values(selu, attrs),
            (std::vector<float>{1.67326319217681884765625f, 2.5f}));

  const ScalarOp& hard_sigmoid = *find_scalar_op("HardSigmoid", AttributeMap{});
  EXPECT_EQ(scalar_attr_values(hard_sigmoid, AttributeMap{}), (std::vector<float>{0.2f, 0.5f}));
  EXPECT_EQ(scalar_attr_values(*find_scalar_op("LeakyRelu", AttributeMap{}), AttributeMap{}),
            std::vector<float>{0.01f});

  AttributeMap is_inf;  // int flags travel as floats
  is_inf.set("detect_negative", Attribute::of_int(0));
  EXPECT_EQ(scalar_attr_values(*find_scalar_op("IsInf", is_inf), is_inf),
            (std::vector<float>{0.0f, 1.0f}));

  AttributeMap wrong;
  wrong.set("alpha", Attribute::of_string("0.1"));
  const ScalarOp& leaky = *find_scalar_op("LeakyRelu", wrong);
  try {
    scalar_attr_values(leaky, wrong);
    FAIL() << "a string alpha was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("LeakyRelu attribute 'alpha'"), std::string::npos)
        << e.what();
  }
}

// ---- every formula on the host, against an independent double-precision expectation -----------

using Operands = std::array<double, 3>;
using Attrs = std::vector<float>;
using Evaluate = std::function<double(const Operands&, const Attrs&)>;

struct Formula {
  Evaluate kiln;                        // the header's function with T = float
  Evaluate reference;                   // written here, in double
  std::vector<Attrs> extra_attrs = {};  // attribute sets besides the table's defaults
};

float f(double v) {
  return static_cast<float>(v);
}
double nan_or(bool any_nan, double value) {
  return any_nan ? std::numeric_limits<double>::quiet_NaN() : value;
}
double clamp_ref(double x, double lo, double hi) {
  return nan_or(std::isnan(x) || std::isnan(lo) || std::isnan(hi), std::min(std::max(x, lo), hi));
}

// An entry whose formula takes no attributes: `reference_expr` reads x (unary) or a and b.
#define KILN_UNARY(name, reference_expr)                                              \
  {                                                                                   \
    #name, Formula {                                                                  \
      [](const Operands& v, const Attrs&) -> double { return name<float>(f(v[0])); }, \
          [](const Operands& v, const Attrs&) -> double {                             \
            const double x = v[0];                                                    \
            return reference_expr;                                                    \
          }                                                                           \
    }                                                                                 \
  }
#define KILN_BINARY(name, reference_expr)                                                      \
  {                                                                                            \
    #name, Formula {                                                                           \
      [](const Operands& v, const Attrs&) -> double { return name<float>(f(v[0]), f(v[1])); }, \
          [](const Operands& v, const Attrs&) -> double {                                      \
            const double a = v[0], b = v[1];                                                   \
            return reference_expr;                                                             \
          }                                                                                    \
    }                                                                                          \
  }

const std::map<std::string, Formula>& formulas() {
  static const std::map<std::string, Formula> table = {
      KILN_UNARY(kiln_identity, x),
      KILN_UNARY(kiln_relu, std::isnan(x) ? x : std::max(x, 0.0)),
      {"kiln_leaky_relu",
       {[](const Operands& v, const Attrs& a) -> double {
          return kiln_leaky_relu<float>(f(v[0]), a[0]);
        },
        [](const Operands& v, const Attrs& a) -> double { return v[0] >= 0 ? v[0] : a[0] * v[0]; },
        {{0.2f}}}},
      {"kiln_thresholded_relu",
       {[](const Operands& v, const Attrs& a) -> double {
          return kiln_thresholded_relu<float>(f(v[0]), a[0]);
        },
        [](const Operands& v, const Attrs& a) -> double {
          return nan_or(std::isnan(v[0]), v[0] > a[0] ? v[0] : 0.0);
        },
        {{0.3f}, {-1.0f}}}},
      {"kiln_elu",
       {[](const Operands& v, const Attrs& a) -> double { return kiln_elu<float>(f(v[0]), a[0]); },
        [](const Operands& v, const Attrs& a) -> double {
          return v[0] >= 0 ? v[0] : a[0] * (std::exp(v[0]) - 1.0);
        },
        {{0.5f}}}},
      {"kiln_selu",
       {[](const Operands& v, const Attrs& a) -> double {
          return kiln_selu<float>(f(v[0]), a[0], a[1]);
        },
        [](const Operands& v, const Attrs& a) -> double {
          return v[0] >= 0 ? a[1] * v[0] : a[1] * (a[0] * std::exp(v[0]) - a[0]);
        },
        {{1.5f, 2.0f}}}},
      {"kiln_celu",
       {[](const Operands& v, const Attrs& a) -> double { return kiln_celu<float>(f(v[0]), a[0]); },
        [](const Operands& v, const Attrs& a) -> double {
          return std::max(0.0, v[0]) + std::min(0.0, a[0] * (std::exp(v[0] / a[0]) - 1.0)) +
                 (std::isnan(v[0]) ? v[0] : 0.0);
        },
        {{0.5f}}}},
      KILN_UNARY(kiln_sigmoid, 1.0 / (1.0 + std::exp(-x))),
      {"kiln_hard_sigmoid",
       {[](const Operands& v, const Attrs& a) -> double {
          return kiln_hard_sigmoid<float>(f(v[0]), a[0], a[1]);
        },
        [](const Operands& v, const Attrs& a) -> double {
          return clamp_ref(double(a[0]) * v[0] + double(a[1]), 0.0, 1.0);
        },
        {{0.5f, 0.25f}}}},
      KILN_UNARY(kiln_hard_swish, x * clamp_ref(x + 3.0, 0.0, 6.0) / 6.0),
      KILN_UNARY(kiln_tanh, std::tanh(x)),
      KILN_UNARY(kiln_erf, std::erf(x)),
      KILN_UNARY(kiln_gelu, x * 0.5 * std::erfc(-x / std::sqrt(2.0))),
      KILN_UNARY(kiln_gelu_tanh,
                 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)))),
      KILN_UNARY(kiln_softplus, x > 30 ? x : std::log1p(std::exp(x))),
      KILN_UNARY(kiln_softsign, x / (1.0 + std::fabs(x))),
      KILN_UNARY(kiln_mish, x * std::tanh(x > 30 ? x : std::log1p(std::exp(x)))),
      KILN_UNARY(kiln_neg, -x),
      KILN_UNARY(kiln_abs, std::fabs(x)),
      KILN_UNARY(kiln_sign, std::isnan(x) ? 0.0 : (x > 0) - (x < 0)),  // torch.sign(NaN) == 0
      KILN_UNARY(kiln_reciprocal, 1.0 / x),
      KILN_UNARY(kiln_sqrt, std::sqrt(x)),
      KILN_UNARY(kiln_exp, std::exp(x)),
      KILN_UNARY(kiln_log, std::log(x)),
      KILN_UNARY(kiln_floor, std::floor(x)),
      KILN_UNARY(kiln_ceil, std::ceil(x)),
      KILN_UNARY(kiln_round, std::nearbyint(x)),
      KILN_UNARY(kiln_sin, std::sin(x)),
      KILN_UNARY(kiln_cos, std::cos(x)),
      KILN_UNARY(kiln_tan, std::tan(x)),
      KILN_UNARY(kiln_asin, std::asin(x)),
      KILN_UNARY(kiln_acos, std::acos(x)),
      KILN_UNARY(kiln_atan, std::atan(x)),
      KILN_UNARY(kiln_sinh, std::sinh(x)),
      KILN_UNARY(kiln_cosh, std::cosh(x)),
      KILN_UNARY(kiln_asinh, std::asinh(x)),
      KILN_UNARY(kiln_acosh, std::acosh(x)),
      KILN_UNARY(kiln_atanh, std::atanh(x)),
      KILN_UNARY(kiln_is_nan, std::isnan(x) ? 1.0 : 0.0),
      {"kiln_is_inf",
       {[](const Operands& v, const Attrs& a) -> double {
          return kiln_is_inf<float>(f(v[0]), a[0], a[1]);
        },
        [](const Operands& v, const Attrs& a) -> double {
          return std::isinf(v[0]) && (v[0] > 0 ? a[1] != 0 : a[0] != 0) ? 1.0 : 0.0;
        },
        {{0.0f, 1.0f}, {1.0f, 0.0f}, {0.0f, 0.0f}}}},
      KILN_BINARY(kiln_add, a + b),
      KILN_BINARY(kiln_sub, a - b),
      KILN_BINARY(kiln_mul, a * b),
      KILN_BINARY(kiln_div, a / b),
      KILN_BINARY(kiln_mean, (a + b) / 2),
      KILN_BINARY(kiln_pow, std::pow(a, b)),
      KILN_BINARY(kiln_fmod, std::fmod(a, b)),
      // Python's float % (CPython's algorithm): the remainder takes the divisor's sign.
      KILN_BINARY(kiln_mod, std::fmod(a, b) != 0 && (std::fmod(a, b) < 0) != (b < 0)
                                ? std::fmod(a, b) + b
                                : std::fmod(a, b)),
      KILN_BINARY(kiln_prelu, a >= 0 || std::isnan(a) ? a : a * b),
      KILN_BINARY(kiln_min, nan_or(std::isnan(a) || std::isnan(b), std::min(a, b))),
      KILN_BINARY(kiln_max, nan_or(std::isnan(a) || std::isnan(b), std::max(a, b))),
      KILN_BINARY(kiln_equal, a == b),
      KILN_BINARY(kiln_less, a < b),
      KILN_BINARY(kiln_greater, a > b),
      KILN_BINARY(kiln_less_or_equal, a <= b),
      KILN_BINARY(kiln_greater_or_equal, a >= b),
      {"kiln_and",
       {[](const Operands& v, const Attrs&) -> double {
          return kiln_and<float>(v[0] != 0, v[1] != 0);
        },
        [](const Operands& v, const Attrs&) -> double { return v[0] * v[1]; }}},
      {"kiln_or",
       {[](const Operands& v, const Attrs&) -> double {
          return kiln_or<float>(v[0] != 0, v[1] != 0);
        },
        [](const Operands& v, const Attrs&) -> double { return std::max(v[0], v[1]); }}},
      {"kiln_xor",
       {[](const Operands& v, const Attrs&) -> double {
          return kiln_xor<float>(v[0] != 0, v[1] != 0);
        },
        [](const Operands& v, const Attrs&) -> double { return std::fabs(v[0] - v[1]); }}},
      {"kiln_not",
       {[](const Operands& v, const Attrs&) -> double { return kiln_not<float>(v[0] != 0); },
        [](const Operands& v, const Attrs&) -> double { return 1.0 - v[0]; }}},
      {"kiln_where",
       {[](const Operands& v, const Attrs&) -> double {
          return kiln_where<float>(v[0] != 0, f(v[1]), f(v[2]));
        },
        [](const Operands& v, const Attrs&) -> double { return v[0] != 0 ? v[1] : v[2]; }}},
      {"kiln_clip",
       {[](const Operands& v, const Attrs&) -> double {
          return kiln_clip<float>(f(v[0]), f(v[1]), f(v[2]));
        },
        [](const Operands& v, const Attrs&) -> double { return clamp_ref(v[0], v[1], v[2]); }}},
  };
  return table;
}
#undef KILN_UNARY
#undef KILN_BINARY

// Float inputs: the specials first, then ordinary values.
const std::vector<double>& float_values() {
  static const std::vector<double> values = [] {
    std::vector<float> v = {kNaN,    kInf,  -kInf, -0.0f, 0.0f,  kDenormal, -kDenormal,
                            -100.0f, -3.7f, -2.5f, -1.0f, -0.5f, -1e-3f,    0.25f,
                            0.5f,    0.9f,  1.5f,  2.5f,  7.0f,  100.0f};
    return std::vector<double>(v.begin(), v.end());
  }();
  return values;
}

// The float rounding of a double expectation, with overflow to infinity.
double as_float(double want) {
  if (std::isnan(want) || std::isinf(want)) return want;
  if (std::fabs(want) > std::numeric_limits<float>::max()) return want > 0 ? kInf : -kInf;
  return static_cast<float>(want);
}

// got (computed in float) against want (double): NaN where want is NaN, the same infinity, a
// nonzero value of want's sign where want is a float denormal (never flushed), else within
// 1e-5 * max(1, |want|).
::testing::AssertionResult matches(double got, double want) {
  const double rounded = as_float(want);
  if (std::isnan(rounded)) {
    if (std::isnan(got)) return ::testing::AssertionSuccess();
  } else if (std::isinf(rounded)) {
    if (got == rounded) return ::testing::AssertionSuccess();
  } else if (rounded != 0 && std::fabs(rounded) < std::numeric_limits<float>::min()) {
    if (got != 0 && std::signbit(got) == std::signbit(rounded) &&
        std::fabs(got - want) <= 0.05 * std::fabs(want) + 4 * kDenormMin) {
      return ::testing::AssertionSuccess();
    }
  } else if (std::fabs(got - want) <= 1e-5 * std::max(1.0, std::fabs(want))) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << got << ", want " << want;
}

std::string describe(const ScalarOp& op, const Operands& v, int arity, const Attrs& attrs) {
  std::ostringstream s;
  s.precision(9);
  s << op.function << "(";
  for (int i = 0; i < arity; ++i) s << (i ? ", " : "") << v[i];
  for (float a : attrs) s << ", attr " << a;
  s << ")";
  return s.str();
}

TEST(ScalarMath, EveryTableFunctionHasAHostCheck) {
  for (const ScalarOp& op : scalar_ops()) {
    EXPECT_TRUE(formulas().count(std::string(op.function))) << op.function;
  }
}

TEST(ScalarMath, EveryEntryMatchesItsReferenceAtOrdinaryAndSpecialValues) {
  const std::vector<double>& values = float_values();
  const std::vector<double> bools = {0.0, 1.0};
  int checked = 0;
  for (const ScalarOp& op : scalar_ops()) {
    const auto it = formulas().find(std::string(op.function));
    if (it == formulas().end()) continue;  // reported by EveryTableFunctionHasAHostCheck
    const Formula& formula = it->second;
    std::vector<Attrs> attr_sets = {scalar_attr_values(op, AttributeMap{})};
    for (const Attrs& extra : formula.extra_attrs) attr_sets.push_back(extra);
    // Operand value lists: bools for bool operands; Clip's bounds from a short list.
    std::vector<std::vector<double>> lists;
    for (int i = 0; i < op.arity; ++i) {
      const bool is_bool = op.inputs == ScalarInputs::kBool ||
                           (op.inputs == ScalarInputs::kConditionThenFloat && i == 0);
      if (is_bool) {
        lists.push_back(bools);
      } else if (op.arity == 3 && i > 0) {
        lists.push_back({double(kNaN), double(-kInf), double(kInf), -1.0, -0.0, 0.0, 0.5, 1.0});
      } else {
        lists.push_back(values);
      }
    }
    for (const Attrs& attrs : attr_sets) {
      Operands v{};
      // Every combination of the operand lists.
      std::function<void(int)> combine = [&](int i) {
        if (i == op.arity) {
          const double got = formula.kiln(v, attrs);
          const double want = formula.reference(v, attrs);
          EXPECT_TRUE(matches(got, want)) << describe(op, v, op.arity, attrs);
          ++checked;
          return;
        }
        for (double value : lists[i]) {
          v[i] = value;
          combine(i + 1);
        }
      };
      combine(0);
    }
  }
  EXPECT_GT(checked, 9000);
}

// ---- the NaN, infinity and denormal rules, spelled out ---------------------------------------

TEST(ScalarMath, NaNPropagatesThroughActivationsAndSelections) {
  EXPECT_TRUE(std::isnan(kiln_relu<float>(kNaN)));
  EXPECT_TRUE(std::isnan(kiln_leaky_relu<float>(kNaN, 0.01f)));
  EXPECT_TRUE(std::isnan(kiln_prelu<float>(kNaN, 0.25f)));
  EXPECT_TRUE(std::isnan(kiln_thresholded_relu<float>(kNaN, 1.0f)));
  EXPECT_TRUE(std::isnan(kiln_elu<float>(kNaN, 1.0f)));
  EXPECT_TRUE(std::isnan(kiln_selu<float>(kNaN, 1.67f, 1.05f)));
  EXPECT_TRUE(std::isnan(kiln_celu<float>(kNaN, 1.0f)));
  EXPECT_TRUE(std::isnan(kiln_hard_sigmoid<float>(kNaN, 0.2f, 0.5f)));
  EXPECT_TRUE(std::isnan(kiln_hard_swish<float>(kNaN)));
  EXPECT_TRUE(std::isnan(kiln_sigmoid<float>(kNaN)));
  EXPECT_TRUE(std::isnan(kiln_softplus<float>(kNaN)));
  for (float other : {1.0f, -kInf, kInf}) {
    EXPECT_TRUE(std::isnan(kiln_max<float>(kNaN, other)));
    EXPECT_TRUE(std::isnan(kiln_max<float>(other, kNaN)));
    EXPECT_TRUE(std::isnan(kiln_min<float>(kNaN, other)));
    EXPECT_TRUE(std::isnan(kiln_min<float>(other, kNaN)));
  }
  EXPECT_TRUE(std::isnan(kiln_clip<float>(kNaN, -1.0f, 1.0f)));
  EXPECT_TRUE(std::isnan(kiln_clip<float>(kNaN, -kiln_infinity<float>(), kiln_infinity<float>())));
  EXPECT_EQ(kiln_sign<float>(kNaN), 0.0f);  // torch.sign(NaN) == 0
  EXPECT_FALSE(kiln_equal<float>(kNaN, kNaN));
  EXPECT_FALSE(kiln_less<float>(kNaN, 1.0f));
  EXPECT_TRUE(kiln_is_nan<float>(kNaN));
}

TEST(ScalarMath, InfinitiesFollowTorch) {
  EXPECT_EQ(kiln_sigmoid<float>(-kInf), 0.0f);
  EXPECT_EQ(kiln_sigmoid<float>(kInf), 1.0f);
  EXPECT_EQ(kiln_hard_sigmoid<float>(kInf, 0.2f, 0.5f), 1.0f);
  EXPECT_EQ(kiln_hard_sigmoid<float>(-kInf, 0.2f, 0.5f), 0.0f);
  EXPECT_EQ(kiln_hard_swish<float>(kInf), kInf);
  EXPECT_TRUE(std::isnan(kiln_hard_swish<float>(-kInf)));  // -inf * 0, as torch
  EXPECT_EQ(kiln_gelu<float>(kInf), kInf);
  EXPECT_TRUE(std::isnan(kiln_gelu<float>(-kInf)));
  EXPECT_EQ(kiln_gelu_tanh<float>(kInf), kInf);
  EXPECT_EQ(kiln_elu<float>(-kInf, 0.5f), -0.5f);
  EXPECT_EQ(kiln_softplus<float>(kInf), kInf);
  EXPECT_EQ(kiln_softplus<float>(-kInf), 0.0f);
  EXPECT_EQ(kiln_clip<float>(kInf, -1.0f, 1.0f), 1.0f);
  EXPECT_EQ(kiln_clip<float>(5.0f, 2.0f, 1.0f), 1.0f);  // min > max gives max (ONNX)
  EXPECT_EQ(kiln_mod<float>(-1.0f, kInf), kInf);        // torch.remainder(-1, inf)
  EXPECT_EQ(kiln_fmod<float>(-1.0f, kInf), -1.0f);
  EXPECT_EQ(kiln_infinity<float>(), kInf);
  EXPECT_EQ(kiln_infinity<double>(), std::numeric_limits<double>::infinity());
  EXPECT_TRUE(kiln_is_inf<float>(-kInf, 1.0f, 0.0f));
  EXPECT_FALSE(kiln_is_inf<float>(kInf, 1.0f, 0.0f));
}

TEST(ScalarMath, SignedZerosAndRounding) {
  EXPECT_TRUE(std::signbit(kiln_max<float>(-0.0f, 0.0f)));  // ties return the first operand
  EXPECT_FALSE(std::signbit(kiln_max<float>(0.0f, -0.0f)));
  EXPECT_TRUE(std::signbit(kiln_min<float>(-0.0f, 0.0f)));
  EXPECT_FALSE(std::signbit(kiln_abs<float>(-0.0f)));
  EXPECT_FALSE(std::signbit(kiln_sign<float>(-0.0f)));
  EXPECT_EQ(kiln_round<float>(2.5f), 2.0f);
  EXPECT_EQ(kiln_round<float>(3.5f), 4.0f);
  EXPECT_EQ(kiln_round<float>(-2.5f), -2.0f);
  EXPECT_TRUE(std::signbit(kiln_round<float>(-0.5f)));
  EXPECT_EQ(kiln_mod<float>(-5.5f, 2.0f), 0.5f);
  EXPECT_EQ(kiln_mod<float>(5.5f, -2.0f), -0.5f);
  EXPECT_EQ(kiln_fmod<float>(-5.5f, 2.0f), -1.5f);
}

TEST(ScalarMath, SquaresAndCubesAreProductsWithPowsSpecialValues) {
  std::vector<double> values = float_values();
  values.insert(values.end(), {2.0, 3.0, -7.5, 1e20, -1e20, 1e-20});
  for (double value : values) {
    const float x = static_cast<float>(value);
    for (float exponent : {2.0f, 3.0f}) {
      const float got = kiln_pow<float>(x, exponent);
      const float product = exponent == 2.0f ? x * x : x * x * x;
      const float want = std::pow(x, exponent);
      SCOPED_TRACE(testing::Message() << "pow(" << x << ", " << exponent << ")");
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got));
        continue;
      }
      EXPECT_EQ(got, product);  // the product itself, not pow's rounding of it
      EXPECT_EQ(std::signbit(got), std::signbit(want));
      EXPECT_EQ(std::isinf(got), std::isinf(want));
      if (std::isfinite(want)) {
        EXPECT_NEAR(got, want, 3e-7 * std::fabs(want) + 1.5e-45);
      }
    }
  }
  EXPECT_EQ(kiln_pow<float>(2.0f, 0.5f), std::pow(2.0f, 0.5f));  // other exponents stay pow
  EXPECT_EQ(kiln_pow<double>(3.0, 3.0), 27.0);
}

TEST(ScalarMath, DenormalsAreNotFlushed) {
  EXPECT_EQ(kiln_relu<float>(kDenormal), kDenormal);
  EXPECT_EQ(kiln_identity<float>(kDenormal), kDenormal);
  EXPECT_EQ(kiln_add<float>(kDenormal, 0.0f), kDenormal);
  EXPECT_NE(kiln_mul<float>(1e-20f, 1e-20f), 0.0f);
  EXPECT_EQ(kiln_neg<float>(kDenormal), -kDenormal);
  EXPECT_EQ(kiln_max<float>(kDenormal, 0.0f), kDenormal);
  EXPECT_EQ(kiln_clip<float>(kDenormal, 0.0f, 1.0f), kDenormal);
  EXPECT_LT(kiln_leaky_relu<float>(-kDenormal, 0.5f), 0.0f);
  // Overflow-free Sigmoid and Softplus keep tiny results instead of rounding through exp(100).
  EXPECT_GT(kiln_sigmoid<float>(-100.0f), 0.0f);
  EXPECT_GT(kiln_softplus<float>(-100.0f), 0.0f);
  EXPECT_LT(kiln_mish<float>(-100.0f), 0.0f);
}

TEST(ScalarMath, ExponentialLinearUnitsUseExpm1) {
  // exp(x) - 1 in float is 0 for |x| < 2^-25; expm1 keeps x.
  EXPECT_FLOAT_EQ(kiln_elu<float>(-1e-10f, 1.0f), -1e-10f);
  EXPECT_FLOAT_EQ(kiln_celu<float>(-1e-10f, 1.0f), -1e-10f);
  EXPECT_FLOAT_EQ(kiln_selu<float>(-1e-10f, 2.0f, 3.0f), -6e-10f);
}

TEST(ScalarMath, DoublePrecisionInstantiates) {
  EXPECT_DOUBLE_EQ(kiln_elu<double>(-1e-300, 1.0f), -1e-300);
  EXPECT_TRUE(std::isnan(kiln_max<double>(1.0, std::nan(""))));
  EXPECT_DOUBLE_EQ(kiln_gelu<double>(0.0), 0.0);
  EXPECT_DOUBLE_EQ(kiln_sigmoid<double>(-800.0), std::exp(-800.0) / (1 + std::exp(-800.0)));
}

}  // namespace
}  // namespace kiln::ops
