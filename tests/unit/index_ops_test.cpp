// Tests of CumSum, ArgMax, ArgMin and TopK on the CPU backend (the reference): hand-computed
// results for every attribute mode, NaN and tie ordering, integer wrap-around, 16-bit dtypes,
// random inputs against naive references written here, infer with unknown value inputs, and the
// named errors for bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/half.hpp"
#include "ops/op_registry.hpp"

namespace kiln::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

template <typename T>
HostTensor make(DType dtype, Shape shape, const std::vector<T>& values) {
  HostTensor t(dtype, std::move(shape));
  EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}
HostTensor f32(Shape shape, const std::vector<float>& v) {
  return make(DType::kFloat32, shape, v);
}
HostTensor i64(Shape shape, const std::vector<int64_t>& v) {
  return make(DType::kInt64, shape, v);
}
HostTensor i32(Shape shape, const std::vector<int32_t>& v) {
  return make(DType::kInt32, shape, v);
}

HostTensor f16(Shape shape, const std::vector<float>& v) {
  HostTensor t(DType::kFloat16, std::move(shape));
  for (size_t i = 0; i < v.size(); ++i) t.data<uint16_t>()[i] = float_to_half(v[i]);
  return t;
}

template <typename T>
std::vector<T> values_of(const HostTensor& t) {
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}
std::vector<float> half_values(const HostTensor& t) {
  std::vector<float> out;
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(half_to_float(t.data<uint16_t>()[i]));
  return out;
}

AttributeMap attrs_of(std::vector<std::pair<std::string, int64_t>> items) {
  AttributeMap attrs;
  for (auto& [name, value] : items) attrs.set(name, Attribute::of_int(value));
  return attrs;
}

std::vector<HostTensor> run(const std::string& op, const AttributeMap& attrs,
                            std::vector<const HostTensor*> inputs, size_t outputs = 1) {
  return run_node_on_cpu("idx_node", op, attrs, inputs, outputs);
}

