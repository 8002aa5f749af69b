// kiln_layout = "NHWC" on the CPU reference kernels of Conv and the pooling ops: the NHWC node on
// permuted tensors must give the permuted result of the NCHW node, and the attribute is rejected
// where it cannot apply.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/error.hpp"
#include "base/half.hpp"
#include "graph_test_builder.hpp"

namespace kiln::cpu {
namespace {

using testing::attrs_of;
using testing::random_tensor_f32;

// out axis a = in axis perm[a], any float32 rank-4 tensor.
HostTensor permute4(const HostTensor& in, const std::array<size_t, 4>& perm) {
  Shape shape(4);
  for (size_t a = 0; a < 4; ++a) shape[a] = in.shape[perm[a]];
  HostTensor out(DType::kFloat32, shape);
  std::array<int64_t, 4> strides{};
  strides[3] = 1;
  for (size_t a = 3; a-- > 0;) strides[a] = strides[a + 1] * in.shape[a + 1];
  int64_t index = 0;
  for (int64_t i0 = 0; i0 < shape[0]; ++i0)
    for (int64_t i1 = 0; i1 < shape[1]; ++i1)
      for (int64_t i2 = 0; i2 < shape[2]; ++i2)
        for (int64_t i3 = 0; i3 < shape[3]; ++i3) {
          out.data<float>()[index++] =
              in.data<float>()[i0 * strides[perm[0]] + i1 * strides[perm[1]] +
                               i2 * strides[perm[2]] + i3 * strides[perm[3]]];
        }
  return out;
}

HostTensor to_nhwc(const HostTensor& t) {
  return permute4(t, {0, 2, 3, 1});
}

HostTensor run(const std::string& op, const AttributeMap& attrs,
               const std::vector<const HostTensor*>& inputs) {
  return run_node_on_cpu("node", op, attrs, inputs, 1).at(0);
}

AttributeMap with_nhwc(AttributeMap attrs) {
  attrs.set("kiln_layout", Attribute::of_string("NHWC"));
  return attrs;
}

void expect_near_all(const HostTensor& got, const HostTensor& want, float tolerance) {
  ASSERT_EQ(got.shape, want.shape);
  for (int64_t i = 0; i < want.numel(); ++i) {
    const float w = want.data<float>()[i], g = got.data<float>()[i];
    if (std::isnan(w)) {
      EXPECT_TRUE(std::isnan(g)) << "element " << i;
    } else {
      ASSERT_NEAR(g, w, tolerance) << "element " << i;
    }
  }
}

// Runs op in NCHW and in NHWC; inputs listed in `layout_inputs` are permuted for the NHWC run.
void expect_layouts_agree(const std::string& op, const AttributeMap& attrs,
                          const std::vector<const HostTensor*>& inputs,
                          const std::vector<size_t>& layout_inputs) {
  const HostTensor nchw = run(op, attrs, inputs);
  std::vector<HostTensor> storage(inputs.size());
  std::vector<const HostTensor*> nhwc_inputs = inputs;
  for (size_t i : layout_inputs) {
    storage[i] = to_nhwc(*inputs[i]);
    nhwc_inputs[i] = &storage[i];
  }
  const HostTensor nhwc = run(op, with_nhwc(attrs), nhwc_inputs);
  ASSERT_EQ(nhwc.shape, (Shape{nchw.shape[0], nchw.shape[2], nchw.shape[3], nchw.shape[1]}));
  expect_near_all(nhwc, to_nhwc(nchw), 1e-5f);
}

struct ConvCase {
  const char* name;
  Shape x;
  Shape w;
  int64_t group;
  std::vector<int64_t> strides, pads, dilations;
  bool bias, residual, relu;
};

TEST(CpuLayoutKernels, ConvNhwcMatchesNchw) {
  const std::vector<ConvCase> cases = {
      {"3x3_pad_bias",
       {2, 5, 7, 6},
       {4, 5, 3, 3},
       1,
       {1, 1},
       {1, 1, 1, 1},
       {1, 1},
       true,
       false,
       false},
      {"1x1_no_bias",
       {1, 8, 5, 5},
       {6, 8, 1, 1},
       1,
       {1, 1},
       {0, 0, 0, 0},
       {1, 1},
       false,
       false,
       false},
      {"3x3_stride2",
       {1, 3, 9, 8},
       {4, 3, 3, 3},
       1,
       {2, 2},
       {1, 1, 1, 1},
       {1, 1},
       true,
       false,
       true},
      {"depthwise", {2, 6, 7, 7}, {6, 1, 3, 3}, 6, {1, 1}, {1, 1, 1, 1}, {1, 1}, true, false, true},
      {"depthwise_x2",
       {1, 4, 6, 6},
       {8, 1, 5, 5},
       4,
       {2, 2},
       {2, 2, 2, 2},
       {1, 1},
       false,
       false,
       false},
      {"grouped", {1, 6, 6, 5}, {4, 3, 3, 2}, 2, {1, 2}, {1, 0, 1, 1}, {2, 1}, true, false, false},
      {"residual_relu",
       {2, 4, 5, 5},
       {4, 4, 3, 3},
       1,
       {1, 1},
       {1, 1, 1, 1},
       {1, 1},
       true,
       true,
       true},
      {"residual_no_bias",
       {1, 4, 6, 6},
       {8, 4, 1, 1},
       1,
       {1, 1},
       {0, 0, 0, 0},
       {1, 1},
       false,
       true,
       false},
  };
  std::mt19937 rng(3);
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(c.name);
    const HostTensor x = random_tensor_f32(c.x, rng);
    const HostTensor w = random_tensor_f32(c.w, rng);
    const HostTensor b = random_tensor_f32({c.w[0]}, rng);
    AttributeMap attrs = attrs_of({{"group", Attribute::of_int(c.group)},
                                   {"strides", Attribute::of_ints(c.strides)},
                                   {"pads", Attribute::of_ints(c.pads)},
                                   {"dilations", Attribute::of_ints(c.dilations)}});
    if (c.relu) attrs.set("kiln_activation", Attribute::of_string("Relu"));
    std::vector<const HostTensor*> inputs{&x, &w, c.bias ? &b : nullptr};
    HostTensor residual;
    if (c.residual) {
      const HostTensor plain = run("Conv", attrs, {&x, &w});
      residual = random_tensor_f32(plain.shape, rng);
      inputs.push_back(&residual);
    }
    // W is permuted like X: [M, C/g, kH, kW] -> [M, kH, kW, C/g].
    std::vector<size_t> layout{0, 1};
    if (c.residual) layout.push_back(3);
    expect_layouts_agree("Conv", attrs, inputs, layout);
  }
}

TEST(CpuLayoutKernels, ConvNhwcHalfInputs) {
  std::mt19937 rng(4);
  const HostTensor x = random_tensor_f32({1, 8, 4, 4}, rng);
  const HostTensor w = random_tensor_f32({8, 8, 3, 3}, rng);
  auto half_of = [](const HostTensor& t) {
    HostTensor h(DType::kFloat16, t.shape);
    for (int64_t i = 0; i < t.numel(); ++i)
      h.data<uint16_t>()[i] = float_to_half(t.data<float>()[i]);
    return h;
  };
  const AttributeMap attrs = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}});
  const HostTensor xh = half_of(to_nhwc(x)), wh = half_of(to_nhwc(w));
  const HostTensor y = run("Conv", with_nhwc(attrs), {&xh, &wh});
  ASSERT_EQ(y.dtype, DType::kFloat16);
  const HostTensor xr = half_of(x), wr = half_of(w);
  const HostTensor ref = run("Conv", attrs, {&xr, &wr});
  ASSERT_EQ(y.shape, (Shape{1, 4, 4, 8}));
  for (int64_t n = 0; n < 1; ++n)
    for (int64_t c = 0; c < 8; ++c)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t ww = 0; ww < 4; ++ww) {
          EXPECT_EQ(y.data<uint16_t>()[(h * 4 + ww) * 8 + c],
                    ref.data<uint16_t>()[(c * 4 + h) * 4 + ww]);
        }
}

