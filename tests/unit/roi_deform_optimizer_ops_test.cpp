// RoiAlign, DeformConv, the ai.onnx.preview.training optimizers, the ai.onnx.ml Binarizer and
// ArrayFeatureExtractor, float64 Gemm/MatMul/Softmax and uint8 MaxPool on the CPU backend:
// kernels against hand-computed values, infer functions, and errors naming the node.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "node_error_expectation.hpp"
#include "ops/op_registry.hpp"

namespace kiln::cpu {
namespace {

template <typename T>
HostTensor tensor(DType dtype, Shape shape, std::vector<T> values) {
  HostTensor t(dtype, std::move(shape));
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(T));
  return t;
}
HostTensor floats(Shape shape, std::vector<float> v) { return tensor(DType::kFloat32, std::move(shape), v); }
HostTensor doubles(Shape shape, std::vector<double> v) { return tensor(DType::kFloat64, std::move(shape), v); }
HostTensor int64s(Shape shape, std::vector<int64_t> v) { return tensor(DType::kInt64, std::move(shape), v); }

HostTensor ramp(Shape shape) {
  HostTensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i);
  return t;
}

std::vector<HostTensor> run(const std::string& op, const AttributeMap& attrs,
                            std::vector<const HostTensor*> inputs, size_t outputs = 1) {
  return run_node_on_cpu("test_node", op, attrs, inputs, outputs);
}

using unit_test::expect_node_error;

AttributeMap attrs_of(std::vector<std::pair<std::string, Attribute>> entries) {
  AttributeMap attrs;
  for (auto& [name, value] : entries) attrs.set(name, std::move(value));
  return attrs;
}

// ---- RoiAlign ------------------------------------------------------------------------------------

TEST(RoiAlign, OneSampleIsTheBilinearValueAtTheBinCentre) {
  const HostTensor x = ramp({1, 1, 4, 4});  // value = 4 * row + col
  const HostTensor rois = floats({1, 4}, {0, 0, 3, 3});
  const HostTensor indices = int64s({1}, {0});
  AttributeMap attrs = attrs_of({{"sampling_ratio", Attribute::of_int(1)},
                                 {"coordinate_transformation_mode", Attribute::of_string("output_half_pixel")}});
  // One bin, one sample at (1.5, 1.5): 4 * 1.5 + 1.5.
  EXPECT_FLOAT_EQ(run("RoiAlign", attrs, {&x, &rois, &indices}).at(0).data<float>()[0], 7.5f);
  // Max mode: the largest weighted corner, 0.25 * 10.
  attrs.set("mode", Attribute::of_string("max"));
  EXPECT_FLOAT_EQ(run("RoiAlign", attrs, {&x, &rois, &indices}).at(0).data<float>()[0], 2.5f);
  // half_pixel shifts the region by half a pixel: the sample sits at (1, 1).
  attrs.set("mode", Attribute::of_string("avg"));
  attrs.set("coordinate_transformation_mode", Attribute::of_string("half_pixel"));
  EXPECT_FLOAT_EQ(run("RoiAlign", attrs, {&x, &rois, &indices}).at(0).data<float>()[0], 5.0f);
}

TEST(RoiAlign, BadBatchIndexAndModeAreErrorsNamingTheNode) {
  const HostTensor x = ramp({1, 1, 4, 4});
  const HostTensor rois = floats({1, 4}, {0, 0, 3, 3});
  const HostTensor bad_index = int64s({1}, {1});
  expect_node_error([&] { run("RoiAlign", {}, {&x, &rois, &bad_index}); }, ErrorCode::kInvalidArgument,
               "input 2 (batch_indices) [0] = 1 is outside [0, 1)");
  const HostTensor index = int64s({1}, {0});
  expect_node_error([&] { run("RoiAlign", attrs_of({{"mode", Attribute::of_string("sum")}}), {&x, &rois, &index}); },
               ErrorCode::kInvalidArgument, "attribute 'mode' must be \"avg\" or \"max\"");
}

// ---- DeformConv ----------------------------------------------------------------------------------

