// ConvTranspose: the CPU kernel against a naive double-precision scatter written here, the infer
// function (auto_pad / output_shape pads, dynamic dims), the errors for bad attributes, and how
// the NHWC layout pass treats it (it has no NHWC form: it stays NCHW between NHWC regions).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
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

HostTensor random_float(Shape shape, std::mt19937& rng) {
  HostTensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

AttributeMap make_attrs(std::vector<std::pair<std::string, Attribute>> items) {
  AttributeMap attrs;
  for (auto& [name, value] : items) attrs.set(name, std::move(value));
  return attrs;
}

Attribute ints(std::vector<int64_t> v) {
  return Attribute::of_ints(std::move(v));
}

HostTensor run1(const AttributeMap& attrs, std::vector<const HostTensor*> inputs) {
  return run_node_on_cpu("up1", "ConvTranspose", attrs, inputs, 1).at(0);
}

// The expected geometry of one case, worked out by hand (and checked against ONNX Runtime).
struct Expected {
  std::vector<int64_t> strides, dilations, pad_begin, out;
};

// y[n, g*Mg + m, i*s + k*d - pad_begin] += x[n, g*Cg + c, i] * w[g*Cg + c, m, k], in double.
std::vector<double> reference(const HostTensor& x, const HostTensor& w, const HostTensor* bias,
                              int64_t group, const Expected& e) {
  const size_t spatial = x.shape.size() - 2;
  const int64_t batch = x.shape[0], channels = x.shape[1], group_in = channels / group;
  const int64_t group_out = w.shape[1], out_channels = group_out * group;
  // Pad every extent to three axes.
  int64_t in[3] = {1, 1, 1}, k[3] = {1, 1, 1}, out[3] = {1, 1, 1}, s[3] = {1, 1, 1},
          d[3] = {1, 1, 1}, p[3] = {0, 0, 0};
  for (size_t a = 0; a < spatial; ++a) {
    const size_t t = 3 - spatial + a;
    in[t] = x.shape[2 + a];
    k[t] = w.shape[2 + a];
    out[t] = e.out[a];
    s[t] = e.strides[a];
    d[t] = e.dilations[a];
    p[t] = e.pad_begin[a];
  }
  const int64_t in_size = in[0] * in[1] * in[2], out_size = out[0] * out[1] * out[2];
  const int64_t k_size = k[0] * k[1] * k[2];
  std::vector<double> y(static_cast<size_t>(batch * out_channels * out_size), 0.0);
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t oc = 0; oc < out_channels; ++oc)
      for (int64_t o = 0; o < out_size; ++o)
        y[static_cast<size_t>((n * out_channels + oc) * out_size + o)] =
            bias ? bias->data<float>()[oc] : 0.0;
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t m = 0; m < group_out; ++m)
        for (int64_t i0 = 0; i0 < in[0]; ++i0)
          for (int64_t i1 = 0; i1 < in[1]; ++i1)
            for (int64_t i2 = 0; i2 < in[2]; ++i2)
              for (int64_t k0 = 0; k0 < k[0]; ++k0)
                for (int64_t k1 = 0; k1 < k[1]; ++k1)
                  for (int64_t k2 = 0; k2 < k[2]; ++k2) {
                    const int64_t o0 = i0 * s[0] + k0 * d[0] - p[0];
                    const int64_t o1 = i1 * s[1] + k1 * d[1] - p[1];
                    const int64_t o2 = i2 * s[2] + k2 * d[2] - p[2];
                    if (o0 < 0 || o0 >= out[0] || o1 < 0 || o1 >= out[1] || o2 < 0 ||
                        o2 >= out[2]) {
                      continue;
                    }
                    const int64_t oc = (c / group_in) * group_out + m;
                    const double xv = x.data<float>()[(n * channels + c) * in_size +
                                                      (i0 * in[1] + i1) * in[2] + i2];
                    const double wv = w.data<float>()[(c * group_out + m) * k_size +
                                                      (k0 * k[1] + k1) * k[2] + k2];
                    y[static_cast<size_t>((n * out_channels + oc) * out_size +
                                          (o0 * out[1] + o1) * out[2] + o2)] += xv * wv;
                  }
  return y;
}

void expect_matches(const HostTensor& got, const std::vector<double>& want, double tolerance) {
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.size());
  const TensorView view = view_of(got);
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(read_as_double(view, static_cast<int64_t>(i)), want[i],
                tolerance * (1.0 + std::abs(want[i])))
        << "element " << i;
  }
}

