// Tests of the elementwise, shape and data movement ops: CPU kernels against naive references
// written here (or small expectations checked once against onnxruntime/numpy, as noted), and the
// infer functions with dynamic dims and unknown values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/float8.hpp"
#include "base/half.hpp"
#include "ops/op_registry.hpp"

namespace kiln {
namespace {

using cpu::run_node_on_cpu;

// ---- helpers ------------------------------------------------------------------------------

void set_element(HostTensor& t, int64_t i, double v) {
  switch (t.dtype) {
    case DType::kFloat32:
      t.data<float>()[i] = static_cast<float>(v);
      break;
    case DType::kFloat64:
      t.data<double>()[i] = v;
      break;
    case DType::kFloat16:
      t.data<uint16_t>()[i] = float_to_half(static_cast<float>(v));
      break;
    case DType::kBFloat16:
      t.data<uint16_t>()[i] = float_to_bfloat16(static_cast<float>(v));
      break;
    case DType::kInt8:
      t.data<int8_t>()[i] = static_cast<int8_t>(v);
      break;
    case DType::kUInt8:
      t.data<uint8_t>()[i] = static_cast<uint8_t>(v);
      break;
    case DType::kInt16:
      t.data<int16_t>()[i] = static_cast<int16_t>(v);
      break;
    case DType::kUInt16:
      t.data<uint16_t>()[i] = static_cast<uint16_t>(v);
      break;
    case DType::kUInt32:
      t.data<uint32_t>()[i] = static_cast<uint32_t>(v);
      break;
    case DType::kUInt64:
      t.data<uint64_t>()[i] = static_cast<uint64_t>(v);
      break;
    case DType::kInt32:
      t.data<int32_t>()[i] = static_cast<int32_t>(v);
      break;
    case DType::kInt64:
      t.data<int64_t>()[i] = static_cast<int64_t>(v);
      break;
    case DType::kBool:
      t.data<uint8_t>()[i] = v != 0 ? 1 : 0;
      break;
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2:
    case DType::kFloat8E5M2FNUZ:
      t.data<uint8_t>()[i] = float_to_float8(static_cast<float>(v), *float8_format(t.dtype), true);
      break;
    case DType::kFloat8E8M0:
    case DType::kFloat4E2M1:
    case DType::kUInt4:
    case DType::kInt4:
    case DType::kUInt2:
    case DType::kInt2:
      t.data<uint8_t>()[i] = scalar_bytes(t.dtype, v)[0];
      break;
  }
}

HostTensor tensor(DType dtype, Shape shape, const std::vector<double>& values) {
  HostTensor t(dtype, std::move(shape));
  EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
  for (size_t i = 0; i < values.size(); ++i) set_element(t, static_cast<int64_t>(i), values[i]);
  return t;
}

HostTensor f32(Shape shape, const std::vector<double>& values) {
  return tensor(DType::kFloat32, std::move(shape), values);
}

HostTensor i64(Shape shape, const std::vector<int64_t>& values) {
  HostTensor t(DType::kInt64, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) t.data<int64_t>()[i] = values[i];
  return t;
}

HostTensor i64v(const std::vector<int64_t>& values) {
  return i64({static_cast<int64_t>(values.size())}, values);
}

HostTensor random_tensor(DType dtype, Shape shape, std::mt19937& rng, double lo, double hi) {
  HostTensor t(dtype, std::move(shape));
  std::uniform_real_distribution<double> dist(lo, hi);
  const bool integral = !is_floating(dtype);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = dist(rng);
    set_element(t, i, integral ? std::round(v) : v);
  }
  return t;
}

double at(const HostTensor& t, int64_t i) {
  return read_as_double(view_of(t), i);
}

std::vector<double> values_of(const HostTensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) out[static_cast<size_t>(i)] = at(t, i);
  return out;
}

std::vector<HostTensor> run(const std::string& op, const AttributeMap& attrs,
                            std::vector<const HostTensor*> inputs, size_t num_outputs = 1) {
  return run_node_on_cpu("node_" + op, op, attrs, inputs, num_outputs);
}

std::vector<HostTensor> run_named(const std::string& name, const std::string& op,
                                  const AttributeMap& attrs, std::vector<const HostTensor*> inputs,
                                  size_t num_outputs = 1) {
  return run_node_on_cpu(name, op, attrs, inputs, num_outputs);
}

HostTensor run1(const std::string& op, const AttributeMap& attrs,
                std::vector<const HostTensor*> inputs) {
  return run(op, attrs, std::move(inputs)).at(0);
}

AttributeMap attrs_of(std::initializer_list<std::pair<std::string, Attribute>> items) {
  AttributeMap map;
  for (const auto& [name, value] : items) map.set(name, value);
  return map;
}

// Flat index into a tensor of shape `in` for output flat index `o` under numpy broadcasting
// (written with division on purpose: an independent, naive reference).
int64_t broadcast_source_index(const Shape& in, const Shape& out, int64_t o) {
  int64_t index = 0, stride = 1;
  for (size_t k = 0; k < out.size(); ++k) {
    const size_t d = out.size() - 1 - k;
    const int64_t coord = o % out[d];
    o /= out[d];
    if (k < in.size()) {
      const size_t di = in.size() - 1 - k;
      if (in[di] != 1) index += coord * stride;
      stride *= in[di];
    }
  }
  return index;
}

Shape naive_broadcast(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t k = 0; k < out.size(); ++k) {
    const int64_t da = k < a.size() ? a[a.size() - 1 - k] : 1;
    const int64_t db = k < b.size() ? b[b.size() - 1 - k] : 1;
    out[out.size() - 1 - k] = da == 1 ? db : da;  // a 1 stretches, even to 0
  }
  return out;
}

void expect_near_all(const HostTensor& got, const std::vector<double>& want, double rel,
                     double abs_tol, const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = at(got, static_cast<int64_t>(i));
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g)) << what << " element " << i;
    } else {
      EXPECT_NEAR(g, want[i], abs_tol + rel * std::fabs(want[i])) << what << " element " << i;
    }
  }
}

void expect_values(const HostTensor& got, const std::vector<double>& want,
                   const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(at(got, static_cast<int64_t>(i)), want[i]) << what << " element " << i;
  }
}

// Runs `fn` and returns the kiln::Error it throws (fails the test if it does not throw).
Error error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a kiln::Error";
  return Error(ErrorCode::kOk, "");
}

// ---- elementwise: unary -------------------------------------------------------------------

struct UnaryCase {
  std::string op;
  AttributeMap attrs;
  std::function<double(double)> reference;
  double lo, hi;
};

TEST(CpuTensorElementwise, UnaryFloatOpsMatchReference) {
  const double pi = 3.14159265358979323846;
  auto sigmoid = [](double x) { return 1 / (1 + std::exp(-x)); };
  auto softplus = [](double x) { return std::log(1 + std::exp(x)); };
  std::vector<UnaryCase> cases = {
      {"Relu", {}, [](double x) { return x > 0 ? x : 0; }, -3, 3},
      {"LeakyRelu", attrs_of({{"alpha", Attribute::of_float(0.1f)}}),
       [](double x) { return x >= 0 ? x : double{0.1f} * x; }, -3, 3},
      {"LeakyRelu", {}, [](double x) { return x >= 0 ? x : double{0.01f} * x; }, -3, 3},
      {"Sigmoid", {}, sigmoid, -20, 20},
      {"Tanh", {}, [](double x) { return std::tanh(x); }, -5, 5},
      {"Gelu", {}, [](double x) { return x * 0.5 * (1 + std::erf(x / std::sqrt(2.0))); }, -4, 4},
      {"Gelu", attrs_of({{"approximate", Attribute::of_string("tanh")}}),
       [pi](double x) {
         return 0.5 * x * (1 + std::tanh(std::sqrt(2 / pi) * (x + 0.044715 * x * x * x)));
       },
       -4, 4},
      {"Erf", {}, [](double x) { return std::erf(x); }, -3, 3},
      {"HardSigmoid",
       {},
       [](double x) { return std::min(1.0, std::max(0.0, double{0.2f} * x + 0.5)); },
       -4,
       4},
      {"HardSigmoid",
       attrs_of({{"alpha", Attribute::of_float(0.5f)}, {"beta", Attribute::of_float(0.25f)}}),
       [](double x) { return std::min(1.0, std::max(0.0, 0.5 * x + 0.25)); }, -4, 4},
      {"HardSwish",
       {},
       [](double x) { return x * std::min(1.0, std::max(0.0, x / 6 + 0.5)); },
       -5,
       5},
      {"Sqrt", {}, [](double x) { return std::sqrt(x); }, 0, 10},
      {"Reciprocal", {}, [](double x) { return 1 / x; }, 0.5, 10},
      {"Neg", {}, [](double x) { return -x; }, -5, 5},
      {"Exp", {}, [](double x) { return std::exp(x); }, -5, 5},
      {"Log", {}, [](double x) { return std::log(x); }, 0.01, 10},
      {"Abs", {}, [](double x) { return std::fabs(x); }, -5, 5},
      {"Floor", {}, [](double x) { return std::floor(x); }, -5, 5},
      {"Ceil", {}, [](double x) { return std::ceil(x); }, -5, 5},
      {"Sin", {}, [](double x) { return std::sin(x); }, -5, 5},
      {"Cos", {}, [](double x) { return std::cos(x); }, -5, 5},
      {"Tan", {}, [](double x) { return std::tan(x); }, -1, 1},
      {"Atan", {}, [](double x) { return std::atan(x); }, -5, 5},
      {"Softplus", {}, softplus, -10, 10},
      {"Softsign", {}, [](double x) { return x / (1 + std::fabs(x)); }, -5, 5},
      {"Elu", attrs_of({{"alpha", Attribute::of_float(0.5f)}}),
       [](double x) { return x >= 0 ? x : 0.5 * (std::exp(x) - 1); }, -4, 4},
      {"Selu",
       {},
       [](double x) {
         // ONNX's defaults are these float32 values.
         return 1.05070102214813232421875 *
                (x > 0 ? x : 1.67326319217681884765625 * (std::exp(x) - 1));
       },
       -4,
       4},
      {"Celu",
       {},
       [](double x) { return std::max(0.0, x) + std::min(0.0, std::exp(x) - 1); },
       -4,
       4},
      {"Mish", {}, [softplus](double x) { return x * std::tanh(softplus(x)); }, -6, 6},
      {"ThresholdedRelu", attrs_of({{"alpha", Attribute::of_float(0.5f)}}),
       [](double x) { return x > 0.5 ? x : 0; }, -2, 2},
      {"Sign", {}, [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }, -3, 3},
  };
  std::mt19937 rng(7);
  for (const UnaryCase& c : cases) {
    for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
      const HostTensor x = random_tensor(dtype, {3, 17}, rng, c.lo, c.hi);
      const HostTensor y = run1(c.op, c.attrs, {&x});
      EXPECT_EQ(y.dtype, dtype) << c.op;
      EXPECT_EQ(y.shape, x.shape) << c.op;
      std::vector<double> want;
      for (double v : values_of(x)) want.push_back(c.reference(v));
      const double rel = dtype == DType::kFloat32 ? 2e-6 : 1e-12;
      expect_near_all(y, want, rel, rel, c.op + " " + std::string(dtype_name(dtype)));
    }
  }
}

