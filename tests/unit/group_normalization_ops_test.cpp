// InstanceNormalization and GroupNormalization on the CPU backend (the reference): kernels against
// naive double-precision references written here (per element, from the ONNX definitions),
// statistical properties on long rows with a large common offset, 16-bit dtypes, infer functions
// with dynamic dims, and named errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "node_error_expectation.hpp"
#include "base/half.hpp"
#include "builder/build_from_graph.hpp"
#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "ops/op_registry.hpp"
#include "passes/layout_nhwc.hpp"
#include "passes/precision_lowering.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::cpu {
namespace {

constexpr int64_t kDyn = kDynamicDim;

HostTensor random_float(Shape shape, std::mt19937& rng, float lo = -2.0f, float hi = 2.0f) {
  HostTensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

HostTensor filled(Shape shape, float value) {
  HostTensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = value;
  return t;
}

HostTensor to_16bit(const HostTensor& t, DType dtype) {
  HostTensor out(dtype, t.shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = t.data<float>()[i];
    out.data<uint16_t>()[i] = dtype == DType::kFloat16 ? float_to_half(v) : float_to_bfloat16(v);
  }
  return out;
}

AttributeMap attrs_of(std::vector<std::pair<std::string, Attribute>> items) {
  AttributeMap attrs;
  for (auto& [name, value] : items) attrs.set(name, std::move(value));
  return attrs;
}

HostTensor run1(const std::string& op, const AttributeMap& attrs,
                std::vector<const HostTensor*> inputs) {
  return run_node_on_cpu("test_node", op, attrs, inputs, 1).at(0);
}

// y[n, c, s] from the ONNX definition, one element at a time: mean and biased variance over the
// channels of c's group (for every spatial position s), then the channel's (or group's) affine.
std::vector<double> reference(const HostTensor& x, const HostTensor& scale, const HostTensor& bias,
                              int64_t groups, double epsilon) {
  const int64_t n_dim = x.shape[0], c_dim = x.shape[1];
  const int64_t spatial = x.numel() / (n_dim * c_dim);
  const int64_t per_group = c_dim / groups;
  const bool per_group_affine = scale.numel() != c_dim;
  const float* data = x.data<float>();
  std::vector<double> out(static_cast<size_t>(x.numel()));
  for (int64_t n = 0; n < n_dim; ++n) {
    for (int64_t c = 0; c < c_dim; ++c) {
      const int64_t g = c / per_group;
      const auto value = [&](int64_t channel, int64_t s) {
        return static_cast<double>(data[(n * c_dim + channel) * spatial + s]);
      };
      double sum = 0;
      for (int64_t k = g * per_group; k < (g + 1) * per_group; ++k)
        for (int64_t s = 0; s < spatial; ++s) sum += value(k, s);
      const double count = static_cast<double>(per_group * spatial);
      const double mean = sum / count;
      double squares = 0;
      for (int64_t k = g * per_group; k < (g + 1) * per_group; ++k)
        for (int64_t s = 0; s < spatial; ++s)
          squares += (value(k, s) - mean) * (value(k, s) - mean);
      const double std_dev = std::sqrt(squares / count + epsilon);
      const int64_t param = per_group_affine ? g : c;
      for (int64_t s = 0; s < spatial; ++s) {
        out[static_cast<size_t>((n * c_dim + c) * spatial + s)] =
            (value(c, s) - mean) / std_dev * scale.data<float>()[param] + bias.data<float>()[param];
      }
    }
  }
  return out;
}

void expect_near_all(const HostTensor& got, const std::vector<double>& want, double tolerance,
                     const std::string& what) {
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.size()) << what;
  const TensorView view = view_of(got);
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(read_as_double(view, static_cast<int64_t>(i)), want[i],
                tolerance * (1.0 + std::abs(want[i])))
        << what << ": element " << i;
  }
}

using unit_test::expect_node_error;

std::vector<ops::ValueInfo> infer(const std::string& op, const AttributeMap& attrs,
                                  std::vector<ops::ValueInfo> inputs) {
  const ops::OpDef* def = ops::find_op(op);
  EXPECT_NE(def, nullptr) << op;
  std::vector<ops::ValueInfo> outputs(1);
  ops::infer_node(*def, "test_node", attrs, inputs, outputs);
  return outputs;
}