TEST(DeformConv, ZeroOffsetsAreAConvolutionAndAMaskScalesTheTaps) {
  const HostTensor x = ramp({1, 2, 4, 5});
  HostTensor w = ramp({3, 2, 2, 2});
  const HostTensor bias = floats({3}, {0.5f, -1.0f, 2.0f});
  HostTensor offset(DType::kFloat32, {1, 8, 3, 4});  // zeros
  const AttributeMap attrs;
  const HostTensor conv = run("Conv", attrs, {&x, &w, &bias}).at(0);
  const HostTensor deform = run("DeformConv", attrs, {&x, &w, &offset, &bias}).at(0);
  ASSERT_EQ(deform.shape, (Shape{1, 3, 3, 4}));
  for (int64_t i = 0; i < conv.numel(); ++i) {
    EXPECT_NEAR(deform.data<float>()[i], conv.data<float>()[i], 1e-3f) << i;
  }
  HostTensor mask(DType::kFloat32, {1, 4, 3, 4});
  for (int64_t i = 0; i < mask.numel(); ++i) mask.data<float>()[i] = 0.5f;
  const HostTensor halved = run("DeformConv", attrs, {&x, &w, &offset, nullptr, &mask}).at(0);
  const HostTensor plain = run("DeformConv", attrs, {&x, &w, &offset}).at(0);
  for (int64_t i = 0; i < plain.numel(); ++i) {
    EXPECT_NEAR(halved.data<float>()[i], 0.5f * plain.data<float>()[i], 1e-3f) << i;
  }
}

TEST(DeformConv, AnOffsetOfOnePixelShiftsTheSampleAndOutsideReadsZero) {
  const HostTensor x = ramp({1, 1, 1, 3});  // 0 1 2
  const HostTensor w = floats({1, 1, 1, 1}, {1.0f});
  const HostTensor offset = floats({1, 2, 1, 3}, {0, 0, 0, 1.0f, 0.5f, 1.0f});  // dy then dx
  const HostTensor y = run("DeformConv", {}, {&x, &w, &offset}).at(0);
  EXPECT_FLOAT_EQ(y.data<float>()[0], 1.0f);   // x at 0 + 1
  EXPECT_FLOAT_EQ(y.data<float>()[1], 1.5f);   // halfway between 1 and 2
  EXPECT_FLOAT_EQ(y.data<float>()[2], 0.0f);   // x at 3: outside
}

TEST(DeformConv, InferChecksTheOffsetAndMaskShapes) {
  std::vector<ops::ValueInfo> out(1);
  const std::vector<ops::ValueInfo> inputs = {{DType::kFloat32, {1, 4, 5, 5}},
                                              {DType::kFloat32, {2, 2, 3, 3}},
                                              {DType::kFloat32, {1, 36, 3, 3}}};
  const AttributeMap attrs = attrs_of({{"group", Attribute::of_int(2)}, {"offset_group", Attribute::of_int(2)}});
  ops::infer_node(*ops::find_op("DeformConv"), "test_node", attrs, inputs, out);
  EXPECT_EQ(out[0].shape, (Shape{1, 2, 3, 3}));
  std::vector<ops::ValueInfo> bad = inputs;
  bad[2].shape = {1, 18, 3, 3};
  expect_node_error([&] { ops::infer_node(*ops::find_op("DeformConv"), "test_node", attrs, bad, out); },
               ErrorCode::kInvalidArgument, "input 2 (offset) has 18 channels, expected offset_group 2");
}

// ---- optimizers ----------------------------------------------------------------------------------

TEST(Optimizers, MomentumAndAdagradFollowTheirFormulas) {
  const HostTensor r = floats({}, {0.5f});
  const HostTensor t0 = int64s({}, {0});
  const HostTensor t1 = int64s({}, {1});
  const HostTensor x = floats({2}, {1.0f, -2.0f});
  const HostTensor g = floats({2}, {0.5f, 1.0f});
  const HostTensor v = floats({2}, {2.0f, 0.0f});
  const AttributeMap momentum = attrs_of({{"alpha", Attribute::of_float(0.5f)}, {"beta", Attribute::of_float(0.25f)},
                                          {"norm_coefficient", Attribute::of_float(0.0f)},
                                          {"mode", Attribute::of_string("standard")}});
  // T = 0: v = 0.5 * v + 1 * g; x = x - 0.5 * v.
  auto out = run("Momentum", momentum, {&r, &t0, &x, &g, &v}, 2);
  EXPECT_FLOAT_EQ(out[1].data<float>()[0], 1.5f);
  EXPECT_FLOAT_EQ(out[0].data<float>()[0], 0.25f);
  // T = 1: the gradient's coefficient is beta.
  out = run("Momentum", momentum, {&r, &t1, &x, &g, &v}, 2);
  EXPECT_FLOAT_EQ(out[1].data<float>()[0], 1.125f);
  // Adagrad: h = h + g^2, x = x - r * g / (sqrt(h) + epsilon).
  const AttributeMap adagrad = attrs_of({{"epsilon", Attribute::of_float(0.0f)}});
  out = run("Adagrad", adagrad, {&r, &t0, &x, &g, &v}, 2);
  EXPECT_FLOAT_EQ(out[1].data<float>()[0], 2.25f);
  EXPECT_FLOAT_EQ(out[0].data<float>()[0], 1.0f - 0.5f * 0.5f / 1.5f);
}