// Expects a kiln::Error with `code` whose message names the node and contains `fragment`.
template <typename Fn>
void expect_error(Fn&& fn, ErrorCode code, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    const std::string message = error.what();
    EXPECT_NE(message.find("idx_node"), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

// ---- CumSum ---------------------------------------------------------------------------------

TEST(IndexOpsCumSum, EveryModeOnOneLine) {
  const HostTensor x = f32({4}, {1, 2, 3, 4});
  const HostTensor axis = i64({}, {0});
  const std::vector<std::pair<AttributeMap, std::vector<float>>> modes = {
      {attrs_of({}), {1, 3, 6, 10}},
      {attrs_of({{"exclusive", 1}}), {0, 1, 3, 6}},
      {attrs_of({{"reverse", 1}}), {10, 9, 7, 4}},
      {attrs_of({{"exclusive", 1}, {"reverse", 1}}), {9, 7, 4, 0}},
  };
  for (const auto& [attrs, want] : modes) {
    const HostTensor y = run("CumSum", attrs, {&x, &axis}).at(0);
    EXPECT_EQ(y.dtype, DType::kFloat32);
    EXPECT_EQ(y.shape, Shape({4}));
    EXPECT_EQ(values_of<float>(y), want);
  }
}

TEST(IndexOpsCumSum, MiddleAxisWithNegativeIndexAndInt32Axis) {
  // [2, 3, 2]: lines along axis 1 have stride 2.
  const HostTensor x = f32({2, 3, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  const std::vector<float> want = {1, 2, 4, 6, 9, 12, 7, 8, 16, 18, 27, 30};
  const HostTensor axis_pos = i64({1}, {1});
  const HostTensor axis_neg = i32({}, {-2});
  EXPECT_EQ(values_of<float>(run("CumSum", {}, {&x, &axis_pos}).at(0)), want);
  EXPECT_EQ(values_of<float>(run("CumSum", {}, {&x, &axis_neg}).at(0)), want);
  const HostTensor axis0 = i64({}, {0});
  EXPECT_EQ(values_of<float>(run("CumSum", attrs_of({{"reverse", 1}}), {&x, &axis0}).at(0)),
            std::vector<float>({8, 10, 12, 14, 16, 18, 7, 8, 9, 10, 11, 12}));
}

TEST(IndexOpsCumSum, IntegersAreExactAndWrap) {
  const int32_t max32 = std::numeric_limits<int32_t>::max();
  const HostTensor x32 = i32({3}, {max32, 1, 5});
  const HostTensor axis = i64({}, {0});
  const HostTensor y32 = run("CumSum", {}, {&x32, &axis}).at(0);
  EXPECT_EQ(y32.dtype, DType::kInt32);
  EXPECT_EQ(values_of<int32_t>(y32),
            std::vector<int32_t>({max32, std::numeric_limits<int32_t>::min(),
                                  std::numeric_limits<int32_t>::min() + 5}));
  // Beyond float precision: exact int64 sums.
  const int64_t big = (int64_t{1} << 53) + 1;
  const HostTensor x64 = i64({2, 2}, {big, 1, 2, -3});
  const HostTensor axis1 = i64({}, {1});
  EXPECT_EQ(values_of<int64_t>(run("CumSum", attrs_of({{"exclusive", 1}}), {&x64, &axis1}).at(0)),
            std::vector<int64_t>({0, big, 0, 2}));
}

TEST(IndexOpsCumSum, Float16KeepsItsDtype) {
  const HostTensor x = f16({2, 3}, {0.5f, 1.0f, 1.5f, -1.0f, 2.0f, 0.25f});
  const HostTensor axis = i64({}, {-1});
  const HostTensor y = run("CumSum", {}, {&x, &axis}).at(0);
  EXPECT_EQ(y.dtype, DType::kFloat16);
  EXPECT_EQ(half_values(y), std::vector<float>({0.5f, 1.5f, 3.0f, -1.0f, 1.0f, 1.25f}));
}

TEST(IndexOpsCumSum, RandomAgainstNaiveReference) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  const Shape shape = {3, 5, 4, 2};
  HostTensor x(DType::kFloat32, shape);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = dist(rng);
  for (int64_t axis_value = 0; axis_value < 4; ++axis_value) {
    for (int mode = 0; mode < 4; ++mode) {
      const bool exclusive = (mode & 1) != 0;
      const bool reverse = (mode & 2) != 0;
      const HostTensor axis = i64({}, {axis_value});
      const HostTensor y =
          run("CumSum", attrs_of({{"exclusive", exclusive}, {"reverse", reverse}}), {&x, &axis})
              .at(0);
      // Reference: for each element, sum the elements on its line that come before it.
      int64_t stride = 1;
      for (size_t d = static_cast<size_t>(axis_value) + 1; d < shape.size(); ++d)
        stride *= shape[d];
      const int64_t length = shape[static_cast<size_t>(axis_value)];
      for (int64_t e = 0; e < x.numel(); ++e) {
        const int64_t pos = (e / stride) % length;
        const int64_t start = e - pos * stride;
        double sum = 0;
        for (int64_t j = 0; j < length; ++j) {
          const bool before = reverse ? j > pos : j < pos;
          if (before || (j == pos && !exclusive)) sum += x.data<float>()[start + j * stride];
        }
        ASSERT_NEAR(y.data<float>()[e], sum, 1e-5)
            << "axis " << axis_value << " mode " << mode << " element " << e;
      }
    }
  }
}

TEST(IndexOpsCumSum, EmptyInputGivesEmptyOutput) {
  const HostTensor x(DType::kFloat32, {2, 0, 3});
  const HostTensor axis = i64({}, {1});
  const HostTensor y = run("CumSum", {}, {&x, &axis}).at(0);
  EXPECT_EQ(y.shape, Shape({2, 0, 3}));
}

TEST(IndexOpsCumSum, BadInputsAreNamedErrors) {
  const HostTensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  const HostTensor axis_far = i64({}, {2});
  expect_error(
      [&] {
        run("CumSum", {}, {&x, &axis_far});
      },
      ErrorCode::kInvalidArgument, "out of range");
  const HostTensor axis_two = i64({2}, {0, 1});
  expect_error([&] { run("CumSum", {}, {&x, &axis_two}); }, ErrorCode::kInvalidArgument, "axis");
  const HostTensor axis_float = f32({}, {0});
  expect_error(
      [&] {
        run("CumSum", {}, {&x, &axis_float});
      },
      ErrorCode::kInvalidArgument, "int32 or int64");
  const HostTensor axis = i64({}, {0});
  HostTensor flags(DType::kBool, {2});
  expect_error([&] { run("CumSum", {}, {&flags, &axis}); }, ErrorCode::kUnsupported, "bool");
  expect_error(
      [&] {
        run("CumSum", attrs_of({{"exclusive", 2}}), {&x, &axis});
      },
      ErrorCode::kInvalidArgument, "exclusive");
}

TEST(IndexOpsCumSum, InferWithUnknownAxisKeepsTheShape) {
  const ops::OpDef* def = ops::find_op("CumSum");
  ASSERT_NE(def, nullptr);
  std::vector<ops::ValueInfo> inputs(2);
  inputs[0].dtype = DType::kInt64;
  inputs[0].shape = {kDynamicDim, 7};
  inputs[1].dtype = DType::kInt64;
  inputs[1].shape = {};
  std::vector<ops::ValueInfo> outputs(1);
  ops::infer_node(*def, "idx_node", {}, inputs, outputs);
  EXPECT_EQ(outputs[0].dtype, DType::kInt64);
  EXPECT_EQ(outputs[0].shape, Shape({kDynamicDim, 7}));
}

// ---- ArgMax / ArgMin ------------------------------------------------------------------------

TEST(IndexOpsArgReduce, AxesKeepdimsAndTies) {
  // Rows: ties at the max (3 at 0 and 2) and at the min (1 at 1 and 3).
  const HostTensor x = f32({2, 4}, {3, 1, 3, 2, 0, 1, 5, 1});
  auto run1 = [&](const std::string& op, AttributeMap attrs) { return run(op, attrs, {&x}).at(0); };
  HostTensor y = run1("ArgMax", attrs_of({{"axis", 1}}));
  EXPECT_EQ(y.dtype, DType::kInt64);
  EXPECT_EQ(y.shape, Shape({2, 1}));
  EXPECT_EQ(values_of<int64_t>(y), std::vector<int64_t>({0, 2}));
  y = run1("ArgMax", attrs_of({{"axis", -1}, {"select_last_index", 1}, {"keepdims", 0}}));
  EXPECT_EQ(y.shape, Shape({2}));
  EXPECT_EQ(values_of<int64_t>(y), std::vector<int64_t>({2, 2}));
  y = run1("ArgMin", attrs_of({{"axis", 1}, {"keepdims", 0}}));
  EXPECT_EQ(values_of<int64_t>(y), std::vector<int64_t>({1, 0}));
  y = run1("ArgMin", attrs_of({{"axis", 1}, {"select_last_index", 1}}));
  EXPECT_EQ(values_of<int64_t>(y), std::vector<int64_t>({1, 0}));
  // Default axis 0, keepdims 1: along columns.
  y = run1("ArgMax", {});
  EXPECT_EQ(y.shape, Shape({1, 4}));
  EXPECT_EQ(values_of<int64_t>(y), std::vector<int64_t>({0, 0, 1, 0}));
  y = run1("ArgMin", attrs_of({{"select_last_index", 1}}));
  EXPECT_EQ(values_of<int64_t>(y), std::vector<int64_t>({1, 1, 0, 1}));
}

TEST(IndexOpsArgReduce, NaNWinsLikeNumpy) {
  const HostTensor x = f32({4, 4}, {1, kNaN, 3, 2,     // NaN in the middle
                                    kNaN, 1, 3, 0,     // NaN first
                                    1, 3, kNaN, kNaN,  // two NaNs
                                    -1, -1, -4, -4});  // no NaN
  const auto argmax = values_of<int64_t>(run("ArgMax", attrs_of({{"axis", 1}}), {&x}).at(0));
  EXPECT_EQ(argmax, std::vector<int64_t>({1, 0, 2, 0}));
  const auto argmin = values_of<int64_t>(run("ArgMin", attrs_of({{"axis", 1}}), {&x}).at(0));
  EXPECT_EQ(argmin, std::vector<int64_t>({1, 0, 2, 2}));
  const auto last = values_of<int64_t>(
      run("ArgMax", attrs_of({{"axis", 1}, {"select_last_index", 1}}), {&x}).at(0));
  EXPECT_EQ(last, std::vector<int64_t>({1, 0, 3, 1}));
}

TEST(IndexOpsArgReduce, IntegerAndHalfInputs) {
  const HostTensor x64 = i64({3, 2}, {std::numeric_limits<int64_t>::min(), 7, 9, 7, 9, -2});
  EXPECT_EQ(values_of<int64_t>(run("ArgMax", attrs_of({{"keepdims", 0}}), {&x64}).at(0)),
            std::vector<int64_t>({1, 0}));
  EXPECT_EQ(values_of<int64_t>(run("ArgMin", attrs_of({{"keepdims", 0}}), {&x64}).at(0)),
            std::vector<int64_t>({0, 2}));
  const HostTensor x32 = i32({2, 2}, {4, 4, -1, 8});
  EXPECT_EQ(values_of<int64_t>(
                run("ArgMax", attrs_of({{"axis", 1}, {"select_last_index", 1}}), {&x32}).at(0)),
            std::vector<int64_t>({1, 1}));
  const HostTensor h = f16({1, 3}, {0.5f, -2.0f, 0.75f});
  EXPECT_EQ(values_of<int64_t>(run("ArgMax", attrs_of({{"axis", 1}}), {&h}).at(0)),
            std::vector<int64_t>({2}));
}

TEST(IndexOpsArgReduce, RandomAgainstNaiveReference) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> dist(-3, 3);  // many ties
  const Shape shape = {3, 6, 5};
  HostTensor x(DType::kFloat32, shape);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(dist(rng));
  for (int64_t axis = 0; axis < 3; ++axis) {
    for (int last = 0; last < 2; ++last) {
      for (const bool is_max : {true, false}) {
        const HostTensor y =
            run(is_max ? "ArgMax" : "ArgMin",
                attrs_of({{"axis", axis}, {"keepdims", 0}, {"select_last_index", last}}), {&x})
                .at(0);
        int64_t stride = 1;
        for (size_t d = static_cast<size_t>(axis) + 1; d < 3; ++d) stride *= shape[d];
        const int64_t length = shape[static_cast<size_t>(axis)];
        for (int64_t o = 0; o < y.numel(); ++o) {
          const int64_t start = (o / stride) * stride * length + o % stride;
          float best = is_max ? -1e9f : 1e9f;
          int64_t best_at = -1;
          for (int64_t j = 0; j < length; ++j) {
            const float v = x.data<float>()[start + j * stride];
            const bool better = is_max ? v > best : v < best;
            if (better || (last && v == best)) {
              best = v;
              best_at = j;
            }
          }
          ASSERT_EQ(y.data<int64_t>()[o], best_at) << "axis " << axis << " output " << o;
        }
      }
    }
  }
}

TEST(IndexOpsArgReduce, BadInputsAreNamedErrors) {
  const HostTensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  expect_error(
      [&] {
        run("ArgMax", attrs_of({{"axis", 2}}), {&x});
      },
      ErrorCode::kInvalidArgument, "out of range");
  expect_error(
      [&] {
        run("ArgMin", attrs_of({{"select_last_index", 3}}), {&x});
      },
      ErrorCode::kInvalidArgument, "select_last_index");
  const HostTensor empty(DType::kFloat32, {2, 0});
  expect_error(
      [&] {
        run("ArgMax", attrs_of({{"axis", 1}}), {&empty});
      },
      ErrorCode::kInvalidArgument, "length 0");
  const HostTensor scalar = f32({}, {1});
  expect_error([&] { run("ArgMax", {}, {&scalar}); }, ErrorCode::kInvalidArgument, "rank");
  HostTensor bytes(DType::kUInt8, {3});
  expect_error([&] { run("ArgMax", {}, {&bytes}); }, ErrorCode::kUnsupported, "uint8");
}

// ---- TopK -----------------------------------------------------------------------------------

TEST(IndexOpsTopK, LargestAndSmallestWithTies) {
  const HostTensor x = f32({5}, {1, 5, 3, 5, 2});
  const HostTensor k3 = i64({1}, {3});
  auto out = run("TopK", {}, {&x, &k3}, 2);
  EXPECT_EQ(out[0].dtype, DType::kFloat32);
  EXPECT_EQ(out[1].dtype, DType::kInt64);
  EXPECT_EQ(out[0].shape, Shape({3}));
  EXPECT_EQ(values_of<float>(out[0]), std::vector<float>({5, 5, 3}));
  EXPECT_EQ(values_of<int64_t>(out[1]), std::vector<int64_t>({1, 3, 2}));
  const HostTensor k2 = i64({1}, {2});
  out = run("TopK", attrs_of({{"largest", 0}, {"sorted", 0}}), {&x, &k2}, 2);
  EXPECT_EQ(values_of<float>(out[0]), std::vector<float>({1, 2}));
  EXPECT_EQ(values_of<int64_t>(out[1]), std::vector<int64_t>({0, 4}));
}

TEST(IndexOpsTopK, InnerAxisAndNaNRankedHighest) {
  // [3, 2], TopK along axis 0 (stride 2); column 1 holds a NaN.
  const HostTensor x = f32({3, 2}, {1, kNaN, 4, 0, -2, 7});
  const HostTensor k2 = i64({1}, {2});
  auto out = run("TopK", attrs_of({{"axis", 0}}), {&x, &k2}, 2);
  EXPECT_EQ(out[0].shape, Shape({2, 2}));
  const auto largest = values_of<float>(out[0]);
  EXPECT_EQ(largest[0], 4.0f);
  EXPECT_TRUE(std::isnan(largest[1]));
  EXPECT_EQ(largest[2], 1.0f);
  EXPECT_EQ(largest[3], 7.0f);
  EXPECT_EQ(values_of<int64_t>(out[1]), std::vector<int64_t>({1, 0, 0, 2}));
  out = run("TopK", attrs_of({{"axis", -2}, {"largest", 0}}), {&x, &k2}, 2);
  EXPECT_EQ(values_of<float>(out[0]), std::vector<float>({-2, 0, 1, 7}));
  EXPECT_EQ(values_of<int64_t>(out[1]), std::vector<int64_t>({2, 1, 0, 2}));
}

TEST(IndexOpsTopK, IntegerHalfAndZeroK) {
  const HostTensor x32 = i32({2, 3}, {3, -1, 3, 0, 9, 2});
  const HostTensor k2 = i64({1}, {2});
  auto out = run("TopK", {}, {&x32, &k2}, 2);
  EXPECT_EQ(out[0].dtype, DType::kInt32);
  EXPECT_EQ(values_of<int32_t>(out[0]), std::vector<int32_t>({3, 3, 9, 2}));
  EXPECT_EQ(values_of<int64_t>(out[1]), std::vector<int64_t>({0, 2, 1, 2}));
  const HostTensor h = f16({4}, {0.5f, -1.0f, 2.5f, 1.0f});
  out = run("TopK", {}, {&h, &k2}, 2);
  EXPECT_EQ(out[0].dtype, DType::kFloat16);
  EXPECT_EQ(half_values(out[0]), std::vector<float>({2.5f, 1.0f}));
  EXPECT_EQ(values_of<int64_t>(out[1]), std::vector<int64_t>({2, 3}));
  const HostTensor k0 = i64({1}, {0});
  out = run("TopK", {}, {&x32, &k0}, 2);
  EXPECT_EQ(out[0].shape, Shape({2, 0}));
  EXPECT_EQ(out[1].shape, Shape({2, 0}));
}

TEST(IndexOpsTopK, RandomAgainstStableSort) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> dist(-20, 20);  // ties
  const Shape shape = {4, 50, 3};
  HostTensor x(DType::kInt64, shape);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<int64_t>()[i] = dist(rng);
  for (const int64_t k : {1, 7, 50}) {
    for (const bool largest : {true, false}) {
      const HostTensor kt = i64({1}, {k});
      const auto out = run("TopK", attrs_of({{"axis", 1}, {"largest", largest}}), {&x, &kt}, 2);
      ASSERT_EQ(out[0].shape, Shape({4, k, 3}));
      for (int64_t o = 0; o < 4; ++o) {
        for (int64_t n = 0; n < 3; ++n) {
          std::vector<std::pair<int64_t, int64_t>> line;
          for (int64_t i = 0; i < 50; ++i)
            line.push_back({x.data<int64_t>()[(o * 50 + i) * 3 + n], i});
          std::stable_sort(line.begin(), line.end(), [&](const auto& a, const auto& b) {
            return largest ? a.first > b.first : a.first < b.first;
          });
          for (int64_t j = 0; j < k; ++j) {
            const int64_t at = (o * k + j) * 3 + n;
            ASSERT_EQ(out[0].data<int64_t>()[at], line[static_cast<size_t>(j)].first);
            ASSERT_EQ(out[1].data<int64_t>()[at], line[static_cast<size_t>(j)].second);
          }
        }
      }
    }
  }
}

TEST(IndexOpsTopK, BadInputsAreNamedErrors) {
  const HostTensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  const HostTensor k4 = i64({1}, {4});
  expect_error(
      [&] {
        run("TopK", {}, {&x, &k4}, 2);
      },
      ErrorCode::kInvalidArgument, "larger than the axis length 3");
  const HostTensor negative = i64({1}, {-1});
  expect_error(
      [&] {
        run("TopK", {}, {&x, &negative}, 2);
      },
      ErrorCode::kInvalidArgument, "negative");
  const HostTensor two = i64({2}, {1, 1});
  expect_error([&] { run("TopK", {}, {&x, &two}, 2); }, ErrorCode::kInvalidArgument, "K");
  const HostTensor k1 = i64({1}, {1});
  expect_error(
      [&] {
        run("TopK", attrs_of({{"axis", -3}}), {&x, &k1}, 2);
      },
      ErrorCode::kInvalidArgument, "out of range");
  expect_error(
      [&] {
        run("TopK", attrs_of({{"largest", 5}}), {&x, &k1}, 2);
      },
      ErrorCode::kInvalidArgument, "largest");
  HostTensor bytes(DType::kInt8, {3});
  expect_error([&] { run("TopK", {}, {&bytes, &k1}, 2); }, ErrorCode::kUnsupported, "int8");
}

TEST(IndexOpsTopK, InferWithUnknownKLeavesTheAxisDynamic) {
  const ops::OpDef* def = ops::find_op("TopK");
  ASSERT_NE(def, nullptr);
  std::vector<ops::ValueInfo> inputs(2);
  inputs[0].dtype = DType::kFloat16;
  inputs[0].shape = {2, 50257};
  inputs[1].dtype = DType::kInt64;
  inputs[1].shape = {1};
  std::vector<ops::ValueInfo> outputs(2);
  ops::infer_node(*def, "idx_node", {}, inputs, outputs);
  EXPECT_EQ(outputs[0].dtype, DType::kFloat16);
  EXPECT_EQ(outputs[0].shape, Shape({2, kDynamicDim}));
  EXPECT_EQ(outputs[1].dtype, DType::kInt64);
  EXPECT_EQ(outputs[1].shape, Shape({2, kDynamicDim}));
  // A known K fixes the extent.
  const HostTensor k = i64({1}, {40});
  inputs[1].value = &k;
  ops::infer_node(*def, "idx_node", attrs_of({{"axis", 1}}), inputs, outputs);
  EXPECT_EQ(outputs[0].shape, Shape({2, 40}));
}

}  // namespace
}  // namespace kiln::cpu