TEST(CpuTensorElementwise, RoundIsHalfToEven) {
  // Expected values checked against onnxruntime.
  const HostTensor x = f32({6}, {0.5, 1.5, 2.5, -0.5, -1.5, 2.4});
  const HostTensor y = run1("Round", {}, {&x});
  expect_values(y, {0, 2, 2, -0.0, -2, 2}, "Round");
  EXPECT_TRUE(std::signbit(y.data<float>()[3]));
}

TEST(CpuTensorElementwise, PredicatesAndNotReturnBool) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const HostTensor x = f32({5}, {1.0, nan, inf, -inf, -2.0});
  const HostTensor is_nan = run1("IsNaN", {}, {&x});
  EXPECT_EQ(is_nan.dtype, DType::kBool);
  expect_values(is_nan, {0, 1, 0, 0, 0}, "IsNaN");
  expect_values(run1("IsInf", {}, {&x}), {0, 0, 1, 1, 0}, "IsInf");
  expect_values(run1("IsInf", attrs_of({{"detect_negative", Attribute::of_int(0)}}), {&x}),
                {0, 0, 1, 0, 0}, "IsInf positive only");
  const HostTensor b = tensor(DType::kBool, {3}, {1, 0, 1});
  const HostTensor not_b = run1("Not", {}, {&b});
  EXPECT_EQ(not_b.dtype, DType::kBool);
  expect_values(not_b, {0, 1, 0}, "Not");
}

TEST(CpuTensorElementwise, IntegerUnaryOps) {
  const HostTensor x = i64({5}, {-7, 0, 5, std::numeric_limits<int64_t>::min(), -1});
  expect_values(run1("Relu", {}, {&x}), {0, 0, 5, 0, 0}, "Relu int64");
  expect_values(run1("Sign", {}, {&x}), {-1, 0, 1, -1, -1}, "Sign int64");
  const HostTensor neg = run1("Neg", {}, {&x});
  EXPECT_EQ(neg.data<int64_t>()[0], 7);
  EXPECT_EQ(neg.data<int64_t>()[3], std::numeric_limits<int64_t>::min());  // wraps, no UB
  const HostTensor y = tensor(DType::kInt32, {3}, {-3, 4, -5});
  expect_values(run1("Abs", {}, {&y}), {3, 4, 5}, "Abs int32");
}

// ---- elementwise: binary with broadcasting -----------------------------------------------

struct BinaryCase {
  std::string op;
  std::function<double(double, double)> reference;
  double lo, hi;
};

TEST(CpuTensorElementwise, BinaryBroadcastingOfOddShapes) {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 1, 5}, {4, 1}},    {{2, 3}, {}},
      {{}, {2, 3}},           {{1}, {2, 3, 4}},
      {{2, 1, 4}, {1, 3, 1}}, {{5, 7}, {5, 7}},
      {{4, 1}, {4, 6}},       {{2, 3, 1, 5}, {3, 4, 1}},
      {{1, 1}, {1}},          {{6, 1, 1, 1}, {1, 2, 1, 3}},
      {{0, 3}, {1, 3}},
  };
  const std::vector<BinaryCase> cases = {
      {"Add", [](double a, double b) { return a + b; }, -5, 5},
      {"Sub", [](double a, double b) { return a - b; }, -5, 5},
      {"Mul", [](double a, double b) { return a * b; }, -5, 5},
      {"Div", [](double a, double b) { return a / b; }, 0.5, 5},
      {"Pow", [](double a, double b) { return std::pow(a, b); }, 0.5, 3},
      {"Min", [](double a, double b) { return std::min(a, b); }, -5, 5},
      {"Max", [](double a, double b) { return std::max(a, b); }, -5, 5},
      {"PRelu", [](double a, double b) { return a < 0 ? a * b : a; }, -5, 5},
  };
  std::mt19937 rng(11);
  for (const auto& [sa, sb] : shapes) {
    for (const BinaryCase& c : cases) {
      const HostTensor a = random_tensor(DType::kFloat32, sa, rng, c.lo, c.hi);
      const HostTensor b = random_tensor(DType::kFloat32, sb, rng, c.lo, c.hi);
      const HostTensor y = run1(c.op, {}, {&a, &b});
      const Shape out = naive_broadcast(sa, sb);
      ASSERT_EQ(y.shape, out) << c.op << " " << shape_to_string(sa) << " " << shape_to_string(sb);
      std::vector<double> want(static_cast<size_t>(shape_numel(out)));
      for (int64_t o = 0; o < shape_numel(out); ++o) {
        want[static_cast<size_t>(o)] = c.reference(at(a, broadcast_source_index(sa, out, o)),
                                                   at(b, broadcast_source_index(sb, out, o)));
      }
      expect_near_all(y, want, 2e-6, 1e-6,
                      c.op + " " + shape_to_string(sa) + " " + shape_to_string(sb));
    }
  }
}

TEST(CpuTensorElementwise, Int64Arithmetic) {
  std::mt19937 rng(3);
  const HostTensor a = random_tensor(DType::kInt64, {4, 5}, rng, -1000, 1000);
  HostTensor b = random_tensor(DType::kInt64, {5}, rng, -50, 50);
  for (int64_t i = 0; i < b.numel(); ++i) {
    if (b.data<int64_t>()[i] == 0) b.data<int64_t>()[i] = 7;
  }
  const HostTensor add = run1("Add", {}, {&a, &b});
  const HostTensor sub = run1("Sub", {}, {&a, &b});
  const HostTensor mul = run1("Mul", {}, {&a, &b});
  const HostTensor div = run1("Div", {}, {&a, &b});
  EXPECT_EQ(div.dtype, DType::kInt64);
  for (int64_t i = 0; i < 20; ++i) {
    const int64_t x = a.data<int64_t>()[i], y = b.data<int64_t>()[i % 5];
    EXPECT_EQ(add.data<int64_t>()[i], x + y);
    EXPECT_EQ(sub.data<int64_t>()[i], x - y);
    EXPECT_EQ(mul.data<int64_t>()[i], x * y);
    // Truncation toward zero, computed without integer division.
    const double q = static_cast<double>(x) / static_cast<double>(y);
    EXPECT_EQ(div.data<int64_t>()[i], static_cast<int64_t>(std::trunc(q)));
  }
  // Mod: fmod=0 takes the divisor's sign (values checked against onnxruntime), fmod=1 the
  // dividend's.
  const HostTensor m1 = i64({3}, {-5, 5, -5});
  const HostTensor m2 = i64({3}, {3, -3, -3});
  expect_values(run1("Mod", {}, {&m1, &m2}), {1, -1, -2}, "Mod int64");
  expect_values(run1("Mod", attrs_of({{"fmod", Attribute::of_int(1)}}), {&m1, &m2}), {-2, 2, -2},
                "Mod fmod int64");
  const HostTensor f1 = f32({2}, {-5.5, 5.5});
  const HostTensor f2 = f32({2}, {2, -2});
  expect_values(run1("Mod", attrs_of({{"fmod", Attribute::of_int(1)}}), {&f1, &f2}), {-1.5, 1.5},
                "Mod fmod float");
  // int32 too, including INT32_MIN / -1 (wraps instead of trapping).
  const HostTensor c = tensor(DType::kInt32, {3}, {-7, 7, -2147483648.0});
  const HostTensor d = tensor(DType::kInt32, {3}, {2, -2, -1});
  const HostTensor q = run1("Div", {}, {&c, &d});
  EXPECT_EQ(q.dtype, DType::kInt32);
  expect_values(q, {-3, -3, -2147483648.0}, "Div int32");
  expect_values(run1("Sum", {}, {&c, &d, &d}), {-3, 3, 2147483646.0}, "Sum int32 (wrapping)");
}