TEST(CpuLayoutKernels, PoolsNhwcMatchNchw) {
  std::mt19937 rng(5);
  const HostTensor x = random_tensor_f32({2, 5, 9, 8}, rng);
  const std::vector<std::pair<std::string, AttributeMap>> cases = {
      {"MaxPool", attrs_of({{"kernel_shape", Attribute::of_ints({3, 3})},
                            {"strides", Attribute::of_ints({2, 2})},
                            {"pads", Attribute::of_ints({1, 1, 1, 1})}})},
      {"MaxPool", attrs_of({{"kernel_shape", Attribute::of_ints({2, 3})},
                            {"strides", Attribute::of_ints({2, 2})},
                            {"dilations", Attribute::of_ints({2, 1})},
                            {"ceil_mode", Attribute::of_int(1)}})},
      {"AveragePool", attrs_of({{"kernel_shape", Attribute::of_ints({3, 3})},
                                {"strides", Attribute::of_ints({2, 2})},
                                {"pads", Attribute::of_ints({1, 1, 1, 1})}})},
      {"AveragePool", attrs_of({{"kernel_shape", Attribute::of_ints({3, 2})},
                                {"strides", Attribute::of_ints({2, 2})},
                                {"pads", Attribute::of_ints({1, 0, 1, 1})},
                                {"count_include_pad", Attribute::of_int(1)},
                                {"ceil_mode", Attribute::of_int(1)}})},
      {"AveragePool", attrs_of({{"kernel_shape", Attribute::of_ints({2, 2})},
                                {"auto_pad", Attribute::of_string("SAME_UPPER")}})},
      {"GlobalAveragePool", {}},
      {"GlobalMaxPool", {}},
  };
  for (const auto& [op, attrs] : cases) {
    SCOPED_TRACE(op);
    expect_layouts_agree(op, attrs, {&x}, {0});
  }
}