ops::ValueInfo info(Shape shape, DType dtype = DType::kFloat32) {
  return ops::ValueInfo{dtype, std::move(shape), nullptr, true};
}

TEST(GroupNormCpu, GroupNormalizationPerChannelAffineMatchesReference) {
  std::mt19937 rng(11);
  for (const Shape& shape :
       {Shape{2, 6, 3, 4}, Shape{1, 8, 5}, Shape{3, 4}, Shape{1, 6, 2, 3, 2}}) {
    const int64_t c = shape[1];
    for (int64_t groups : {int64_t{1}, int64_t{2}, c}) {
      const HostTensor x = random_float(shape, rng);
      const HostTensor scale = random_float({c}, rng);
      const HostTensor bias = random_float({c}, rng);
      const AttributeMap attrs = attrs_of(
          {{"num_groups", Attribute::of_int(groups)}, {"epsilon", Attribute::of_float(1e-3f)}});
      const HostTensor y = run1("GroupNormalization", attrs, {&x, &scale, &bias});
      EXPECT_EQ(y.shape, shape);
      expect_near_all(y, reference(x, scale, bias, groups, 1e-3), 1e-5,
                      shape_to_string(shape) + " groups " + std::to_string(groups));
    }
  }
}

TEST(GroupNormCpu, GroupNormalizationOpset18PerGroupAffine) {
  std::mt19937 rng(12);
  const HostTensor x = random_float({2, 6, 7}, rng);
  const HostTensor scale = random_float({3}, rng);
  const HostTensor bias = random_float({3}, rng);
  const HostTensor y = run1("GroupNormalization", attrs_of({{"num_groups", Attribute::of_int(3)}}),
                            {&x, &scale, &bias});
  expect_near_all(y, reference(x, scale, bias, 3, 1e-5), 1e-5, "per-group affine");
  // Per group is not per channel: channel 1 (group 0) uses scale[0], not scale[1].
  const HostTensor wide_scale = random_float({6}, rng);
  const HostTensor wide_bias = random_float({6}, rng);
  const HostTensor per_channel =
      run1("GroupNormalization", attrs_of({{"num_groups", Attribute::of_int(3)}}),
           {&x, &wide_scale, &wide_bias});
  expect_near_all(per_channel, reference(x, wide_scale, wide_bias, 3, 1e-5), 1e-5, "per-channel");
}

TEST(GroupNormCpu, InstanceNormalizationMatchesReferenceAndGroupNormWithCGroups) {
  std::mt19937 rng(13);
  for (const Shape& shape :
       {Shape{2, 3, 5}, Shape{2, 4, 3, 5}, Shape{1, 2, 3, 2, 4}, Shape{2, 3}}) {
    const int64_t c = shape[1];
    const HostTensor x = random_float(shape, rng);
    const HostTensor scale = random_float({c}, rng);
    const HostTensor bias = random_float({c}, rng);
    const HostTensor y =
        run1("InstanceNormalization", attrs_of({{"epsilon", Attribute::of_float(0.01f)}}),
             {&x, &scale, &bias});
    expect_near_all(y, reference(x, scale, bias, c, 0.01), 1e-5, shape_to_string(shape));
    const HostTensor g = run1(
        "GroupNormalization",
        attrs_of({{"num_groups", Attribute::of_int(c)}, {"epsilon", Attribute::of_float(0.01f)}}),
        {&x, &scale, &bias});
    ASSERT_EQ(g.bytes, y.bytes) << shape_to_string(shape);
  }
}

TEST(GroupNormCpu, LongRowsWithLargeOffsetNormaliseToZeroMeanUnitVariance) {
  // 64x64 spatial, 8 channels per group, values 1000 + U(-1, 1): a naive sum-of-squares variance
  // in float32 would lose every significant digit here.
  std::mt19937 rng(14);
  const Shape shape{1, 16, 64, 64};
  HostTensor x = random_float(shape, rng, -1.0f, 1.0f);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] += 1000.0f;
  const HostTensor scale = filled({16}, 1.0f);
  const HostTensor bias = filled({16}, 0.0f);
  const HostTensor y =
      run1("GroupNormalization",
           attrs_of({{"num_groups", Attribute::of_int(2)}, {"epsilon", Attribute::of_float(0.0f)}}),
           {&x, &scale, &bias});
  const int64_t row = 8 * 64 * 64;
  for (int64_t g = 0; g < 2; ++g) {
    double sum = 0, squares = 0;
    for (int64_t i = g * row; i < (g + 1) * row; ++i) sum += y.data<float>()[i];
    const double mean = sum / static_cast<double>(row);
    for (int64_t i = g * row; i < (g + 1) * row; ++i) {
      squares += (y.data<float>()[i] - mean) * (y.data<float>()[i] - mean);
    }
    EXPECT_NEAR(mean, 0.0, 1e-4) << "group " << g;
    EXPECT_NEAR(squares / static_cast<double>(row), 1.0, 1e-3) << "group " << g;
  }
}