TEST(CpuTensorElementwise, IntegerDivisionByZeroIsAnErrorNamingTheNode) {
  const HostTensor a = i64({3}, {1, 2, 3});
  const HostTensor b = i64({3}, {1, 0, 1});
  for (const char* op : {"Div", "Mod"}) {
    const Error e = error_of([&] { run_named("my_div", op, {}, {&a, &b}); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("my_div"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("division by zero"), std::string::npos) << e.what();
  }
  // Floats divide by zero to inf.
  const HostTensor x = f32({1}, {1});
  const HostTensor z = f32({1}, {0});
  EXPECT_TRUE(std::isinf(run1("Div", {}, {&x, &z}).data<float>()[0]));
}

TEST(CpuTensorElementwise, ComparisonsReturnBool) {
  std::mt19937 rng(5);
  const std::vector<std::pair<std::string, std::function<bool(double, double)>>> cases = {
      {"Equal", [](double a, double b) { return a == b; }},
      {"Less", [](double a, double b) { return a < b; }},
      {"Greater", [](double a, double b) { return a > b; }},
      {"LessOrEqual", [](double a, double b) { return a <= b; }},
      {"GreaterOrEqual", [](double a, double b) { return a >= b; }},
  };
  for (DType dtype : {DType::kFloat32, DType::kInt64, DType::kInt32, DType::kFloat16}) {
    // Small integers so that Equal is true sometimes.
    const HostTensor a = random_tensor(dtype, {3, 1, 4}, rng, -2, 2);
    HostTensor b = random_tensor(dtype, {2, 1}, rng, -2, 2);
    if (is_floating(dtype)) {
      for (int64_t i = 0; i < b.numel(); ++i) set_element(b, i, std::round(at(b, i)));
    }
    const Shape out = {3, 2, 4};
    for (const auto& [op, reference] : cases) {
      const HostTensor y = run1(op, {}, {&a, &b});
      EXPECT_EQ(y.dtype, DType::kBool) << op;
      ASSERT_EQ(y.shape, out);
      for (int64_t o = 0; o < shape_numel(out); ++o) {
        const bool want = reference(at(a, broadcast_source_index(a.shape, out, o)),
                                    at(b, broadcast_source_index(b.shape, out, o)));
        EXPECT_EQ(y.data<uint8_t>()[o], want ? 1 : 0) << op << " " << dtype_name(dtype);
      }
    }
  }
  const HostTensor p = tensor(DType::kBool, {4}, {0, 0, 1, 1});
  const HostTensor q = tensor(DType::kBool, {4}, {0, 1, 0, 1});
  expect_values(run1("And", {}, {&p, &q}), {0, 0, 0, 1}, "And");
  expect_values(run1("Or", {}, {&p, &q}), {0, 1, 1, 1}, "Or");
  expect_values(run1("Xor", {}, {&p, &q}), {0, 1, 1, 0}, "Xor");
  expect_values(run1("Equal", {}, {&p, &q}), {1, 0, 0, 1}, "Equal bool");
}

TEST(CpuTensorElementwise, WhereBroadcastsAllThreeInputs) {
  std::mt19937 rng(9);
  for (DType dtype :
       {DType::kFloat32, DType::kInt64, DType::kFloat16, DType::kUInt8, DType::kBool}) {
    const HostTensor cond = random_tensor(DType::kBool, {2, 1, 3}, rng, 0, 1);
    const HostTensor x = random_tensor(dtype, {1, 4, 1}, rng, 0, 50);
    const HostTensor y = random_tensor(dtype, {}, rng, 0, 50);
    const HostTensor out = run1("Where", {}, {&cond, &x, &y});
    const Shape shape = {2, 4, 3};
    ASSERT_EQ(out.shape, shape);
    EXPECT_EQ(out.dtype, dtype);
    for (int64_t o = 0; o < shape_numel(shape); ++o) {
      const bool c = at(cond, broadcast_source_index(cond.shape, shape, o)) != 0;
      const double want = c ? at(x, broadcast_source_index(x.shape, shape, o)) : at(y, 0);
      EXPECT_EQ(at(out, o), want) << dtype_name(dtype) << " element " << o;
    }
  }
}

TEST(CpuTensorElementwise, CastBetweenAllDtypePairs) {
  const std::vector<DType> dtypes = {
      DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt8,
      DType::kUInt8,   DType::kInt16,   DType::kUInt16,   DType::kInt32,   DType::kUInt32,
      DType::kInt64,   DType::kUInt64,  DType::kBool};
  for (DType from : dtypes) {
    // Values every dtype can hold (fractions only in floating sources).
    std::vector<double> values = {0, 1, 2, 3, 100, 120};
    if (is_floating(from)) values = {0, 1, 2.5, 3.75, 100, 120.5};
    if (from == DType::kBool) values = {0, 1, 1, 0, 1, 0};
    const HostTensor x = tensor(from, {2, 3}, values);
    for (DType to : dtypes) {
      const HostTensor y =
          run1("Cast", attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(to))}}), {&x});
      EXPECT_EQ(y.dtype, to);
      EXPECT_EQ(y.shape, x.shape);
      std::vector<double> want;
      for (double v : values) {
        if (to == DType::kBool) {
          want.push_back(v != 0 ? 1 : 0);
        } else if (!is_floating(to)) {
          want.push_back(std::trunc(v));
        } else {
          want.push_back(v);
        }
      }
      expect_values(y, want, std::string(dtype_name(from)) + " -> " + std::string(dtype_name(to)));
      // CastLike gives the same result.
      const HostTensor target(to, {1});
      expect_values(run1("CastLike", {}, {&x, &target}), want, "CastLike");
    }
  }
  // Truncation toward zero and integer wrap-around (checked against onnxruntime/numpy).
  const HostTensor f = f32({4}, {-2.7, 2.7, -0.5, 1e6});
  expect_values(run1("Cast", attrs_of({{"to", Attribute::of_int(6)}}), {&f}), {-2, 2, 0, 1e6},
                "float -> int32");
  const HostTensor big = tensor(DType::kInt32, {2}, {300, -5});
  expect_values(run1("Cast", attrs_of({{"to", Attribute::of_int(2)}}), {&big}), {44, 251},
                "int32 -> uint8 wraps");
}

TEST(CpuTensorElementwise, CastFloat16AndBFloat16RoundTrip) {
  std::mt19937 rng(13);
  const HostTensor x = random_tensor(DType::kFloat32, {64}, rng, -100, 100);
  for (DType half : {DType::kFloat16, DType::kBFloat16}) {
    const HostTensor h =
        run1("Cast", attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(half))}}), {&x});
    const HostTensor back = run1("Cast", attrs_of({{"to", Attribute::of_int(1)}}), {&h});
    const double rel = half == DType::kFloat16 ? 1.0 / 2048 : 1.0 / 256;
    expect_near_all(back, values_of(x), rel, 0, std::string(dtype_name(half)));
  }
  // 1/3 as float16 is 0x3555 (round to nearest).
  const HostTensor third = f32({1}, {1.0 / 3.0});
  EXPECT_EQ(run1("Cast", attrs_of({{"to", Attribute::of_int(10)}}), {&third}).data<uint16_t>()[0],
            0x3555);
}

TEST(CpuTensorElementwise, ClipWithOptionalBounds) {
  const HostTensor x = f32({5}, {-3, -1, 0, 2, 5});
  const HostTensor lo = f32({}, {-1.5});
  const HostTensor hi = f32({}, {1});
  expect_values(run1("Clip", {}, {&x, &lo, &hi}), {-1.5, -1, 0, 1, 1}, "Clip both");
  expect_values(run1("Clip", {}, {&x, &lo}), {-1.5, -1, 0, 2, 5}, "Clip min");
  expect_values(run1("Clip", {}, {&x, nullptr, &hi}), {-3, -1, 0, 1, 1}, "Clip max");
  expect_values(run1("Clip", {}, {&x}), {-3, -1, 0, 2, 5}, "Clip none");
  const HostTensor xi = i64({4}, {-10, 0, 10, 20});
  const HostTensor li = i64({}, {0});
  const HostTensor hi_i = i64({1}, {15});
  expect_values(run1("Clip", {}, {&xi, &li, &hi_i}), {0, 0, 10, 15}, "Clip int64");
}

TEST(CpuTensorElementwise, VariadicMinMaxSumMean) {
  std::mt19937 rng(17);
  const HostTensor a = random_tensor(DType::kFloat32, {2, 3}, rng, -5, 5);
  const HostTensor b = random_tensor(DType::kFloat32, {3}, rng, -5, 5);
  const HostTensor c = random_tensor(DType::kFloat32, {1, 1}, rng, -5, 5);
  const Shape out = {2, 3};
  const std::vector<std::pair<std::string, std::function<double(double, double, double)>>> cases = {
      {"Min",
       [](double x, double y, double z) {
         return std::min({x, y, z});
       }},
      {"Max",
       [](double x, double y, double z) {
         return std::max({x, y, z});
       }},
      {"Sum", [](double x, double y, double z) { return x + y + z; }},
      {"Mean", [](double x, double y, double z) { return (x + y + z) / 3; }}};
  for (const auto& [op, reference] : cases) {
    const HostTensor y = run1(op, {}, {&a, &b, &c});
    ASSERT_EQ(y.shape, out) << op;
    std::vector<double> want;
    for (int64_t o = 0; o < 6; ++o) {
      want.push_back(reference(at(a, o), at(b, o % 3), at(c, 0)));
    }
    expect_near_all(y, want, 1e-6, 1e-6, op);
    // One input is the identity; the broadcast of a later input can grow the shape.
    expect_values(run1(op, {}, {&b}), values_of(b), op + " single");
    EXPECT_EQ(run1(op, {}, {&c, &a}).shape, out) << op;
  }
  const HostTensor i = i64({2}, {3, -4});
  const HostTensor j = i64({1}, {1});
  expect_values(run1("Max", {}, {&i, &j}), {3, 1}, "Max int64");
}

TEST(CpuTensorElementwise, PowWithIntegerExponents) {
  const HostTensor base = f32({2, 2}, {2, 3, 0.5, -2});
  const HostTensor exponent = i64({2}, {2, 3});
  const HostTensor y = run1("Pow", {}, {&base, &exponent});
  EXPECT_EQ(y.dtype, DType::kFloat32);
  expect_values(y, {4, 27, 0.25, -8}, "Pow float^int64");
  // Integer base and exponent (values checked against onnxruntime).
  const HostTensor ib = i64({4}, {2, 3, -2, 2});
  const HostTensor ie = i64({4}, {3, 0, 3, -1});
  expect_values(run1("Pow", {}, {&ib, &ie}), {8, 1, -8, 0}, "Pow int64");
}