struct KernelCase {
  std::string name;
  Shape x, w;
  int64_t group;
  bool bias;
  std::vector<std::pair<std::string, Attribute>> attrs;
  Expected expected;
};

void check_case(const KernelCase& c) {
  SCOPED_TRACE(c.name);
  std::mt19937 rng(7);
  const HostTensor x = random_float(c.x, rng);
  const HostTensor w = random_float(c.w, rng);
  const HostTensor b = random_float({c.w[1] * c.group}, rng);
  auto items = c.attrs;
  if (c.group != 1) items.emplace_back("group", Attribute::of_int(c.group));
  const HostTensor y = run1(make_attrs(items), {&x, &w, c.bias ? &b : nullptr});
  Shape want_shape{c.x[0], c.w[1] * c.group};
  want_shape.insert(want_shape.end(), c.expected.out.begin(), c.expected.out.end());
  ASSERT_EQ(y.shape, want_shape);
  expect_matches(y, reference(x, w, c.bias ? &b : nullptr, c.group, c.expected), 1e-5);
}

TEST(ConvTransposeCpuKernel, MatchesNaiveScatter) {
  const std::vector<KernelCase> cases = {
      // out = s*(in-1) + op + (k-1)*d + 1 - pads
      {"1d plain", {2, 3, 5}, {3, 4, 3}, 1, true, {}, {{1}, {1}, {0}, {7}}},
      {"1d stride 3 > kernel 2",
       {1, 2, 4},
       {2, 3, 2},
       1,
       false,
       {{"strides", ints({3})}},
       {{3}, {1}, {0}, {11}}},
      {"2d stride 2 pads 1 output_padding 1",
       {2, 4, 3, 5},
       {4, 3, 3, 3},
       1,
       true,
       {{"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}, {"output_padding", ints({1, 1})}},
       {{2, 2}, {1, 1}, {1, 1}, {6, 10}}},
      {"2d groups 2 dilation 2",
       {1, 6, 4, 4},
       {6, 2, 3, 2},
       3,
       true,
       {{"dilations", ints({2, 2})}, {"strides", ints({1, 2})}},
       {{1, 2}, {2, 2}, {0, 0}, {8, 9}}},
      {"2d depthwise asymmetric pads",
       {1, 4, 5, 3},
       {4, 1, 3, 3},
       4,
       false,
       {{"strides", ints({2, 1})}, {"pads", ints({0, 2, 1, 0})}},
       {{2, 1}, {1, 1}, {0, 2}, {10, 3}}},
      {"2d output_padding below dilation, not stride",
       {1, 2, 3, 3},
       {2, 2, 2, 2},
       1,
       true,
       {{"dilations", ints({2, 2})}, {"output_padding", ints({1, 0})}},
       {{1, 1}, {2, 2}, {0, 0}, {6, 5}}},
      {"1d SAME_UPPER",
       {1, 3, 4},
       {3, 2, 3},
       1,
       true,
       {{"strides", ints({2})}, {"auto_pad", Attribute::of_string("SAME_UPPER")}},
       {{2}, {1}, {0}, {8}}},
      {"1d SAME_LOWER",
       {1, 3, 4},
       {3, 2, 3},
       1,
       true,
       {{"strides", ints({2})}, {"auto_pad", Attribute::of_string("SAME_LOWER")}},
       {{2}, {1}, {1}, {8}}},
      // SAME with the full extent 23 short of in * stride = 24: ONNX Runtime keeps 23.
      {"1d SAME_UPPER stride 4 > kernel 3",
       {1, 2, 6},
       {2, 2, 3},
       1,
       true,
       {{"strides", ints({4})}, {"auto_pad", Attribute::of_string("SAME_UPPER")}},
       {{4}, {1}, {0}, {23}}},
      {"1d output_shape beyond the full extent",
       {1, 3, 4},
       {3, 2, 3},
       1,
       true,
       {{"strides", ints({2})}, {"output_shape", ints({10})}},
       {{2}, {1}, {0}, {10}}},
      {"1d output_shape SAME_LOWER",
       {1, 3, 4},
       {3, 2, 3},
       1,
       false,
       {{"strides", ints({2})},
        {"output_shape", ints({8})},
        {"auto_pad", Attribute::of_string("SAME_LOWER")}},
       {{2}, {1}, {1}, {8}}},
      {"1d output_shape with output_padding",
       {1, 3, 4},
       {3, 2, 3},
       1,
       false,
       {{"strides", ints({2})}, {"output_shape", ints({9})}, {"output_padding", ints({1})}},
       {{2}, {1}, {1}, {9}}},
      {"1d VALID",
       {1, 3, 4},
       {3, 2, 3},
       1,
       false,
       {{"strides", ints({2})},
        {"auto_pad", Attribute::of_string("VALID")},
        {"output_padding", ints({1})}},
       {{2}, {1}, {0}, {10}}},
      {"3d",
       {1, 2, 3, 2, 3},
       {2, 3, 2, 3, 2},
       1,
       true,
       {{"strides", ints({2, 1, 2})}, {"pads", ints({1, 0, 0, 0, 1, 1})}},
       {{2, 1, 2}, {1, 1, 1}, {1, 0, 0}, {5, 3, 5}}},
  };
  for (const KernelCase& c : cases) check_case(c);
}

TEST(ConvTransposeCpuKernel, LargeImageUsesSeveralBands) {
  // rows * in_w = 8 * 9 * 600 floats per line: the 8 Mi-float column budget holds 194 of the
  // image's 600 lines, so the kernel walks four bands.
  KernelCase c{"bands",
               {1, 3, 600, 600},
               {3, 8, 3, 3},
               1,
               true,
               {{"pads", ints({1, 1, 1, 1})}},
               {{1, 1}, {1, 1}, {1, 1}, {600, 600}}};
  check_case(c);
}

TEST(ConvTransposeCpuKernel, Float16ComputesInFloat32) {
  std::mt19937 rng(3);
  const HostTensor x = random_float({1, 4, 5, 5}, rng);
  const HostTensor w = random_float({4, 2, 3, 3}, rng);
  auto half = [](const HostTensor& t) {
    HostTensor out(DType::kFloat16, t.shape);
    for (int64_t i = 0; i < t.numel(); ++i)
      out.data<uint16_t>()[i] = float_to_half(t.data<float>()[i]);
    return out;
  };
  const HostTensor xh = half(x), wh = half(w);
  const AttributeMap attrs = make_attrs({{"strides", ints({2, 2})}});
  const HostTensor y = run1(attrs, {&xh, &wh});
  EXPECT_EQ(y.dtype, DType::kFloat16);
  ASSERT_EQ(y.shape, (Shape{1, 2, 11, 11}));
  // The reference from the rounded fp16 inputs: only the output rounding differs.
  HostTensor xr(DType::kFloat32, x.shape), wr(DType::kFloat32, w.shape);
  for (int64_t i = 0; i < x.numel(); ++i)
    xr.data<float>()[i] = half_to_float(xh.data<uint16_t>()[i]);
  for (int64_t i = 0; i < w.numel(); ++i)
    wr.data<float>()[i] = half_to_float(wh.data<uint16_t>()[i]);
  expect_matches(y, reference(xr, wr, nullptr, 1, {{2, 2}, {1, 1}, {0, 0}, {11, 11}}), 1e-3);
}

// ---- inference -------------------------------------------------------------------------------

std::vector<ops::ValueInfo> infer(const AttributeMap& attrs, std::vector<ops::ValueInfo> inputs) {
  const ops::OpDef* def = ops::find_op("ConvTranspose");
  EXPECT_NE(def, nullptr);
  std::vector<ops::ValueInfo> outputs(1);
  ops::infer_node(*def, "up1", attrs, inputs, outputs);
  return outputs;
}

ops::ValueInfo info(Shape shape, DType dtype = DType::kFloat32) {
  ops::ValueInfo v;
  v.dtype = dtype;
  v.shape = std::move(shape);
  return v;
}

TEST(ConvTransposeInfer, DynamicDims) {
  // Dynamic batch and height: width still resolves, height stays dynamic.
  auto out = infer(make_attrs({{"strides", ints({2, 2})}, {"group", Attribute::of_int(2)}}),
                   {info({kDynamicDim, 4, kDynamicDim, 7}), info({4, 3, 3, 3}), info({6})});
  EXPECT_EQ(out[0].shape, (Shape{kDynamicDim, 6, kDynamicDim, 15}));
  EXPECT_EQ(out[0].dtype, DType::kFloat32);
  // output_shape fixes the extent even when the input's is unknown.
  out = infer(make_attrs({{"strides", ints({2})}, {"output_shape", ints({20})}}),
              {info({1, 3, kDynamicDim}, DType::kBFloat16), info({3, 5, 4}, DType::kBFloat16)});
  EXPECT_EQ(out[0].shape, (Shape{1, 5, 20}));
  EXPECT_EQ(out[0].dtype, DType::kBFloat16);
  // output_shape given as [N, C, spatial...] (as some converters write it).
  out = infer(make_attrs({{"strides", ints({2})}, {"output_shape", ints({1, 5, 9})}}),
              {info({1, 3, 4}), info({3, 5, 3})});
  EXPECT_EQ(out[0].shape, (Shape{1, 5, 9}));
}

void expect_infer_error(const AttributeMap& attrs, std::vector<ops::ValueInfo> inputs,
                        ErrorCode code, const std::vector<std::string>& fragments) {
  try {
    infer(attrs, std::move(inputs));
    ADD_FAILURE() << "expected an error containing '" << fragments.at(0) << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    const std::string message = error.what();
    EXPECT_NE(message.find("node 'up1' (ConvTranspose)"), std::string::npos) << message;
    for (const std::string& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "missing '" << fragment << "' in " << message;
    }
  }
}

TEST(ConvTransposeInfer, BadAttributesAreNamedErrors) {
  const std::vector<ops::ValueInfo> ok{info({1, 4, 5, 5}), info({4, 2, 3, 3})};
  expect_infer_error(make_attrs({{"strides", ints({0, 1})}}), ok, ErrorCode::kInvalidArgument,
                     {"'strides'", ">= 1", "[0, 1]"});
  expect_infer_error(make_attrs({{"strides", ints({-2, 1})}}), ok, ErrorCode::kInvalidArgument,
                     {"'strides'", "[-2, 1]"});
  expect_infer_error(make_attrs({{"strides", ints({2, 2})}, {"output_padding", ints({2, 0})}}), ok,
                     ErrorCode::kInvalidArgument,
                     {"'output_padding'", "less than max(stride, dilation) = 2", "got 2"});
  expect_infer_error(make_attrs({{"output_padding", ints({0, 1})}}), ok,
                     ErrorCode::kInvalidArgument, {"'output_padding'", "got 1"});
  expect_infer_error(make_attrs({{"group", Attribute::of_int(3)}}), ok, ErrorCode::kInvalidArgument,
                     {"'group' = 3", "4 channels"});
  expect_infer_error(make_attrs({{"group", Attribute::of_int(0)}}), ok, ErrorCode::kInvalidArgument,
                     {"'group'", "got 0"});
  expect_infer_error({}, {info({1, 3, 5, 5}), info({4, 2, 3, 3})}, ErrorCode::kInvalidArgument,
                     {"X has 3 channels", "expects 4"});
  expect_infer_error({}, {info({1, 4, 5, 5}), info({4, 2, 3, 3}), info({3})},
                     ErrorCode::kInvalidArgument, {"B must have shape [2]", "[3]"});
  expect_infer_error(make_attrs({{"kernel_shape", ints({2, 2})}}), ok, ErrorCode::kInvalidArgument,
                     {"'kernel_shape'", "does not match"});
  expect_infer_error(make_attrs({{"auto_pad", Attribute::of_string("SAME")}}), ok,
                     ErrorCode::kInvalidArgument, {"'auto_pad'", "'SAME'"});
  expect_infer_error(make_attrs({{"pads", ints({4, 4, 4, 4})}}), ok, ErrorCode::kInvalidArgument,
                     {"'pads'", "leave no output"});
  expect_infer_error(make_attrs({{"output_shape", ints({30, 5})}}), ok, ErrorCode::kInvalidArgument,
                     {"'output_shape' entry 0", "at most", "got 30"});
  expect_infer_error(make_attrs({{"output_shape", ints({7})}}), ok, ErrorCode::kInvalidArgument,
                     {"'output_shape'", "2 entries"});
  expect_infer_error({}, {info({1, 4, 5, 5}, DType::kInt32), info({4, 2, 3, 3}, DType::kInt32)},
                     ErrorCode::kUnsupported, {"int32"});
  expect_infer_error({}, {info({1, 4, 5, 5}), info({4, 2, 3, 3}, DType::kFloat16)},
                     ErrorCode::kInvalidArgument, {"W", "float16"});
  expect_infer_error({}, {info({1, 1, 2, 2, 2, 2}), info({1, 1, 1, 1, 1, 1})},
                     ErrorCode::kUnsupported, {"4 spatial dimensions"});
}

TEST(ConvTransposeCpuKernel, RejectsBadInputsAtRunTime) {
  std::mt19937 rng(1);
  const HostTensor x = random_float({1, 4, 3, 3}, rng);
  const HostTensor w = random_float({4, 2, 3, 3}, rng);
  try {
    run1(make_attrs({{"dilations", ints({1, 0})}}), {&x, &w});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("'dilations'"), std::string::npos) << error.what();
  }
}

// ---- the NHWC layout pass ----------------------------------------------------------------------

// A float16 decoder: two Conv regions (NHWC-worthy: two convolutions each) with a ConvTranspose
// between them. The pass must leave the ConvTranspose NCHW, with Transposes on both sides, and
// the graph must compute what it did before.
TEST(ConvTransposeLayout, StaysNchwBetweenNhwcRegions) {
  std::mt19937 rng(5);
  testing::GraphBuilder b;
  auto weight = [&](const std::string& name, Shape shape) {
    return b.constant(name, testing::random_tensor_f32(std::move(shape), rng, -0.5f, 0.5f));
  };
  auto conv = [&](const std::string& name, ir::ValueId x, int64_t in, int64_t out) {
    return b.node("Relu", name + "_relu",
                  {b.node("Conv", name, {x, weight(name + ".w", {out, in, 3, 3})},
                          make_attrs({{"pads", ints({1, 1, 1, 1})}}))});
  };
  const ir::ValueId x = b.input("x", {1, 4, 6, 6});
  const ir::ValueId encoded = conv("enc2", conv("enc1", x, 4, 8), 8, 8);
  const ir::ValueId up =
      b.node("ConvTranspose", "up", {encoded, weight("up.w", {8, 4, 2, 2}), weight("up.b", {4})},
             make_attrs({{"strides", ints({2, 2})}}));
  b.output(conv("dec2", conv("dec1", up, 4, 4), 4, 4));
  ir::Graph& graph = b.graph;
  passes::infer_shapes(graph);
  builder::optimize_graph(graph);
  passes::lower_precision(graph, DType::kFloat16);
  const auto inputs = testing::random_inputs(graph, 3, -1.0f, 1.0f);
  const std::vector<HostTensor> before = testing::evaluate(graph, inputs);

  EXPECT_EQ(passes::convert_conv_regions_to_nhwc(graph), 4);
  graph.verify();
  const std::vector<const ir::Node*> transposed = testing::live_nodes(graph, "ConvTranspose");
  ASSERT_EQ(transposed.size(), 1u);
  const ir::Node& node = *transposed[0];
  EXPECT_FALSE(node.attrs.has("kiln_layout"));
  EXPECT_EQ(graph.value(node.inputs[0]).shape, (Shape{1, 8, 6, 6})) << "X stays NCHW";
  EXPECT_EQ(graph.value(node.outputs[0]).shape, (Shape{1, 4, 12, 12})) << "Y stays NCHW";
  const int32_t producer = graph.value(node.inputs[0]).producer;
  ASSERT_GE(producer, 0);
  EXPECT_EQ(graph.nodes[static_cast<size_t>(producer)].op_type, "Transpose");
  EXPECT_EQ(graph.nodes[static_cast<size_t>(producer)].attrs.get_ints("perm"),
            (std::vector<int64_t>{0, 3, 1, 2}));
  int to_nhwc_consumers = 0;
  for (const ir::Node* consumer : testing::live_nodes(graph, "Transpose")) {
    if (consumer->inputs[0] == node.outputs[0]) {
      EXPECT_EQ(consumer->attrs.get_ints("perm"), (std::vector<int64_t>{0, 2, 3, 1}));
      ++to_nhwc_consumers;
    }
  }
  EXPECT_EQ(to_nhwc_consumers, 1);

  const std::vector<HostTensor> after = testing::evaluate(graph, inputs);
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i)
    testing::expect_close_to_scale(after[i], before[i], 2e-3f);
}

}  // namespace
}  // namespace kiln::cpu