TEST(CpuLayoutKernels, GlobalMaxPoolNhwcPropagatesNan) {
  HostTensor x = testing::make_tensor_f32({1, 2, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  x.data<float>()[4] = std::nanf("");  // (h=0, w=1, c=1)
  const HostTensor y = run("GlobalMaxPool", with_nhwc({}), {&x});
  ASSERT_EQ(y.shape, (Shape{1, 1, 1, 3}));
  EXPECT_EQ(y.data<float>()[0], 10.0f);
  EXPECT_TRUE(std::isnan(y.data<float>()[1]));
  EXPECT_EQ(y.data<float>()[2], 12.0f);
}

TEST(CpuLayoutKernels, RejectsNhwcOnOtherRanksAndUnknownLayouts) {
  std::mt19937 rng(6);
  const HostTensor x3 = random_tensor_f32({1, 4, 6}, rng);
  const HostTensor w3 = random_tensor_f32({2, 4, 3}, rng);
  try {
    run("Conv", with_nhwc({}), {&x3, &w3});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("NHWC"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run("GlobalAveragePool", with_nhwc({}), {&x3}), Error);
  EXPECT_THROW(
      run("MaxPool", with_nhwc(attrs_of({{"kernel_shape", Attribute::of_ints({2})}})), {&x3}),
      Error);
  const HostTensor x4 = random_tensor_f32({1, 4, 4, 4}, rng);
  AttributeMap bad = attrs_of({{"kiln_layout", Attribute::of_string("NCWH")}});
  try {
    run("GlobalMaxPool", bad, {&x4});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("kiln_layout"), std::string::npos) << e.what();
  }
  // NHWC channel mismatch: X has 4 channels (last axis), KRSC W expects 3 x group 1.
  const HostTensor w = random_tensor_f32({2, 3, 3, 3}, rng);
  EXPECT_THROW(run("Conv", with_nhwc({}), {&x4, &w}), Error);
}

}  // namespace
}  // namespace kiln::cpu