TEST(CpuTensorElementwise, Float16PathMatchesFloat32) {
  std::mt19937 rng(19);
  for (const char* op : {"Sigmoid", "Gelu", "Exp", "Tanh", "Add", "Mul", "Max", "Div"}) {
    const bool binary = std::string(op) == "Add" || std::string(op) == "Mul" ||
                        std::string(op) == "Max" || std::string(op) == "Div";
    HostTensor a32 = random_tensor(DType::kFloat32, {4, 8}, rng, 0.5, 3);
    HostTensor b32 = random_tensor(DType::kFloat32, {8}, rng, 0.5, 3);
    // Start from values exactly representable in float16 so that only the op's rounding differs.
    for (HostTensor* t : {&a32, &b32}) {
      for (int64_t i = 0; i < t->numel(); ++i) {
        t->data<float>()[i] = half_to_float(float_to_half(t->data<float>()[i]));
      }
    }
    HostTensor a16(DType::kFloat16, a32.shape), b16(DType::kFloat16, b32.shape);
    for (int64_t i = 0; i < a32.numel(); ++i) set_element(a16, i, at(a32, i));
    for (int64_t i = 0; i < b32.numel(); ++i) set_element(b16, i, at(b32, i));
    const HostTensor y32 = binary ? run1(op, {}, {&a32, &b32}) : run1(op, {}, {&a32});
    const HostTensor y16 = binary ? run1(op, {}, {&a16, &b16}) : run1(op, {}, {&a16});
    EXPECT_EQ(y16.dtype, DType::kFloat16);
    expect_near_all(y16, values_of(y32), 1.0 / 1024, 1e-4, std::string(op) + " fp16");
  }
}

// ---- shape ops ------------------------------------------------------------------------------

TEST(CpuTensorShape, ReshapeCopiesZeroAndInfersMinusOne) {
  std::mt19937 rng(23);
  const HostTensor x = random_tensor(DType::kFloat32, {2, 3, 4}, rng, -1, 1);
  const HostTensor s1 = i64v({0, -1});
  const HostTensor y = run1("Reshape", {}, {&x, &s1});
  EXPECT_EQ(y.shape, (Shape{2, 12}));
  EXPECT_EQ(values_of(y), values_of(x));
  const HostTensor s2 = i64v({-1, 0, 2});
  EXPECT_EQ(run1("Reshape", {}, {&x, &s2}).shape, (Shape{4, 3, 2}));
  // int32 shape input works too.
  const HostTensor s3 = tensor(DType::kInt32, {1}, {-1});
  EXPECT_EQ(run1("Reshape", {}, {&x, &s3}).shape, (Shape{24}));
  // allowzero=1: a 0 is a real zero-size dimension.
  const HostTensor empty(DType::kFloat32, {0, 4});
  const HostTensor s4 = i64v({4, 0});
  EXPECT_EQ(run1("Reshape", attrs_of({{"allowzero", Attribute::of_int(1)}}), {&empty, &s4}).shape,
            (Shape{4, 0}));
  // Errors name the node.
  const HostTensor bad = i64v({5, -1});
  Error e = error_of([&] { run_named("rs", "Reshape", {}, {&x, &bad}); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("node 'rs'"), std::string::npos) << e.what();
  const HostTensor two = i64v({-1, -1});
  e = error_of([&] { run_named("rs2", "Reshape", {}, {&x, &two}); });
  EXPECT_NE(std::string(e.what()).find("rs2"), std::string::npos) << e.what();
}

TEST(CpuTensorShape, FlattenSqueezeUnsqueeze) {
  std::mt19937 rng(29);
  const HostTensor x = random_tensor(DType::kInt64, {2, 3, 4}, rng, -9, 9);
  EXPECT_EQ(run1("Flatten", {}, {&x}).shape, (Shape{2, 12}));
  EXPECT_EQ(run1("Flatten", attrs_of({{"axis", Attribute::of_int(0)}}), {&x}).shape,
            (Shape{1, 24}));
  EXPECT_EQ(run1("Flatten", attrs_of({{"axis", Attribute::of_int(-1)}}), {&x}).shape,
            (Shape{6, 4}));
  EXPECT_EQ(values_of(run1("Flatten", {}, {&x})), values_of(x));

  const HostTensor y = random_tensor(DType::kFloat16, {1, 3, 1, 2}, rng, -9, 9);
  const HostTensor neg = i64v({-2});
  EXPECT_EQ(run1("Squeeze", {}, {&y, &neg}).shape, (Shape{1, 3, 2}));
  EXPECT_EQ(run1("Squeeze", {}, {&y}).shape, (Shape{3, 2}));
  EXPECT_EQ(values_of(run1("Squeeze", {}, {&y})), values_of(y));
  const HostTensor not_one = i64v({1});
  EXPECT_EQ(error_of([&] {
              run1("Squeeze", {}, {&y, &not_one});
            }).code(),
            ErrorCode::kInvalidArgument);

  const HostTensor z = random_tensor(DType::kFloat32, {3, 4}, rng, -1, 1);
  const HostTensor axes = i64v({-1, 0});
  const HostTensor u = run1("Unsqueeze", {}, {&z, &axes});
  EXPECT_EQ(u.shape, (Shape{1, 3, 4, 1}));
  EXPECT_EQ(values_of(u), values_of(z));
  const HostTensor mid = i64v({1, 3});
  EXPECT_EQ(run1("Unsqueeze", {}, {&z, &mid}).shape, (Shape{3, 1, 4, 1}));
  const HostTensor dup = i64v({0, -4});
  EXPECT_EQ(error_of([&] {
              run1("Unsqueeze", {}, {&z, &dup});
            }).code(),
            ErrorCode::kInvalidArgument);
}

TEST(CpuTensorShape, ShapeSizeIdentityDropout) {
  const HostTensor x(DType::kFloat32, {2, 3, 4, 5});
  const HostTensor s = run1("Shape", {}, {&x});
  EXPECT_EQ(s.dtype, DType::kInt64);
  expect_values(s, {2, 3, 4, 5}, "Shape");
  expect_values(
      run1("Shape", attrs_of({{"start", Attribute::of_int(-3)}, {"end", Attribute::of_int(-1)}}),
           {&x}),
      {3, 4}, "Shape start/end");
  expect_values(
      run1("Shape", attrs_of({{"start", Attribute::of_int(-10)}, {"end", Attribute::of_int(10)}}),
           {&x}),
      {2, 3, 4, 5}, "Shape clamped");
  EXPECT_EQ(run1("Shape",
                 attrs_of({{"start", Attribute::of_int(3)}, {"end", Attribute::of_int(1)}}), {&x})
                .numel(),
            0);
  const HostTensor size = run1("Size", {}, {&x});
  EXPECT_EQ(size.shape, Shape{});
  EXPECT_EQ(size.data<int64_t>()[0], 120);

  std::mt19937 rng(31);
  const HostTensor y = random_tensor(DType::kBFloat16, {3, 2}, rng, -5, 5);
  EXPECT_EQ(run1("Identity", {}, {&y}).bytes, y.bytes);
  const HostTensor ratio = f32({}, {0.5});
  const std::vector<HostTensor> d = run("Dropout", {}, {&y, &ratio}, 2);
  EXPECT_EQ(d[0].bytes, y.bytes);
  EXPECT_EQ(d[1].dtype, DType::kBool);
  expect_values(d[1], {1, 1, 1, 1, 1, 1}, "Dropout mask");
  const HostTensor training = tensor(DType::kBool, {}, {1});
  const Error e = error_of([&] { run_named("drop", "Dropout", {}, {&y, &ratio, &training}); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("drop"), std::string::npos);
  const HostTensor inference = tensor(DType::kBool, {}, {0});
  EXPECT_EQ(run1("Dropout", {}, {&y, &ratio, &inference}).bytes, y.bytes);
}

TEST(CpuTensorShape, ExpandBroadcastsToTheShapeInput) {
  std::mt19937 rng(37);
  const HostTensor x = random_tensor(DType::kInt32, {3, 1}, rng, -9, 9);
  const HostTensor shape = i64v({2, 1, 4});
  const HostTensor y = run1("Expand", {}, {&x, &shape});
  const Shape out = {2, 3, 4};
  ASSERT_EQ(y.shape, out);
  EXPECT_EQ(y.dtype, DType::kInt32);
  for (int64_t o = 0; o < 24; ++o) {
    EXPECT_EQ(at(y, o), at(x, broadcast_source_index(x.shape, out, o)));
  }
  // A shape smaller than the input keeps the input's dims.
  const HostTensor small = i64v({1});
  EXPECT_EQ(run1("Expand", {}, {&x, &small}).shape, (Shape{3, 1}));
}

TEST(CpuTensorShape, ConstantOfShapeDtypes) {
  const HostTensor shape = i64v({2, 3});
  const HostTensor zeros = run1("ConstantOfShape", {}, {&shape});
  EXPECT_EQ(zeros.dtype, DType::kFloat32);
  expect_values(zeros, std::vector<double>(6, 0.0), "default");
  for (DType dtype :
       {DType::kInt64, DType::kFloat16, DType::kInt32, DType::kBool, DType::kFloat64}) {
    auto value =
        std::make_shared<HostTensor>(tensor(dtype, {1}, {dtype == DType::kBool ? 1.0 : 7.0}));
    const HostTensor y =
        run1("ConstantOfShape", attrs_of({{"value", Attribute::of_tensor(value)}}), {&shape});
    EXPECT_EQ(y.dtype, dtype);
    EXPECT_EQ(y.shape, (Shape{2, 3}));
    expect_values(y, std::vector<double>(6, dtype == DType::kBool ? 1 : 7),
                  std::string(dtype_name(dtype)));
  }
  const HostTensor none = i64v({0});
  EXPECT_EQ(run1("ConstantOfShape", {}, {&none}).numel(), 0);
}

TEST(CpuTensorShape, RangeIntAndFloat) {
  // Expected values checked against onnxruntime.
  const HostTensor s = i64({}, {10}), l = i64({}, {1}), d = i64({}, {-3});
  const HostTensor r = run1("Range", {}, {&s, &l, &d});
  EXPECT_EQ(r.dtype, DType::kInt64);
  expect_values(r, {10, 7, 4}, "Range int64");
  const HostTensor fs = f32({}, {0}), fl = f32({}, {1}), fd = f32({}, {0.25});
  expect_values(run1("Range", {}, {&fs, &fl, &fd}), {0, 0.25, 0.5, 0.75}, "Range float");
  const HostTensor is = tensor(DType::kInt32, {}, {0}), il = tensor(DType::kInt32, {}, {7}),
                   id = tensor(DType::kInt32, {}, {3});
  expect_values(run1("Range", {}, {&is, &il, &id}), {0, 3, 6}, "Range int32");
  const HostTensor empty_limit = i64({}, {20});
  EXPECT_EQ(run1("Range", {}, {&s, &empty_limit, &d}).numel(), 0);
  const HostTensor zero = i64({}, {0});
  EXPECT_EQ(error_of([&] {
              run1("Range", {}, {&s, &l, &zero});
            }).code(),
            ErrorCode::kInvalidArgument);
}

TEST(CpuTensorShape, TileAndEyeLike) {
  std::mt19937 rng(41);
  const HostTensor x = random_tensor(DType::kFloat32, {2, 3}, rng, -1, 1);
  const HostTensor repeats = i64v({2, 3});
  const HostTensor y = run1("Tile", {}, {&x, &repeats});
  ASSERT_EQ(y.shape, (Shape{4, 9}));
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t c = 0; c < 9; ++c) EXPECT_EQ(at(y, r * 9 + c), at(x, (r % 2) * 3 + c % 3));
  }
  const HostTensor zero = i64v({0, 1});
  EXPECT_EQ(run1("Tile", {}, {&x, &zero}).shape, (Shape{0, 3}));

  const HostTensor m(DType::kInt64, {3, 4});
  const HostTensor eye = run1("EyeLike", attrs_of({{"k", Attribute::of_int(1)}}), {&m});
  expect_values(eye, {0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, "EyeLike k=1");
  const HostTensor eye_f = run1("EyeLike", attrs_of({{"dtype", Attribute::of_int(1)}}), {&m});
  EXPECT_EQ(eye_f.dtype, DType::kFloat32);
  expect_values(eye_f, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}, "EyeLike float");
}