TEST(Optimizers, InputsThatMakeNoWholeGroupsAreErrorsNamingTheNode) {
  const HostTensor r = floats({}, {0.5f});
  const HostTensor t = int64s({}, {0});
  const HostTensor x = floats({2}, {1.0f, -2.0f});
  expect_node_error([&] { run("Adam", {}, {&r, &t, &x, &x, &x}, 3); }, ErrorCode::kInvalidArgument,
               "takes R, T and 4 inputs per optimized tensor");
  const HostTensor t_float = floats({}, {0.0f});
  expect_node_error([&] { run("Adagrad", {}, {&r, &t_float, &x, &x, &x}, 2); }, ErrorCode::kInvalidArgument,
               "input 1 (T) must be int64, got float32");
}

// ---- ai.onnx.ml ----------------------------------------------------------------------------------

TEST(MlOps, BinarizerAndArrayFeatureExtractor) {
  const HostTensor x = floats({2, 3}, {-1.0f, 0.5f, 2.0f, 1.0f, 1.5f, NAN});
  const HostTensor y = run("Binarizer", attrs_of({{"threshold", Attribute::of_float(1.0f)}}), {&x}).at(0);
  const std::vector<float> want = {0, 0, 1, 0, 1, 0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(y.data<float>()[i], want[i]) << i;
  const HostTensor indices = int64s({2}, {2, 0});
  const HostTensor z = run("ArrayFeatureExtractor", {}, {&x, &indices}).at(0);
  ASSERT_EQ(z.shape, (Shape{2, 2}));
  EXPECT_EQ(z.data<float>()[0], 2.0f);
  EXPECT_EQ(z.data<float>()[3], 1.0f);
  const HostTensor bad = int64s({1}, {3});
  expect_node_error([&] { run("ArrayFeatureExtractor", {}, {&x, &bad}); }, ErrorCode::kInvalidArgument,
               "input 1 (Y) [0] = 3 is outside [0, 3)");
}

// ---- float64 and integer dtypes of existing ops --------------------------------------------------

TEST(WiderDtypes, Float64GemmMatMulAndSoftmaxComputeInDouble) {
  const HostTensor a = doubles({1, 3}, {1.0, 1e-12, -1.0});
  const HostTensor b = doubles({3, 1}, {1.0, 1.0, 1.0});
  const HostTensor m = run("MatMul", {}, {&a, &b}).at(0);
  ASSERT_EQ(m.dtype, DType::kFloat64);
  EXPECT_NEAR(m.data<double>()[0], 1e-12, 1e-15);  // float32 would give 0
  const HostTensor c = doubles({1}, {0.5});
  const HostTensor gemm = run("Gemm", attrs_of({{"beta", Attribute::of_float(2.0f)}}), {&a, &b, &c}).at(0);
  EXPECT_NEAR(gemm.data<double>()[0], 1.0 + 1e-12, 1e-15);
  const HostTensor x = doubles({3}, {0.0, 1e-12, 2e-12});
  const HostTensor s = run("Softmax", {}, {&x}).at(0);
  EXPECT_LT(s.data<double>()[0], s.data<double>()[1]);
  EXPECT_LT(s.data<double>()[1], s.data<double>()[2]);
}

TEST(WiderDtypes, Uint8MaxPoolKeepsItsValues) {
  HostTensor x = tensor<uint8_t>(DType::kUInt8, {1, 1, 2, 3}, {255, 0, 7, 254, 1, 200});
  const HostTensor y = run("MaxPool", attrs_of({{"kernel_shape", Attribute::of_ints({2, 2})}}), {&x}).at(0);
  ASSERT_EQ(y.dtype, DType::kUInt8);
  ASSERT_EQ(y.shape, (Shape{1, 1, 1, 2}));
  EXPECT_EQ(y.data<uint8_t>()[0], 255);
  EXPECT_EQ(y.data<uint8_t>()[1], 200);
  HostTensor xi = tensor<int32_t>(DType::kInt32, {1, 1, 2, 2}, {1, 2, 3, 4});
  expect_node_error([&] { run("MaxPool", attrs_of({{"kernel_shape", Attribute::of_ints({2, 2})}}), {&xi}); },
               ErrorCode::kUnsupported, "supported: float32, float16, bfloat16, int8, uint8");
}

}  // namespace
}  // namespace kiln::cpu
