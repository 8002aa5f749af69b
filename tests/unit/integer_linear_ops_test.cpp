// MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv and DynamicQuantizeLinear on the CPU
// backend against sums written out here, with ONNX's rounding (half to even) and saturation, and
// their named errors; MaxPool's Indices and MaxUnpool; bool ReduceMax/ReduceMin.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"

namespace kiln::cpu {
namespace {

template <typename T>
HostTensor tensor(DType dtype, Shape shape, const std::vector<T>& values) {
  HostTensor t(dtype, std::move(shape));
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(T));
  return t;
}

template <typename T>
std::vector<T> values_of(const HostTensor& t) {
  std::vector<T> out(static_cast<size_t>(t.numel()));
  std::memcpy(out.data(), t.bytes.data(), out.size() * sizeof(T));
  return out;
}

std::vector<HostTensor> run(const std::string& op, const std::vector<const HostTensor*>& inputs,
                            size_t outputs = 1, const AttributeMap& attrs = {}) {
  return run_node_on_cpu("int_node", op, attrs, inputs, outputs);
}

void expect_error(const std::function<void()>& fn, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one naming " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int_node"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(IntegerLinearCpu, MatMulIntegerSubtractsPerRowAndPerColumnZeroPoints) {
  const HostTensor a = tensor<uint8_t>(DType::kUInt8, {2, 3}, {1, 2, 3, 250, 0, 7});
  const HostTensor b = tensor<int8_t>(DType::kInt8, {3, 2}, {-128, 1, 127, 2, 0, -3});
  const HostTensor a_zero = tensor<uint8_t>(DType::kUInt8, {2}, {1, 10});
  const HostTensor b_zero = tensor<int8_t>(DType::kInt8, {2}, {0, -1});
  const HostTensor y = run("MatMulInteger", {&a, &b, &a_zero, &b_zero}).at(0);
  ASSERT_EQ(y.dtype, DType::kInt32);
  // Row 0: (0, 1, 2); row 1: (240, -10, -3). Column 0: (-128, 127, 0); column 1: (2, 3, -2).
  EXPECT_EQ(values_of<int32_t>(y), (std::vector<int32_t>{127, -1, 240 * -128 - 1270, 480 - 30 + 6}));
}

TEST(IntegerLinearCpu, QLinearMatMulRoundsHalfToEvenAndSaturates) {
  // One-element K: y = a * b * (0.5 * 1 / 1) + zp, so a * b = 5 gives 2.5 -> 2 and 7 gives 3.5 -> 4.
  const HostTensor a = tensor<uint8_t>(DType::kUInt8, {3, 1}, {5, 7, 255});
  const HostTensor b = tensor<uint8_t>(DType::kUInt8, {1, 1}, {1});
  const HostTensor half = tensor<float>(DType::kFloat32, {}, {0.5f});
  const HostTensor one = tensor<float>(DType::kFloat32, {}, {1.0f});
  const HostTensor zero = tensor<uint8_t>(DType::kUInt8, {}, {0});
  const HostTensor y_zero = tensor<uint8_t>(DType::kUInt8, {}, {200});
  const HostTensor y = run("QLinearMatMul", {&a, &half, &zero, &b, &one, &zero, &one, &y_zero}).at(0);
  EXPECT_EQ(values_of<uint8_t>(y), (std::vector<uint8_t>{202, 204, 255}));
}

TEST(IntegerLinearCpu, ConvIntegerPadsWithTheZeroPoint) {
  // 1x1 input 3x3 of 5s with zero point 5 (so every tap is 0) plus one 9: only windows covering
  // the 9 see 4 * w.
  std::vector<uint8_t> xs(9, 5);
  xs[4] = 9;
  const HostTensor x = tensor<uint8_t>(DType::kUInt8, {1, 1, 3, 3}, xs);
  const HostTensor w = tensor<uint8_t>(DType::kUInt8, {1, 1, 2, 2}, {1, 2, 3, 4});
  const HostTensor x_zero = tensor<uint8_t>(DType::kUInt8, {}, {5});
  AttributeMap attrs;
  attrs.set("pads", Attribute::of_ints({1, 1, 1, 1}));
  const HostTensor y = run("ConvInteger", {&x, &w, &x_zero, nullptr}, 1, attrs).at(0);
  ASSERT_EQ(y.shape, (Shape{1, 1, 4, 4}));
  const std::vector<int32_t> got = values_of<int32_t>(y);
  // Output (1, 1) covers input (0..1, 0..1): the 9 at (1, 1) meets w[1][1] = 4.
  EXPECT_EQ(got[5], 16);
  EXPECT_EQ(got[6], 12);   // input (0..1, 1..2): the 9 at w[1][0]
  EXPECT_EQ(got[10], 4);   // input (1..2, 1..2): w[0][0]
  EXPECT_EQ(got[0], 0);
}

TEST(IntegerLinearCpu, DynamicQuantizeLinearMapsTheRangeWithZeroInside) {
  const HostTensor x = tensor<float>(DType::kFloat32, {4}, {0.0f, 2.0f, -3.0f, 255.0f});
  const std::vector<HostTensor> out = run("DynamicQuantizeLinear", {&x}, 3);
  const float scale = 258.0f / 255.0f;
  EXPECT_FLOAT_EQ(values_of<float>(out[1])[0], scale);
  EXPECT_EQ(values_of<uint8_t>(out[2])[0], 3);  // round(3 / scale) = 3
  EXPECT_EQ(values_of<uint8_t>(out[0]), (std::vector<uint8_t>{3, 5, 0, 255}));
}

TEST(IntegerLinearErrors, NamedErrorsForBadOperands) {
  const HostTensor a = tensor<uint8_t>(DType::kUInt8, {2, 3}, {1, 2, 3, 4, 5, 6});
  const HostTensor b = tensor<uint8_t>(DType::kUInt8, {2, 2}, {1, 2, 3, 4});
  expect_error([&] { run("MatMulInteger", {&a, &b}); }, "inner dimension");
  const HostTensor f = tensor<float>(DType::kFloat32, {3, 2}, {1, 2, 3, 4, 5, 6});
  expect_error([&] { run("MatMulInteger", {&a, &f}); }, "input 1 (B)");
  const HostTensor zp = tensor<int8_t>(DType::kInt8, {}, {0});
  expect_error([&] { run("MatMulInteger", {&a, &a, &zp}); }, "a_zero_point");
  const HostTensor x = tensor<uint8_t>(DType::kUInt8, {1, 2, 2, 2}, {0, 0, 0, 0, 0, 0, 0, 0});
  const HostTensor w = tensor<uint8_t>(DType::kUInt8, {1, 1, 1, 1}, {1});
  expect_error([&] { run("ConvInteger", {&x, &w}); }, "channels");
}

TEST(PoolingCpu, MaxPoolIndicesAreFlatPositionsInBothStorageOrders) {
  std::vector<float> xs(2 * 9);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(i % 9);
  const HostTensor x = tensor<float>(DType::kFloat32, {1, 2, 3, 3}, xs);
  AttributeMap attrs;
  attrs.set("kernel_shape", Attribute::of_ints({2, 2}));
  std::vector<HostTensor> out = run("MaxPool", {&x}, 2, attrs);
  ASSERT_EQ(out[1].dtype, DType::kInt64);
  // Each window's maximum is its bottom-right element; plane 1 adds 9.
  EXPECT_EQ(values_of<int64_t>(out[1]), (std::vector<int64_t>{4, 5, 7, 8, 13, 14, 16, 17}));
  attrs.set("storage_order", Attribute::of_int(1));
  out = run("MaxPool", {&x}, 2, attrs);
  // Column-major: h + w * 3.
  EXPECT_EQ(values_of<int64_t>(out[1]), (std::vector<int64_t>{4, 7, 5, 8, 13, 16, 14, 17}));
}

TEST(PoolingCpu, MaxUnpoolScattersIntoTheUnpooledShapeAtTheOrigin) {
  const HostTensor x = tensor<float>(DType::kFloat32, {1, 1, 1, 2}, {7.0f, 9.0f});
  const HostTensor i = tensor<int64_t>(DType::kInt64, {1, 1, 1, 2}, {2, 3});
  const HostTensor shape = tensor<int64_t>(DType::kInt64, {4}, {1, 1, 3, 5});
  AttributeMap attrs;
  attrs.set("kernel_shape", Attribute::of_ints({2, 2}));
  attrs.set("strides", Attribute::of_ints({2, 2}));
  const HostTensor y = run("MaxUnpool", {&x, &i, &shape}, 1, attrs).at(0);
  ASSERT_EQ(y.shape, (Shape{1, 1, 3, 5}));
  std::vector<float> want(15, 0.0f);
  // The unpooled shape is [1, 1, 2, 4]: indices 2 and 3 are (0, 2) and (0, 3), the same places
  // of the 5-wide output's first row.
  want[2] = 7.0f;
  want[3] = 9.0f;
  EXPECT_EQ(values_of<float>(y), want);
  const HostTensor bad = tensor<int64_t>(DType::kInt64, {1, 1, 1, 2}, {2, 8});
  expect_error([&] { run("MaxUnpool", {&x, &bad}, 1, attrs); }, "index 8");
}

TEST(ReduceCpu, BoolReduceMaxIsAnyAndReduceMinIsAll) {
  const HostTensor x = tensor<uint8_t>(DType::kBool, {2, 3}, {0, 1, 0, 1, 1, 1});
  const HostTensor axes = tensor<int64_t>(DType::kInt64, {1}, {1});
  AttributeMap attrs;
  attrs.set("keepdims", Attribute::of_int(0));
  EXPECT_EQ(values_of<uint8_t>(run("ReduceMax", {&x, &axes}, 1, attrs).at(0)), (std::vector<uint8_t>{1, 1}));
  EXPECT_EQ(values_of<uint8_t>(run("ReduceMin", {&x, &axes}, 1, attrs).at(0)), (std::vector<uint8_t>{0, 1}));
  const HostTensor empty(DType::kBool, Shape{2, 0});
  EXPECT_EQ(values_of<uint8_t>(run("ReduceMax", {&empty, &axes}, 1, attrs).at(0)), (std::vector<uint8_t>{0, 0}));
  EXPECT_EQ(values_of<uint8_t>(run("ReduceMin", {&empty, &axes}, 1, attrs).at(0)), (std::vector<uint8_t>{1, 1}));
}

}  // namespace
}  // namespace kiln::cpu