// ---- data movement ---------------------------------------------------------------------------

TEST(CpuTensorDataMovement, TransposeMatchesNaivePermutation) {
  std::mt19937 rng(43);
  const Shape in_shape = {2, 3, 4, 5};
  const std::vector<std::vector<int64_t>> perms = {{0, 1, 2, 3}, {3, 2, 1, 0}, {0, 2, 3, 1},
                                                   {1, 0, 3, 2}, {2, 0, 1, 3}, {0, 1, 3, 2}};
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kInt64, DType::kUInt8}) {
    const HostTensor x = random_tensor(dtype, in_shape, rng, 0, 100);
    for (const auto& perm : perms) {
      const HostTensor y = run1("Transpose", attrs_of({{"perm", Attribute::of_ints(perm)}}), {&x});
      Shape out(4);
      for (size_t i = 0; i < 4; ++i) out[i] = in_shape[static_cast<size_t>(perm[i])];
      ASSERT_EQ(y.shape, out);
      for (int64_t o = 0; o < y.numel(); ++o) {
        int64_t rem = o;
        std::vector<int64_t> in_coord(4);
        for (size_t k = 4; k-- > 0;) {
          in_coord[static_cast<size_t>(perm[k])] = rem % out[k];
          rem /= out[k];
        }
        const int64_t src = ((in_coord[0] * 3 + in_coord[1]) * 4 + in_coord[2]) * 5 + in_coord[3];
        ASSERT_EQ(at(y, o), at(x, src)) << dtype_name(dtype);
      }
    }
    // Default: reversed dims.
    EXPECT_EQ(run1("Transpose", {}, {&x}).shape, (Shape{5, 4, 3, 2}));
  }
}

TEST(CpuTensorDataMovement, ConcatAndSplitUneven) {
  std::mt19937 rng(47);
  const HostTensor a = random_tensor(DType::kInt64, {2, 1, 3}, rng, -9, 9);
  const HostTensor b = random_tensor(DType::kInt64, {2, 4, 3}, rng, -9, 9);
  const HostTensor c = random_tensor(DType::kInt64, {2, 2, 3}, rng, -9, 9);
  const HostTensor y = run1("Concat", attrs_of({{"axis", Attribute::of_int(-2)}}), {&a, &b, &c});
  ASSERT_EQ(y.shape, (Shape{2, 7, 3}));
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t j = 0; j < 7; ++j) {
      for (int64_t k = 0; k < 3; ++k) {
        double want;
        if (j < 1) {
          want = at(a, (n * 1 + j) * 3 + k);
        } else if (j < 5) {
          want = at(b, (n * 4 + (j - 1)) * 3 + k);
        } else {
          want = at(c, (n * 2 + (j - 5)) * 3 + k);
        }
        EXPECT_EQ(at(y, (n * 7 + j) * 3 + k), want);
      }
    }
  }
  // Split back with explicit sizes.
  const HostTensor sizes = i64v({1, 4, 2});
  const std::vector<HostTensor> parts =
      run("Split", attrs_of({{"axis", Attribute::of_int(1)}}), {&y, &sizes}, 3);
  EXPECT_EQ(parts[0].bytes, a.bytes);
  EXPECT_EQ(parts[1].bytes, b.bytes);
  EXPECT_EQ(parts[2].bytes, c.bytes);
  // num_outputs with an uneven last chunk (checked against onnxruntime: 5 -> 2, 2, 1).
  const HostTensor v = f32({5}, {0, 1, 2, 3, 4});
  const std::vector<HostTensor> chunks =
      run("Split", attrs_of({{"num_outputs", Attribute::of_int(3)}}), {&v}, 3);
  expect_values(chunks[0], {0, 1}, "chunk 0");
  expect_values(chunks[1], {2, 3}, "chunk 1");
  expect_values(chunks[2], {4}, "chunk 2");
  // Equal split by the number of outputs (older opsets).
  const HostTensor w = f32({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7});
  const std::vector<HostTensor> halves =
      run("Split", attrs_of({{"axis", Attribute::of_int(-1)}}), {&w}, 2);
  expect_values(halves[0], {0, 1, 4, 5}, "half 0");
  expect_values(halves[1], {2, 3, 6, 7}, "half 1");
  // 5 into 4 chunks of 2 leaves a negative last chunk: an error, as in onnxruntime.
  EXPECT_EQ(error_of([&] {
              run("Split", attrs_of({{"num_outputs", Attribute::of_int(4)}}), {&v}, 4);
            }).code(),
            ErrorCode::kInvalidArgument);
  const HostTensor bad_sizes = i64v({2, 2});
  EXPECT_EQ(error_of([&] {
              run("Split", {}, {&v, &bad_sizes}, 2);
            }).code(),
            ErrorCode::kInvalidArgument);
}