TEST(GroupNormCpu, ConstantRowGivesBiasAndEpsilonMatters) {
  const HostTensor x = filled({1, 2, 3}, 5.0f);
  HostTensor scale = filled({2}, 2.0f);
  HostTensor bias({DType::kFloat32, {2}});
  bias.data<float>()[0] = -1.0f;
  bias.data<float>()[1] = 3.0f;
  const HostTensor y = run1("InstanceNormalization", {}, {&x, &scale, &bias});
  expect_near_all(y, {-1, -1, -1, 3, 3, 3}, 1e-6, "constant rows");
  // x = [0, 2]: mean 1, variance 1; with epsilon 3 the deviation is 1 / 2.
  HostTensor pair({DType::kFloat32, {1, 1, 2}});
  pair.data<float>()[0] = 0.0f;
  pair.data<float>()[1] = 2.0f;
  const HostTensor one = filled({1}, 1.0f), zero = filled({1}, 0.0f);
  const HostTensor z =
      run1("InstanceNormalization", attrs_of({{"epsilon", Attribute::of_float(3.0f)}}),
           {&pair, &one, &zero});
  expect_near_all(z, {-0.5, 0.5}, 1e-6, "epsilon 3");
}

TEST(GroupNormCpu, Float16AndBFloat16ComputeInFloat32) {
  std::mt19937 rng(15);
  const HostTensor x = random_float({2, 4, 6, 5}, rng);
  const HostTensor scale = random_float({4}, rng);
  const HostTensor bias = random_float({4}, rng);
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    const HostTensor x16 = to_16bit(x, dtype), s16 = to_16bit(scale, dtype),
                     b16 = to_16bit(bias, dtype);
    const HostTensor y = run1("GroupNormalization",
                              attrs_of({{"num_groups", Attribute::of_int(2)}}), {&x16, &s16, &b16});
    EXPECT_EQ(y.dtype, dtype);
    // Reference on the rounded inputs; the output's rounding is the only further error.
    HostTensor xr(DType::kFloat32, x.shape), sr(DType::kFloat32, {4}), br(DType::kFloat32, {4});
    for (int64_t i = 0; i < x.numel(); ++i)
      xr.data<float>()[i] = static_cast<float>(read_as_double(view_of(x16), i));
    for (int64_t i = 0; i < 4; ++i) {
      sr.data<float>()[i] = static_cast<float>(read_as_double(view_of(s16), i));
      br.data<float>()[i] = static_cast<float>(read_as_double(view_of(b16), i));
    }
    expect_near_all(y, reference(xr, sr, br, 2, 1e-5), dtype == DType::kFloat16 ? 1e-3 : 8e-3,
                    std::string(dtype_name(dtype)));
  }
}

TEST(GroupNormCpu, AcceptsStashTypeAndEmptyBatch) {
  std::mt19937 rng(16);
  const HostTensor x = random_float({1, 4, 3}, rng);
  const HostTensor scale = random_float({4}, rng), bias = random_float({4}, rng);
  const HostTensor a = run1("GroupNormalization", attrs_of({{"num_groups", Attribute::of_int(2)}}),
                            {&x, &scale, &bias});
  const HostTensor b =
      run1("GroupNormalization",
           attrs_of({{"num_groups", Attribute::of_int(2)}, {"stash_type", Attribute::of_int(10)}}),
           {&x, &scale, &bias});
  EXPECT_EQ(a.bytes, b.bytes);  // statistics are float32 or wider whatever stash_type says
  const HostTensor empty(DType::kFloat32, {0, 4, 3});
  const HostTensor y = run1("GroupNormalization", attrs_of({{"num_groups", Attribute::of_int(2)}}),
                            {&empty, &scale, &bias});
  EXPECT_EQ(y.shape, (Shape{0, 4, 3}));
}