TEST(CpuTensorDataMovement, SliceNegativeStepsAndClamping) {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t kMin = std::numeric_limits<int64_t>::min();
  const HostTensor x = f32({10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto slice1d = [&](int64_t start, int64_t end, int64_t step) {
    const HostTensor s = i64v({start}), e = i64v({end}), a = i64v({0}), st = i64v({step});
    return values_of(run1("Slice", {}, {&x, &s, &e, &a, &st}));
  };
  // Expectations are numpy's x[start:end:step].
  EXPECT_EQ(slice1d(8, 1, -2), (std::vector<double>{8, 6, 4, 2}));
  EXPECT_EQ(slice1d(-3, 100, 1), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(slice1d(-1, kMin, -1), (std::vector<double>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(slice1d(0, kMax, 3), (std::vector<double>{0, 3, 6, 9}));
  EXPECT_EQ(slice1d(100, -100, -4), (std::vector<double>{9, 5, 1}));
  EXPECT_EQ(slice1d(5, 2, 1), (std::vector<double>{}));
  EXPECT_EQ(slice1d(-100, 2, 1), (std::vector<double>{0, 1}));

  // 2-D with negative axes, no steps input on the second call.
  std::vector<double> v(12);
  for (int i = 0; i < 12; ++i) v[static_cast<size_t>(i)] = i;
  const HostTensor m = tensor(DType::kInt16, {3, 4}, v);
  const HostTensor s = i64v({3, 0}), e = i64v({0, kMax}), a = i64v({-1, 0}), st = i64v({-1, 2});
  const HostTensor y = run1("Slice", {}, {&m, &s, &e, &a, &st});
  EXPECT_EQ(y.shape, (Shape{2, 3}));
  expect_values(y, {3, 2, 1, 11, 10, 9}, "Slice 2-D");
  const HostTensor s2 = i64v({1}), e2 = i64v({-1});
  const HostTensor y2 = run1("Slice", {}, {&m, &s2, &e2});
  EXPECT_EQ(y2.shape, (Shape{1, 4}));
  expect_values(y2, {4, 5, 6, 7}, "Slice default axes");
  const HostTensor zero_step = i64v({0, 0});
  EXPECT_EQ(error_of([&] {
              run1("Slice", {}, {&m, &s, &e, &a, &zero_step});
            }).code(),
            ErrorCode::kInvalidArgument);
}

TEST(CpuTensorDataMovement, GatherNegativeAndOutOfRangeIndices) {
  std::mt19937 rng(53);
  const HostTensor x = random_tensor(DType::kFloat32, {3, 4, 2}, rng, -1, 1);
  const HostTensor idx = i64({2, 2}, {-1, 0, 2, -4});
  const HostTensor y = run1("Gather", attrs_of({{"axis", Attribute::of_int(1)}}), {&x, &idx});
  ASSERT_EQ(y.shape, (Shape{3, 2, 2, 2}));
  const int64_t resolved[4] = {3, 0, 2, 0};
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 4; ++j) {
      for (int64_t k = 0; k < 2; ++k) {
        EXPECT_EQ(at(y, (i * 4 + j) * 2 + k), at(x, (i * 4 + resolved[j]) * 2 + k));
      }
    }
  }
  // Scalar index on axis 0 drops the axis; int32 indices work.
  const HostTensor scalar = tensor(DType::kInt32, {}, {-1});
  const HostTensor row = run1("Gather", {}, {&x, &scalar});
  EXPECT_EQ(row.shape, (Shape{4, 2}));
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(at(row, i), at(x, 16 + i));

  const HostTensor bad = i64({2}, {1, 4});
  const Error e = error_of([&] {
    run_named("gather_7", "Gather", attrs_of({{"axis", Attribute::of_int(1)}}), {&x, &bad});
  });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  const std::string message = e.what();
  EXPECT_NE(message.find("gather_7"), std::string::npos) << message;
  EXPECT_NE(message.find("index 4"), std::string::npos) << message;
}

TEST(CpuTensorDataMovement, GatherElements) {
  const HostTensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  const HostTensor idx = i64({2, 2}, {2, -3, 1, 1});
  expect_values(run1("GatherElements", attrs_of({{"axis", Attribute::of_int(1)}}), {&x, &idx}),
                {3, 1, 5, 5}, "GatherElements axis 1");
  const HostTensor idx0 = i64({1, 3}, {1, 0, 1});
  expect_values(run1("GatherElements", {}, {&x, &idx0}), {4, 2, 6}, "GatherElements axis 0");
  const HostTensor bad = i64({1, 3}, {0, 2, 0});
  EXPECT_EQ(error_of([&] {
              run1("GatherElements", {}, {&x, &bad});
            }).code(),
            ErrorCode::kInvalidArgument);
}

TEST(CpuTensorDataMovement, PadAllModes) {
  // Expected values from numpy.pad (same semantics as ONNX Pad for these modes).
  const HostTensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  const HostTensor pads = i64v({1, 2, 1, 2});
  const std::vector<std::pair<std::string, std::vector<double>>> cases = {
      {"reflect",
       {6, 5, 4, 5, 6, 5, 4, 3, 2, 1, 2, 3, 2, 1, 6, 5, 4, 5, 6, 5, 4, 3, 2, 1, 2, 3, 2, 1}},
      {"edge",
       {1, 1, 1, 2, 3, 3, 3, 1, 1, 1, 2, 3, 3, 3, 4, 4, 4, 5, 6, 6, 6, 4, 4, 4, 5, 6, 6, 6}},
      {"wrap",
       {5, 6, 4, 5, 6, 4, 5, 2, 3, 1, 2, 3, 1, 2, 5, 6, 4, 5, 6, 4, 5, 2, 3, 1, 2, 3, 1, 2}},
  };
  for (const auto& [mode, want] : cases) {
    const HostTensor y = run1("Pad", attrs_of({{"mode", Attribute::of_string(mode)}}), {&x, &pads});
    EXPECT_EQ(y.shape, (Shape{4, 7})) << mode;
    expect_values(y, want, mode);
  }
  const HostTensor cpads = i64v({0, 1, 1, 0});
  const HostTensor nine = f32({}, {9});
  expect_values(run1("Pad", {}, {&x, &cpads, &nine}), {9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9},
                "constant 9");
  expect_values(run1("Pad", {}, {&x, &cpads}), {0, 1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0}, "constant 0");
  // axes input and negative pads (cropping).
  const HostTensor crop = i64v({-1, 0});
  const HostTensor axes = i64v({-1});
  expect_values(run1("Pad", {}, {&x, &crop, nullptr, &axes}), {2, 3, 5, 6}, "crop");
  // Wrap with pads larger than the dim (checked against onnxruntime).
  const HostTensor r = f32({3}, {0, 1, 2});
  const HostTensor big = i64v({4, 4});
  expect_values(run1("Pad", attrs_of({{"mode", Attribute::of_string("wrap")}}), {&r, &big}),
                {2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0}, "wrap big");
  // Reflect pads must be smaller than the dim, as in onnxruntime.
  EXPECT_EQ(error_of([&] {
              run1("Pad", attrs_of({{"mode", Attribute::of_string("reflect")}}), {&r, &big});
            }).code(),
            ErrorCode::kInvalidArgument);
  // Other dtypes move as bytes, constant value included.
  const HostTensor h = tensor(DType::kFloat16, {2}, {1.5, -2});
  const HostTensor hc = tensor(DType::kFloat16, {}, {0.25});
  const HostTensor hp = i64v({1, 1});
  expect_values(run1("Pad", {}, {&h, &hp, &hc}), {0.25, 1.5, -2, 0.25}, "fp16 constant");
}

TEST(CpuTensorDataMovement, ScatterNDAndTrilu) {
  const HostTensor data = f32({4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  const HostTensor indices = i64({2, 1}, {3, -4});
  const HostTensor updates = f32({2, 2}, {10, 20, 30, 40});
  expect_values(run1("ScatterND", {}, {&data, &indices, &updates}), {30, 40, 3, 4, 5, 6, 10, 20},
                "ScatterND");
  expect_values(run1("ScatterND", attrs_of({{"reduction", Attribute::of_string("add")}}),
                     {&data, &indices, &updates}),
                {31, 42, 3, 4, 5, 6, 17, 28}, "ScatterND add");

  const HostTensor m = f32({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  expect_values(run1("Trilu", {}, {&m}), {1, 2, 3, 0, 5, 6, 0, 0, 9}, "upper");
  const HostTensor k = i64({}, {-1});
  expect_values(run1("Trilu", attrs_of({{"upper", Attribute::of_int(0)}}), {&m, &k}),
                {0, 0, 0, 4, 0, 0, 7, 8, 0}, "lower k=-1");
  const HostTensor k1 = i64({}, {1});
  expect_values(run1("Trilu", {}, {&m, &k1}), {0, 2, 3, 0, 0, 6, 0, 0, 0}, "upper k=1");
}

// float16/bfloat16 reductions compute in float32 and round back; bool data has no reduction (its
// refusal comes from the op's infer function, so a build names the node, not a run).
TEST(CpuTensorDataMovement, ScatterReductionsOnHalfFloatsAndNoneOnBool) {
  const AttributeMap add = attrs_of({{"reduction", Attribute::of_string("add")}});
  const AttributeMap max = attrs_of({{"reduction", Attribute::of_string("max")}});
  for (const DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    const std::string name(dtype_name(dtype));
    const HostTensor data = tensor(dtype, {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
    const HostTensor indices = i64({2, 1}, {3, -4});
    const HostTensor updates = tensor(dtype, {2, 2}, {10, 20, 30, 0.5});
    expect_values(run1("ScatterND", add, {&data, &indices, &updates}), {31, 2.5, 3, 4, 5, 6, 17, 28},
                  "ScatterND add " + name);
    expect_values(run1("ScatterND", max, {&data, &indices, &updates}), {30, 2, 3, 4, 5, 6, 10, 20},
                  "ScatterND max " + name);
    const HostTensor square = tensor(dtype, {2, 2}, {1, 2, 3, 4});
    const HostTensor rows = i64({1, 2}, {1, 0});
    const HostTensor values = tensor(dtype, {1, 2}, {0.25, 3});
    expect_values(run1("ScatterElements", add, {&square, &rows, &values}), {1, 5, 3.25, 4},
                  "ScatterElements add " + name);
  }
  const HostTensor flags = tensor(DType::kBool, {2}, {1, 0});
  const HostTensor at0 = i64({1, 1}, {0});
  const HostTensor flag = tensor(DType::kBool, {1}, {1});
  for (const std::string op : {"ScatterND", "ScatterElements"}) {
    const HostTensor indices = op == "ScatterND" ? at0 : i64v({0});
    const Error e = error_of([&] { run1(op, add, {&flags, &indices, &flag}); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << op;
    EXPECT_NE(std::string(e.what()).find("reduction 'add'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bool"), std::string::npos) << e.what();
  }
}

// ---- infer with dynamic dims and unknown values ----------------------------------------------

ops::ValueInfo info(DType dtype, Shape shape, const HostTensor* value = nullptr) {
  return ops::ValueInfo{dtype, std::move(shape), value, true};
}

std::vector<ops::ValueInfo> infer(const std::string& op, const AttributeMap& attrs,
                                  std::vector<ops::ValueInfo> inputs, size_t num_outputs = 1) {
  const ops::OpDef* def = ops::find_op(op);
  EXPECT_NE(def, nullptr) << op;
  std::vector<ops::ValueInfo> outputs(num_outputs);
  ops::infer_node(*def, "infer_" + op, attrs, inputs, outputs);
  return outputs;
}

constexpr int64_t kDyn = kDynamicDim;

TEST(CpuTensorInfer, ElementwiseWithDynamicDims) {
  auto out = infer("Add", {}, {info(DType::kFloat32, {kDyn, 3}), info(DType::kFloat32, {4, 1})});
  EXPECT_EQ(out[0].shape, (Shape{4, 3}));
  out = infer("Less", {}, {info(DType::kInt64, {kDyn, 1}), info(DType::kInt64, {kDyn})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn}));
  EXPECT_EQ(out[0].dtype, DType::kBool);
  out = infer(
      "Where", {},
      {info(DType::kBool, {kDyn, 1}), info(DType::kFloat16, {1, 5}), info(DType::kFloat16, {})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 5}));
  EXPECT_EQ(out[0].dtype, DType::kFloat16);
  out = infer("Cast", attrs_of({{"to", Attribute::of_int(7)}}), {info(DType::kFloat32, {kDyn})});
  EXPECT_EQ(out[0].dtype, DType::kInt64);
  out = infer("Sum", {},
              {info(DType::kFloat32, {2, 1}), info(DType::kFloat32, {kDyn}),
               info(DType::kFloat32, {1, 1})});
  EXPECT_EQ(out[0].shape, (Shape{2, kDyn}));
  // Errors name the node and what was expected.
  Error e = error_of([] {
    infer("Add", {}, {info(DType::kFloat32, {3}), info(DType::kFloat32, {4})});
  });
  EXPECT_NE(std::string(e.what()).find("infer_Add"), std::string::npos) << e.what();
  e = error_of([] { infer("Add", {}, {info(DType::kFloat32, {3}), info(DType::kInt64, {3})}); });
  EXPECT_NE(std::string(e.what()).find("int64"), std::string::npos) << e.what();
  e = error_of([] {
    infer("Cast", attrs_of({{"to", Attribute::of_int(8)}}), {info(DType::kFloat32, {3})});
  });
  EXPECT_NE(std::string(e.what()).find("'to'"), std::string::npos) << e.what();
  e = error_of([] {
    infer("Gelu", attrs_of({{"approximate", Attribute::of_string("fast")}}),
          {info(DType::kFloat32, {3})});
  });
  EXPECT_NE(std::string(e.what()).find("approximate"), std::string::npos) << e.what();
  e = error_of([] {
    infer("Relu", attrs_of({{"alpha", Attribute::of_int(1)}}), {info(DType::kFloat32, {3})});
  });
  EXPECT_NE(std::string(e.what()).find("infer_Relu"), std::string::npos) << e.what();
}

TEST(CpuTensorInfer, ReshapeWithUnknownValuesAndDynamicInput) {
  auto out = infer("Reshape", {}, {info(DType::kFloat32, {kDyn, 6}), info(DType::kInt64, {3})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn, kDyn}));
  const HostTensor s = i64v({0, -1});
  out = infer("Reshape", {}, {info(DType::kFloat32, {kDyn, 2, 3}), info(DType::kInt64, {2}, &s)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn}));
  out = infer("Reshape", {}, {info(DType::kFloat32, {2, kDyn}), info(DType::kInt64, {2}, &s)});
  EXPECT_EQ(out[0].shape, (Shape{2, kDyn}));
  const HostTensor s2 = i64v({-1, 6});
  out = infer("Reshape", {}, {info(DType::kFloat32, {kDyn, 2, 3}), info(DType::kInt64, {2}, &s2)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 6}));
  const HostTensor s3 = tensor(DType::kInt32, {2}, {4, -1});
  out = infer("Reshape", {}, {info(DType::kFloat32, {2, 6}), info(DType::kInt32, {2}, &s3)});
  EXPECT_EQ(out[0].shape, (Shape{4, 3}));
  EXPECT_EQ(error_of([] {
              infer("Reshape", {}, {info(DType::kFloat32, {6}), info(DType::kInt64, {kDyn})});
            }).code(),
            ErrorCode::kInvalidArgument);
}

// Found by fuzz_onnx_build (tests/data/fuzz-regressions/onnx_build/): the product of the target
// dims wrapped in int64, here to exactly the input's 24 elements, so a reshape of [2, 3, 4] to
// [8, 2^61 + 3] was accepted with that huge shape.
TEST(CpuTensorInfer, ReshapeTargetWhoseElementCountOverflowsIsRefused) {
  const HostTensor wraps_to_24 = i64v({8, (int64_t{1} << 61) + 3});
  const Error e = error_of([&] {
    infer("Reshape", {},
          {info(DType::kFloat32, {2, 3, 4}), info(DType::kInt64, {2}, &wraps_to_24)});
  });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("more elements than 64-bit sizes can count"),
            std::string::npos)
      << e.what();
}

TEST(CpuTensorInfer, ShapeOpsWithDynamicDims) {
  auto out = infer("Shape", {}, {info(DType::kFloat32, {kDyn, 3, kDyn})});
  EXPECT_EQ(out[0].dtype, DType::kInt64);
  EXPECT_EQ(out[0].shape, (Shape{3}));
  EXPECT_EQ(out[0].value, nullptr);
  out = infer("Unsqueeze", {}, {info(DType::kFloat32, {kDyn, 3}), info(DType::kInt64, {2})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn, kDyn, kDyn}));
  const HostTensor axes = i64v({0, -1});
  out = infer("Unsqueeze", {}, {info(DType::kFloat32, {kDyn, 3}), info(DType::kInt64, {2}, &axes)});
  EXPECT_EQ(out[0].shape, (Shape{1, kDyn, 3, 1}));
  const HostTensor sq = i64v({1});
  out = infer("Squeeze", {}, {info(DType::kFloat32, {kDyn, 1, 4}), info(DType::kInt64, {1}, &sq)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 4}));
  out = infer("Squeeze", {}, {info(DType::kFloat32, {kDyn, 1, 4}), info(DType::kInt64, {1})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn}));
  out = infer("Flatten", {}, {info(DType::kFloat32, {kDyn, 3, 4})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 12}));
  out = infer("Expand", {}, {info(DType::kFloat32, {3, 1}), info(DType::kInt64, {3})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 3, kDyn}));
  out = infer("ConstantOfShape", {}, {info(DType::kInt64, {2})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn}));
  out = infer("Range", {},
              {info(DType::kInt64, {}), info(DType::kInt64, {}), info(DType::kInt64, {})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn}));
  out = infer("Tile", {}, {info(DType::kFloat32, {kDyn, 3}), info(DType::kInt64, {2})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn}));
  const HostTensor reps = i64v({2, 2});
  out = infer("Tile", {}, {info(DType::kFloat32, {kDyn, 3}), info(DType::kInt64, {2}, &reps)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 6}));
  out = infer("Dropout", {}, {info(DType::kFloat16, {kDyn, 2})}, 2);
  EXPECT_EQ(out[1].dtype, DType::kBool);
  EXPECT_EQ(out[1].shape, (Shape{kDyn, 2}));
}

TEST(CpuTensorInfer, DataMovementWithDynamicDims) {
  auto out = infer("Transpose", attrs_of({{"perm", Attribute::of_ints({1, 0, 2})}}),
                   {info(DType::kFloat32, {kDyn, 3, 4})});
  EXPECT_EQ(out[0].shape, (Shape{3, kDyn, 4}));
  out = infer("Concat", attrs_of({{"axis", Attribute::of_int(1)}}),
              {info(DType::kFloat32, {kDyn, 2}), info(DType::kFloat32, {5, 3})});
  EXPECT_EQ(out[0].shape, (Shape{5, 5}));
  out = infer("Concat", attrs_of({{"axis", Attribute::of_int(0)}}),
              {info(DType::kFloat32, {kDyn, 2}), info(DType::kFloat32, {5, 2})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 2}));
  const HostTensor s = i64v({1}), e = i64v({-1});
  out = infer("Slice", {},
              {info(DType::kFloat32, {kDyn, 8}), info(DType::kInt64, {1}, &s),
               info(DType::kInt64, {1}, &e)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 8}));
  const HostTensor ax = i64v({1});
  out = infer("Slice", {},
              {info(DType::kFloat32, {kDyn, 8}), info(DType::kInt64, {1}, &s),
               info(DType::kInt64, {1}, &e), info(DType::kInt64, {1}, &ax)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 6}));
  out = infer("Slice", {},
              {info(DType::kFloat32, {4, 8}), info(DType::kInt64, {1}), info(DType::kInt64, {1}),
               info(DType::kInt64, {1}, &ax)});
  EXPECT_EQ(out[0].shape, (Shape{4, kDyn}));
  out = infer("Gather", attrs_of({{"axis", Attribute::of_int(1)}}),
              {info(DType::kFloat32, {kDyn, 5, 2}), info(DType::kInt64, {kDyn, 3})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn, 3, 2}));
  out = infer("Split", attrs_of({{"num_outputs", Attribute::of_int(2)}}),
              {info(DType::kFloat32, {kDyn, 4})}, 2);
  EXPECT_EQ(out[1].shape, (Shape{kDyn, 4}));
  out = infer("Split", attrs_of({{"axis", Attribute::of_int(1)}}),
              {info(DType::kFloat32, {kDyn, 4}), info(DType::kInt64, {2})}, 2);
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn}));
  const HostTensor pads = i64v({0, 1, 0, 1});
  out = infer("Pad", {}, {info(DType::kFloat32, {kDyn, 3}), info(DType::kInt64, {4}, &pads)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 5}));
  out = infer("Pad", {}, {info(DType::kFloat32, {kDyn, 3}), info(DType::kInt64, {4})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn}));
  const HostTensor pad_axes = i64v({1});
  out = infer(
      "Pad", {},
      {info(DType::kFloat32, {2, 3}), info(DType::kInt64, {2}),
       ops::ValueInfo{DType::kFloat32, {}, nullptr, false}, info(DType::kInt64, {1}, &pad_axes)});
  EXPECT_EQ(out[0].shape, (Shape{2, kDyn}));
  const Error err = error_of([] {
    infer("Transpose", attrs_of({{"perm", Attribute::of_ints({0, 0})}}),
          {info(DType::kFloat32, {2, 3})});
  });
  EXPECT_NE(std::string(err.what()).find("infer_Transpose"), std::string::npos) << err.what();
  EXPECT_NE(std::string(err.what()).find("perm"), std::string::npos) << err.what();
}