TEST(GroupNormInfer, PropagatesShapeAndDtypeWithDynamicDims) {
  auto out = infer("GroupNormalization", attrs_of({{"num_groups", Attribute::of_int(4)}}),
                   {info({kDyn, 8, kDyn, kDyn}, DType::kFloat16), info({8}, DType::kFloat16),
                    info({8}, DType::kFloat16)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 8, kDyn, kDyn}));
  EXPECT_EQ(out[0].dtype, DType::kFloat16);
  out = infer("GroupNormalization", attrs_of({{"num_groups", Attribute::of_int(4)}}),
              {info({2, kDyn, 5}), info({kDyn}), info({kDyn})});
  EXPECT_EQ(out[0].shape, (Shape{2, kDyn, 5}));
  out = infer("InstanceNormalization", {},
              {info({kDyn, kDyn, 7, 7}, DType::kBFloat16), info({kDyn}, DType::kBFloat16),
               info({kDyn}, DType::kBFloat16)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn, 7, 7}));
  EXPECT_EQ(out[0].dtype, DType::kBFloat16);
  // A known bad channel count fails even with other dims dynamic.
  EXPECT_THROW(infer("GroupNormalization", attrs_of({{"num_groups", Attribute::of_int(4)}}),
                     {info({kDyn, 6, kDyn}), info({6}), info({6})}),
               Error);
}

TEST(GroupNormErrors, NamedErrorsForBadInputsAndAttributes) {
  std::mt19937 rng(17);
  const HostTensor x = random_float({2, 6, 4}, rng);
  const HostTensor s6 = random_float({6}, rng), b6 = random_float({6}, rng);
  const HostTensor s4 = random_float({4}, rng), b4 = random_float({4}, rng);
  const HostTensor s3 = random_float({3}, rng);
  const auto groups = [](int64_t g) { return attrs_of({{"num_groups", Attribute::of_int(g)}}); };
  expect_node_error(
      [&] {
        run1("GroupNormalization", groups(4), {&x, &s6, &b6});
      },
      ErrorCode::kInvalidArgument, "not divisible by num_groups = 4");
  expect_node_error(
      [&] {
        run1("GroupNormalization", {}, {&x, &s6, &b6});
      },
      ErrorCode::kInvalidArgument, "num_groups");
  expect_node_error(
      [&] {
        run1("GroupNormalization", groups(0), {&x, &s6, &b6});
      },
      ErrorCode::kInvalidArgument, "num_groups' must be > 0");
  expect_node_error(
      [&] {
        run1("GroupNormalization", groups(2), {&x, &s4, &b4});
      },
      ErrorCode::kInvalidArgument, "scale (input 1)");
  expect_node_error(
      [&] {
        run1("GroupNormalization", groups(3), {&x, &s3, &b6});
      },
      ErrorCode::kInvalidArgument, "B (input 2)");
  expect_node_error(
      [&] {
        run1("InstanceNormalization", {}, {&x, &s3, &b6});
      },
      ErrorCode::kInvalidArgument, "expected [6]");
  expect_node_error(
      [&] {
        run1("GroupNormalization",
             attrs_of({{"num_groups", Attribute::of_int(2)}, {"stash_type", Attribute::of_int(7)}}),
             {&x, &s6, &b6});
      },
      ErrorCode::kUnsupported, "stash_type");
  expect_node_error(
      [&] {
        run1("GroupNormalization", attrs_of({{"num_groups", Attribute::of_float(2.0f)}}),
             {&x, &s6, &b6});
      },
      ErrorCode::kInvalidArgument, "num_groups");
  const HostTensor flat = random_float({6}, rng);
  expect_node_error(
      [&] {
        run1("InstanceNormalization", {}, {&flat, &s6, &b6});
      },
      ErrorCode::kInvalidArgument, "rank >= 2");
  const HostTensor s2d = random_float({6, 1}, rng);
  expect_node_error(
      [&] {
        run1("InstanceNormalization", {}, {&x, &s2d, &b6});
      },
      ErrorCode::kInvalidArgument, "must be 1-D");
  HostTensor ints(DType::kInt64, {2, 6, 4});
  expect_node_error(
      [&] {
        run1("InstanceNormalization", {}, {&ints, &s6, &b6});
      },
      ErrorCode::kUnsupported, "int64");
}

// ---- next to NHWC convolutions (the CUDA builder's layout pass)
// -----------------------------------

// Conv(3x3) -> Relu -> Conv -> GroupNorm -> Conv -> Relu -> Conv, lowered to fp16 as the CUDA
// builder does, before and after the NHWC pass, evaluated on the CPU reference kernels.
struct ConvGroupNormNet {
  testing::GraphBuilder b;
  std::mt19937 rng{21};

  ir::ValueId conv(const std::string& name, ir::ValueId x, int64_t channels) {
    const ir::ValueId w = b.constant(
        name + ".w", testing::random_tensor_f32({channels, channels, 3, 3}, rng, -0.3f, 0.3f));
    return b.node("Conv", name, {x, w},
                  testing::attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}}));
  }
  ir::ValueId group_norm(const std::string& name, ir::ValueId x, int64_t channels, int64_t groups) {
    const ir::ValueId scale =
        b.constant(name + ".scale", testing::random_tensor_f32({channels}, rng, 0.5f, 1.5f));
    const ir::ValueId bias =
        b.constant(name + ".bias", testing::random_tensor_f32({channels}, rng, -0.5f, 0.5f));
    return b.node("GroupNormalization", name, {x, scale, bias},
                  testing::attrs_of({{"num_groups", Attribute::of_int(groups)}}));
  }
};

size_t count_ops(const ir::Graph& graph, const std::string& op) {
  size_t count = 0;
  for (const ir::Node& node : graph.nodes) count += !node.removed && node.op_type == op;
  return count;
}

TEST(GroupNormLayout, GroupNormBetweenNhwcConvRegionsStaysNchwAndCorrect) {
  ConvGroupNormNet net;
  const ir::ValueId x = net.b.input("x", {2, 8, 10, 10});
  ir::ValueId h = net.b.node("Relu", "relu1", {net.conv("conv1", x, 8)});
  h = net.group_norm("norm", net.conv("conv2", h, 8), 8, 4);
  h = net.b.node("Relu", "relu2", {net.conv("conv3", h, 8)});
  net.b.output(net.conv("conv4", h, 8));
  ir::Graph& g = net.b.graph;
  passes::infer_shapes(g);
  builder::optimize_graph(g);
  passes::lower_precision(g, DType::kFloat16);
  const auto inputs = testing::random_inputs(g, 3, -1.0f, 1.0f);
  const std::vector<HostTensor> before = testing::evaluate(g, inputs);
  // Two regions of two convolutions each; the GroupNorm between them is not convertible, so its
  // input leaves NHWC and its output re-enters: four transposes in all.
  EXPECT_EQ(passes::convert_conv_regions_to_nhwc(g), 4);
  EXPECT_EQ(count_ops(g, "Transpose"), 4u);
  for (const ir::Node& node : g.nodes) {
    if (node.removed || node.op_type != "GroupNormalization") continue;
    EXPECT_EQ(g.value(node.inputs[0]).shape, (Shape{2, 8, 10, 10})) << "NCHW input";
  }
  const std::vector<HostTensor> after = testing::evaluate(g, inputs);
  ASSERT_EQ(after.size(), before.size());
  testing::expect_close_to_scale(after[0], before[0], 2e-3f);
}

TEST(GroupNormLayout, UNetStyleConvGroupNormChainStaysNchw) {
  // Every convolution is isolated between GroupNorms: no region has two, nothing is converted.
  ConvGroupNormNet net;
  ir::ValueId h = net.b.input("x", {1, 8, 6, 6});
  for (int i = 0; i < 3; ++i) {
    h = net.group_norm("norm" + std::to_string(i), net.conv("conv" + std::to_string(i), h, 8), 8,
                       2);
  }
  net.b.output(h);
  ir::Graph& g = net.b.graph;
  passes::infer_shapes(g);
  builder::optimize_graph(g);
  passes::lower_precision(g, DType::kFloat16);
  EXPECT_EQ(passes::convert_conv_regions_to_nhwc(g), 0);
  EXPECT_EQ(count_ops(g, "Transpose"), 0u);
}

}  // namespace
}  // namespace kiln::cpu