TEST(CpuTensorInfer, EveryRegisteredTensorOpHasACpuKernel) {
  for (const char* op : {"Relu",
                         "LeakyRelu",
                         "Sigmoid",
                         "Tanh",
                         "Gelu",
                         "Erf",
                         "HardSigmoid",
                         "HardSwish",
                         "Sqrt",
                         "Reciprocal",
                         "Neg",
                         "Exp",
                         "Log",
                         "Abs",
                         "Floor",
                         "Ceil",
                         "Round",
                         "Sin",
                         "Cos",
                         "Softplus",
                         "Elu",
                         "Selu",
                         "Mish",
                         "Sign",
                         "Not",
                         "IsNaN",
                         "IsInf",
                         "Add",
                         "Sub",
                         "Mul",
                         "Div",
                         "Pow",
                         "Mod",
                         "Equal",
                         "Less",
                         "Greater",
                         "LessOrEqual",
                         "GreaterOrEqual",
                         "And",
                         "Or",
                         "Xor",
                         "Min",
                         "Max",
                         "Sum",
                         "Mean",
                         "Clip",
                         "Where",
                         "Cast",
                         "CastLike",
                         "Reshape",
                         "Flatten",
                         "Squeeze",
                         "Unsqueeze",
                         "Shape",
                         "Size",
                         "Identity",
                         "Dropout",
                         "Expand",
                         "ConstantOfShape",
                         "Range",
                         "EyeLike",
                         "Tile",
                         "Transpose",
                         "Concat",
                         "Split",
                         "Slice",
                         "Gather",
                         "GatherElements",
                         "Pad",
                         "ScatterND",
                         "Trilu"}) {
    EXPECT_NE(ops::find_op(op), nullptr) << op;
    EXPECT_NE(cpu::cpu_kernels().find(op), nullptr) << op;
  }
}

// ---- GatherND ------------------------------------------------------------------------------

namespace gather_nd_test {

// Naive GatherND by coordinates: every output element maps back to one data element.
std::vector<double> reference(const HostTensor& data, const HostTensor& indices,
                              int64_t batch_dims) {
  const Shape& ds = data.shape;
  const Shape& is = indices.shape;
  const auto b = static_cast<size_t>(batch_dims);
  const auto k = static_cast<size_t>(is.back());
  Shape out_shape(is.begin(), is.end() - 1);
  out_shape.insert(out_shape.end(), ds.begin() + static_cast<std::ptrdiff_t>(b + k), ds.end());
  int64_t total = 1;
  for (int64_t d : out_shape) total *= d;
  std::vector<double> out;
  for (int64_t o = 0; o < total; ++o) {
    std::vector<int64_t> coord(out_shape.size());
    int64_t rest = o;
    for (size_t d = out_shape.size(); d-- > 0;) {
      coord[d] = rest % out_shape[d];
      rest /= out_shape[d];
    }
    // Index tuple location: coord[0 .. is.size()-1) in indices, last coord = component.
    std::vector<int64_t> data_coord(coord.begin(), coord.begin() + static_cast<std::ptrdiff_t>(b));
    for (size_t j = 0; j < k; ++j) {
      int64_t flat = 0;
      for (size_t d = 0; d + 1 < is.size(); ++d) flat = flat * is[d] + coord[d];
      int64_t v = indices.data<int64_t>()[flat * static_cast<int64_t>(k) + static_cast<int64_t>(j)];
      if (v < 0) v += ds[b + j];
      data_coord.push_back(v);
    }
    for (size_t d = is.size() - 1; d < coord.size(); ++d) data_coord.push_back(coord[d]);
    int64_t flat = 0;
    for (size_t d = 0; d < ds.size(); ++d) flat = flat * ds[d] + data_coord[d];
    out.push_back(at(data, flat));
  }
  return out;
}

HostTensor random_indices(Shape shape, const Shape& data_shape, size_t first_axis,
                          std::mt19937& rng) {
  HostTensor t(DType::kInt64, std::move(shape));
  const auto k = static_cast<int64_t>(t.shape.back());
  for (int64_t i = 0; i < t.numel(); ++i) {
    const int64_t dim = data_shape[first_axis + static_cast<size_t>(i % k)];
    std::uniform_int_distribution<int64_t> dist(-dim, dim - 1);  // negatives wrap
    t.data<int64_t>()[i] = dist(rng);
  }
  return t;
}

}  // namespace gather_nd_test

TEST(CpuTensorGatherND, MatchesNaiveReference) {
  std::mt19937 rng(1234);
  struct Case {
    Shape data;
    Shape indices;
    int64_t batch_dims;
    DType dtype;
  };
  const std::vector<Case> cases = {
      {{5, 4}, {3, 2}, 0, DType::kFloat32},            // full tuples -> scalars
      {{5, 4}, {3, 1}, 0, DType::kFloat32},            // rows
      {{4, 3, 5}, {2, 2, 2}, 0, DType::kInt64},        // 2-tuples, slices of 5
      {{6, 7}, {1}, 0, DType::kFloat16},               // single tuple, no outer indices dims
      {{2, 5, 3}, {2, 4, 1}, 1, DType::kFloat32},      // batch_dims 1 (BERT-like)
      {{2, 3, 4, 5}, {2, 3, 2, 1}, 2, DType::kInt32},  // batch_dims 2
      {{3, 4, 6}, {3, 2}, 1, DType::kUInt8},           // batch_dims 1, full tuple
  };
  for (const Case& c : cases) {
    const HostTensor data = random_tensor(c.dtype, c.data, rng, 0, 100);
    const HostTensor indices =
        gather_nd_test::random_indices(c.indices, c.data, static_cast<size_t>(c.batch_dims), rng);
    const HostTensor got = run1(
        "GatherND", attrs_of({{"batch_dims", Attribute::of_int(c.batch_dims)}}), {&data, &indices});
    const std::string what = "GatherND data " + shape_to_string(c.data) + " indices " +
                             shape_to_string(c.indices) + " batch_dims " +
                             std::to_string(c.batch_dims);
    EXPECT_EQ(got.dtype, c.dtype) << what;
    expect_values(got, gather_nd_test::reference(data, indices, c.batch_dims), what);
  }
}

TEST(CpuTensorGatherND, KnownValuesAndShapes) {
  // ONNX's documented examples (batch_dims 0 and 1).
  const HostTensor data = f32({2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  const HostTensor idx = i64({2, 1, 1}, {1, 0});
  HostTensor out = run1("GatherND", {}, {&data, &idx});
  EXPECT_EQ(out.shape, (Shape{2, 1, 2, 2}));
  expect_values(out, {4, 5, 6, 7, 0, 1, 2, 3}, "GatherND example 5");
  const HostTensor idx_b = i64({2, 1}, {1, 0});
  out = run1("GatherND", attrs_of({{"batch_dims", Attribute::of_int(1)}}), {&data, &idx_b});
  EXPECT_EQ(out.shape, (Shape{2, 2}));
  expect_values(out, {2, 3, 4, 5}, "GatherND batch_dims 1");
  const HostTensor idx_neg = i64({2, 3}, {-1, -2, 0, 0, -1, -1});
  out = run1("GatherND", {}, {&data, &idx_neg});
  EXPECT_EQ(out.shape, (Shape{2}));
  expect_values(out, {4, 3}, "GatherND negative");
  const HostTensor empty = i64({0, 2}, {});
  out = run1("GatherND", {}, {&data, &empty});
  EXPECT_EQ(out.shape, (Shape{0, 2}));
}

TEST(CpuTensorGatherND, OutOfRangeIndexNamesNodeAndIndex) {
  const HostTensor data = f32({3, 4}, std::vector<double>(12, 1.0));
  const HostTensor bad = i64({2, 2}, {0, 1, 2, 4});
  Error e = error_of([&] { run_named("gnd_node", "GatherND", {}, {&data, &bad}); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  std::string message = e.what();
  EXPECT_NE(message.find("gnd_node"), std::string::npos) << message;
  EXPECT_NE(message.find("index 4"), std::string::npos) << message;
  const HostTensor too_negative = i64({1, 1}, {-4});
  e = error_of([&] { run_named("gnd_neg", "GatherND", {}, {&data, &too_negative}); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  message = e.what();
  EXPECT_NE(message.find("index -4"), std::string::npos) << message;
}

TEST(CpuTensorGatherND, InferValidatesAndKeepsDynamicDims) {
  auto out = infer("GatherND", attrs_of({{"batch_dims", Attribute::of_int(1)}}),
                   {info(DType::kFloat32, {kDyn, 128, 768}), info(DType::kInt64, {4, kDyn, 1})});
  EXPECT_EQ(out[0].shape, (Shape{4, kDyn, 768}));
  EXPECT_EQ(out[0].dtype, DType::kFloat32);
  out = infer("GatherND", {}, {info(DType::kInt64, {5, kDyn, 3}), info(DType::kInt64, {7, 2})});
  EXPECT_EQ(out[0].shape, (Shape{7, 3}));
  const auto code_of = [](const std::function<void()>& fn) { return error_of(fn).code(); };
  // Tuple longer than the data rank.
  EXPECT_EQ(code_of([] {
              infer("GatherND", {}, {info(DType::kFloat32, {2, 3}), info(DType::kInt64, {1, 3})});
            }),
            ErrorCode::kInvalidArgument);
  // Tuple longer than rank - batch_dims.
  EXPECT_EQ(code_of([] {
              infer("GatherND", attrs_of({{"batch_dims", Attribute::of_int(1)}}),
                    {info(DType::kFloat32, {2, 3}), info(DType::kInt64, {2, 2})});
            }),
            ErrorCode::kInvalidArgument);
  // Batch dims differ.
  const Error e = error_of([] {
    infer("GatherND", attrs_of({{"batch_dims", Attribute::of_int(1)}}),
          {info(DType::kFloat32, {2, 3}), info(DType::kInt64, {3, 1})});
  });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("batch dimension 0"), std::string::npos) << e.what();
  // batch_dims out of range, scalar indices, float indices, unknown tuple length.
  EXPECT_EQ(code_of([] {
              infer("GatherND", attrs_of({{"batch_dims", Attribute::of_int(2)}}),
                    {info(DType::kFloat32, {2, 3}), info(DType::kInt64, {2, 1})});
            }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] {
              infer("GatherND", {}, {info(DType::kFloat32, {2, 3}), info(DType::kInt64, {})});
            }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] {
              infer("GatherND", {}, {info(DType::kFloat32, {2, 3}), info(DType::kFloat32, {1, 1})});
            }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(
      code_of([] {
        infer("GatherND", {}, {info(DType::kFloat32, {2, 3}), info(DType::kInt64, {1, kDyn})});
      }),
      ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace kiln
