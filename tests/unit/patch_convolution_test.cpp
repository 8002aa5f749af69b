// Patch convolutions (kernel == stride, no padding) rewritten to Reshape/Transpose + one MatMul
// with the bias in its epilogue. Rewritten graphs must compute what the conv computed (both
// evaluated node by node on the CPU kernels); convs outside the pattern must stay Conv.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "builder/build_from_graph.hpp"
#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "kiln/runtime.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/patch_convolution.hpp"
#include "passes/precision_lowering.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::evaluate;
using testing::expect_close;
using testing::GraphBuilder;
using testing::live_nodes;
using testing::live_op_types;
using testing::random_inputs;
using testing::random_tensor_f32;
using testing::to_half;

constexpr int64_t kChannels = 3, kOutChannels = 5, kHeight = 8, kWidth = 12;

struct ConvSpec {
  int64_t batch = 1;
  int64_t channels = kChannels;
  int64_t height = kHeight, width = kWidth;
  int64_t out_channels = kOutChannels;
  int64_t patch_h = 4, patch_w = 4;
  std::vector<int64_t> strides;  // empty: equal to the kernel
  bool bias = true;
  bool kernel_shape_attribute = true;
  DType dtype = DType::kFloat32;
  std::function<void(AttributeMap&)> edit_attrs;  // extra attributes for the variant
  bool weight_is_input = false;
  bool residual = false;
  int64_t group = 1;
};

HostTensor random_of(Shape shape, std::mt19937& rng, DType dtype) {
  HostTensor t = random_tensor_f32(std::move(shape), rng);
  return dtype == DType::kFloat16 ? to_half(t) : t;
}

// x [N, C, H, W] -> Conv -> y, inferred.
GraphBuilder conv_graph(const ConvSpec& spec) {
  GraphBuilder b;
  std::mt19937 rng(31);
  const ir::ValueId x =
      b.input("x", {spec.batch, spec.channels, spec.height, spec.width}, spec.dtype);
  const Shape w_shape{spec.out_channels, spec.channels / spec.group, spec.patch_h, spec.patch_w};
  const ir::ValueId w = spec.weight_is_input ? b.input("w", w_shape, spec.dtype)
                                             : b.constant("w", random_of(w_shape, rng, spec.dtype));
  std::vector<ir::ValueId> inputs{x, w};
  if (spec.bias || spec.residual) {
    inputs.push_back(spec.bias ? b.constant("b", random_of({spec.out_channels}, rng, spec.dtype))
                               : ir::kNoValue);
  }
  AttributeMap attrs;
  if (spec.kernel_shape_attribute) {
    attrs.set("kernel_shape", Attribute::of_ints({spec.patch_h, spec.patch_w}));
  }
  attrs.set("strides", Attribute::of_ints(spec.strides.empty()
                                              ? std::vector<int64_t>{spec.patch_h, spec.patch_w}
                                              : spec.strides));
  attrs.set("pads", Attribute::of_ints({0, 0, 0, 0}));
  if (spec.group != 1) attrs.set("group", Attribute::of_int(spec.group));
  if (spec.edit_attrs) spec.edit_attrs(attrs);
  if (spec.residual) {
    // Output shape of the conv as it would be inferred (only used with stride == kernel here).
    inputs.push_back(b.input(
        "residual",
        {spec.batch, spec.out_channels, spec.height / spec.patch_h, spec.width / spec.patch_w},
        spec.dtype));
  }
  b.output(b.node("Conv", "patch_embed", inputs, attrs));
  infer_shapes(b.graph);
  return b;
}

Shape graph_shape(const ir::Graph& graph, ir::ValueId id) { return graph.value(id).shape; }

// Runs the pass on `b`, checks it evaluates as before and returns the pass's count.
int rewrite_and_compare(GraphBuilder& b, float relative, uint32_t seed = 7,
                        PatchKind kind = PatchKind::kPatchEmbedding) {
  const auto inputs = random_inputs(b.graph, seed);
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  const int rewritten = convert_patch_convolutions_to_matmul(b.graph, kind);
  b.graph.verify();
  const std::vector<HostTensor> after = evaluate(b.graph, inputs);
  EXPECT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) {
    expect_close(after[i], before[i], relative);
  }
  return rewritten;
}

// Checks the rewritten chain of one conv and the MatMul's operands.
void expect_patch_gemm(const ir::Graph& graph, const ConvSpec& spec) {
  EXPECT_EQ(live_op_types(graph), (std::vector<std::string>{"Reshape", "Transpose", "Reshape",
                                                            "MatMul", "Reshape", "Transpose"}));
  const auto matmuls = live_nodes(graph, "MatMul");
  ASSERT_EQ(matmuls.size(), 1u);
  const ir::Node& gemm = *matmuls[0];
  const int64_t rows = spec.batch * (spec.height / spec.patch_h) * (spec.width / spec.patch_w);
  const int64_t depth = spec.channels * spec.patch_h * spec.patch_w;
  ASSERT_EQ(gemm.inputs.size(), spec.bias ? 3u : 2u);  // the bias in cuBLASLt's epilogue
  EXPECT_EQ(graph.value(gemm.inputs[0]).shape, (Shape{rows, depth}));
  ASSERT_TRUE(graph.is_constant(gemm.inputs[1]));
  EXPECT_EQ(graph.value(gemm.inputs[1]).shape, (Shape{depth, spec.out_channels}));
  EXPECT_EQ(graph.value(gemm.inputs[1]).dtype, spec.dtype);
  if (spec.bias) {
    EXPECT_EQ(graph.value(gemm.inputs[2]).name, "b");
  }
  EXPECT_EQ(graph.value(gemm.outputs[0]).shape, (Shape{rows, spec.out_channels}));
  // The conv's output value stays (same id, name, shape), now written by the last Transpose.
  ASSERT_EQ(graph.outputs.size(), 1u);
  const ir::Value& y = graph.value(graph.outputs[0]);
  EXPECT_EQ(y.name, "patch_embed");
  EXPECT_EQ(y.shape, (Shape{spec.batch, spec.out_channels, spec.height / spec.patch_h,
                            spec.width / spec.patch_w}));
  ASSERT_GE(y.producer, 0);
  EXPECT_EQ(graph.nodes[static_cast<size_t>(y.producer)].op_type, "Transpose");
}

struct RewriteCase {
  int64_t patch_h, patch_w, batch;
  bool bias;
};

class PatchConvolutionRewrite : public ::testing::TestWithParam<RewriteCase> {};

TEST_P(PatchConvolutionRewrite, BecomesGemmWithSameValues) {
  const RewriteCase& c = GetParam();
  ConvSpec spec;
  spec.patch_h = c.patch_h;
  spec.patch_w = c.patch_w;
  spec.batch = c.batch;
  spec.bias = c.bias;
  GraphBuilder b = conv_graph(spec);
  EXPECT_EQ(rewrite_and_compare(b, 1e-5f), 1);
  expect_patch_gemm(b.graph, spec);

  // The shapes the pass gave are what shape inference gives.
  std::vector<Shape> shapes;
  for (const ir::Value& value : b.graph.values) shapes.push_back(value.shape);
  infer_shapes(b.graph);
  for (size_t i = 0; i < shapes.size(); ++i)
    EXPECT_EQ(b.graph.values[i].shape, shapes[i]) << b.graph.values[i].name;
  EXPECT_EQ(convert_patch_convolutions_to_matmul(b.graph), 0);  // nothing left to rewrite
}

INSTANTIATE_TEST_SUITE_P(PatchConvolution, PatchConvolutionRewrite,
                         ::testing::Values(RewriteCase{4, 4, 1, true}, RewriteCase{4, 4, 3, true},
                                           RewriteCase{4, 4, 1, false}, RewriteCase{4, 4, 3, false},
                                           RewriteCase{2, 4, 1, true}, RewriteCase{2, 4, 3, true},
                                           RewriteCase{2, 4, 1, false},
                                           RewriteCase{2, 4, 3, false}),
                         [](const ::testing::TestParamInfo<RewriteCase>& info) {
                           const RewriteCase& c = info.param;
                           return "patch" + std::to_string(c.patch_h) + "x" +
                                  std::to_string(c.patch_w) + "_batch" + std::to_string(c.batch) +
                                  (c.bias ? "_bias" : "_no_bias");
                         });

TEST(PatchConvolutionPass, WeightMatrixIsTheKernelFlattenedAndTransposed) {
  ConvSpec spec;
  spec.patch_h = 2;
  spec.patch_w = 4;
  GraphBuilder b = conv_graph(spec);
  const HostTensor w = *b.graph.value(b.graph.nodes[0].inputs[1]).constant;
  ASSERT_EQ(convert_patch_convolutions_to_matmul(b.graph), 1);
  const HostTensor& matrix = *b.graph.value(live_nodes(b.graph, "MatMul")[0]->inputs[1]).constant;
  // W'[(c * p + i) * q + j, m] = W[m, c, i, j]
  for (int64_t m = 0; m < kOutChannels; ++m) {
    for (int64_t c = 0; c < kChannels; ++c) {
      for (int64_t i = 0; i < 2; ++i) {
        for (int64_t j = 0; j < 4; ++j) {
          const int64_t k = (c * 2 + i) * 4 + j;
          ASSERT_EQ(matrix.data<float>()[k * kOutChannels + m],
                    w.data<float>()[((m * kChannels + c) * 2 + i) * 4 + j])
              << "m " << m << " c " << c << " i " << i << " j " << j;
        }
      }
    }
  }
}

TEST(PatchConvolutionPass, Float16KeepsWeightDtype) {
  ConvSpec spec;
  spec.dtype = DType::kFloat16;
  spec.batch = 2;
  GraphBuilder b = conv_graph(spec);
  // Both sides accumulate in float32 and round once to float16; sums in another order may
  // differ in the last bit.
  EXPECT_EQ(rewrite_and_compare(b, 2e-3f), 1);
  expect_patch_gemm(b.graph, spec);
}

TEST(PatchConvolutionPass, FusedReluMovesOntoTheGemm) {
  ConvSpec spec;
  spec.edit_attrs = [](AttributeMap& attrs) {
    attrs.set("kiln_activation", Attribute::of_string("Relu"));
    attrs.set("kiln_allow_tf32", Attribute::of_int(1));
  };
  GraphBuilder b = conv_graph(spec);
  EXPECT_EQ(rewrite_and_compare(b, 1e-5f), 1);
  expect_patch_gemm(b.graph, spec);
  const ir::Node& gemm = *live_nodes(b.graph, "MatMul")[0];
  EXPECT_EQ(gemm.attrs.get_string_or("kiln_activation", ""), "Relu");
  EXPECT_EQ(gemm.attrs.get_int_or("kiln_allow_tf32", 0), 1);
  // The activation matters: some outputs were clamped (random weights give both signs).
  const auto inputs = random_inputs(b.graph, 7);
  const HostTensor y = evaluate(b.graph, inputs)[0];
  int zeros = 0;
  for (int64_t i = 0; i < y.numel(); ++i) zeros += y.data<float>()[i] == 0.0f;
  EXPECT_GT(zeros, 0);
}

TEST(PatchConvolutionPass, ZeroPaddingSpellingsAndImplicitKernelShape) {
  for (const char* auto_pad : {"VALID", "SAME_UPPER", "SAME_LOWER", "NOTSET"}) {
    ConvSpec spec;
    spec.kernel_shape_attribute = false;
    spec.edit_attrs = [auto_pad](AttributeMap& attrs) {
      attrs.erase("pads");
      attrs.set("auto_pad", Attribute::of_string(auto_pad));
      attrs.set("dilations", Attribute::of_ints({1, 1}));
      attrs.set("kiln_layout", Attribute::of_string("NCHW"));
    };
    GraphBuilder b = conv_graph(spec);
    EXPECT_EQ(rewrite_and_compare(b, 1e-5f), 1) << auto_pad;
    expect_patch_gemm(b.graph, spec);
  }
}

// Convs outside the pattern: the pass leaves the graph as it was.
void expect_kept(const ConvSpec& spec, const std::string& why) {
  SCOPED_TRACE(why);
  GraphBuilder b = conv_graph(spec);
  const size_t values = b.graph.values.size();
  EXPECT_EQ(convert_patch_convolutions_to_matmul(b.graph), 0);
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Conv"}));
  EXPECT_EQ(b.graph.values.size(), values);
}

TEST(PatchConvolutionPass, ConvsOutsideThePatternStayConv) {
  {
    ConvSpec spec;
    spec.edit_attrs = [](AttributeMap& attrs) {
      attrs.set("pads", Attribute::of_ints({1, 1, 1, 1}));
    };
    spec.height = 6;  // (6 + 2) / 4: a valid conv with padding
    spec.width = 10;
    expect_kept(spec, "padding");
  }
  {
    ConvSpec spec;
    spec.strides = {2, 2};
    expect_kept(spec, "stride != kernel");
  }
  {
    ConvSpec spec;
    spec.patch_h = spec.patch_w = 2;
    spec.edit_attrs = [](AttributeMap& attrs) {
      attrs.set("dilations", Attribute::of_ints({2, 2}));
    };
    expect_kept(spec, "dilation");
  }
  {
    ConvSpec spec;
    spec.group = 3;
    spec.out_channels = 6;
    expect_kept(spec, "group 3");
  }
  {
    ConvSpec spec;
    spec.weight_is_input = true;
    expect_kept(spec, "weight not constant");
  }
  {
    ConvSpec spec;
    spec.height = 10;  // 10 % 4 != 0
    expect_kept(spec, "height not divisible");
  }
  {
    ConvSpec spec;
    spec.width = 14;  // 14 % 4 != 0
    expect_kept(spec, "width not divisible");
  }
  {
    ConvSpec spec;
    spec.residual = true;
    expect_kept(spec, "residual input");
  }
  {
    ConvSpec spec;
    spec.residual = true;
    spec.bias = false;
    expect_kept(spec, "residual input without bias");
  }
  {
    ConvSpec spec;
    spec.patch_h = spec.patch_w = 1;
    expect_kept(spec, "1x1 kernel on a larger map");
  }
  {
    ConvSpec spec;
    spec.patch_h = 1;
    expect_kept(spec, "kernel 1 in one dim");
  }
}

TEST(PatchConvolutionPass, NhwcLayoutAndDynamicSpatialDimsStayConv) {
  {
    GraphBuilder b = conv_graph({});
    b.graph.nodes[0].attrs.set("kiln_layout", Attribute::of_string("NHWC"));
    EXPECT_EQ(convert_patch_convolutions_to_matmul(b.graph), 0);
    EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Conv"}));
  }
  for (size_t dim : {1u, 2u, 3u}) {
    GraphBuilder b = conv_graph({});
    b.graph.value(b.graph.inputs[0]).shape[dim] = kDynamicDim;
    infer_shapes(b.graph);
    EXPECT_EQ(convert_patch_convolutions_to_matmul(b.graph), 0) << "dynamic dim " << dim;
    EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Conv"}));
  }
}

// Evaluates `graph` (x's batch dynamic) and the rewritten copy on x of batch `batch`.
void expect_same_on_batch(const ir::Graph& original, const ir::Graph& rewritten, int64_t batch) {
  std::mt19937 rng(static_cast<uint32_t>(batch));
  Shape x_shape = original.value(original.inputs[0]).shape;
  x_shape[0] = batch;
  const std::map<std::string, HostTensor> inputs{{"x", random_tensor_f32(x_shape, rng, -3, 3)}};
  const std::vector<HostTensor> want = evaluate(original, inputs);
  const std::vector<HostTensor> got = evaluate(rewritten, inputs);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) expect_close(got[i], want[i], 1e-5f);
}

TEST(PatchConvolutionPass, DynamicBatchStaysDynamic) {
  GraphBuilder b = conv_graph({});
  b.graph.value(b.graph.inputs[0]).shape[0] = kDynamicDim;
  infer_shapes(b.graph);
  const ir::Graph original = b.graph;
  ASSERT_EQ(convert_patch_convolutions_to_matmul(b.graph), 1);
  b.graph.verify();
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Reshape", "Transpose", "Reshape",
                                                              "MatMul", "Reshape", "Transpose"}));
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape,
            (Shape{kDynamicDim, kOutChannels, kHeight / 4, kWidth / 4}));
  EXPECT_EQ(b.graph.value(live_nodes(b.graph, "MatMul")[0]->inputs[0]).shape,
            (Shape{kDynamicDim, kChannels * 16}));
  for (int64_t batch : {1, 3}) expect_same_on_batch(original, b.graph, batch);
}

// Three patch convs (a 4x4 on x; c 2x2 after an ordinary 3x3 conv; b 8x8 on x, also a graph
// output) around one ordinary conv: three rewrites, in order, with unique names.
TEST(PatchConvolutionPass, CountsRewritesAndKeepsOrderAndNames) {
  GraphBuilder b;
  std::mt19937 rng(3);
  const auto weight = [&](const std::string& name, Shape shape) {
    return b.constant(name, random_tensor_f32(std::move(shape), rng));
  };
  const auto patch = [](int64_t p) {
    return attrs_of(
        {{"kernel_shape", Attribute::of_ints({p, p})}, {"strides", Attribute::of_ints({p, p})}});
  };
  const ir::ValueId x = b.input("x", {2, 3, 16, 16});
  const ir::ValueId a = b.node("Conv", "a", {x, weight("wa", {4, 3, 4, 4}), weight("ba", {4})},
                               patch(4));  // [2, 4, 4, 4]
  const ir::ValueId relu = b.node("Relu", "relu", {a});
  const ir::ValueId ordinary =
      b.node("Conv", "ordinary", {relu, weight("wo", {4, 4, 3, 3})},
             attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}}));  // [2, 4, 4, 4]
  const ir::ValueId c = b.node("Conv", "c", {ordinary, weight("wc", {6, 4, 2, 2})}, patch(2));
  const ir::ValueId bx =
      b.node("Conv", "b", {x, weight("wb", {6, 3, 8, 8}), weight("bb", {6})}, patch(8));
  // A node already named like a generated one: names stay unique.
  const ir::ValueId y = b.node("Add", "a/patch_rows", {c, bx});
  b.output(y);
  b.output(bx);
  infer_shapes(b.graph);

  // b sums 192 products of terms up to 3 in another order than the direct conv loop, then an Add:
  // float32 rounding of a few 1e-5 on outputs near 1.
  EXPECT_EQ(rewrite_and_compare(b, 1e-4f), 3);
  EXPECT_EQ(live_nodes(b.graph, "Conv").size(), 1u);
  EXPECT_EQ(live_nodes(b.graph, "MatMul").size(), 3u);
  std::set<std::string> names;
  for (const ir::Node* node : live_nodes(b.graph)) {
    EXPECT_TRUE(names.insert(node->name).second) << "duplicate node name " << node->name;
  }
  for (const char* conv : {"a", "b", "c"}) {
    const int index = testing::find_node(b.graph, conv);
    ASSERT_GE(index, 0) << conv;
    EXPECT_EQ(b.graph.nodes[static_cast<size_t>(index)].op_type, "MatMul") << conv;
  }
  EXPECT_EQ(b.graph.value(b.graph.outputs[1]).name, "b");

  // The replaced kernels are unread: dead-code elimination drops them.
  eliminate_dead_code(b.graph);
  for (const ir::Value& value : b.graph.values) {
    EXPECT_NE(value.name, "wa");
    EXPECT_NE(value.name, "wb");
    EXPECT_NE(value.name, "wc");
  }
  EXPECT_EQ(convert_patch_convolutions_to_matmul(b.graph), 0);
}

// x -> patch conv -> Reshape [N, M, h*w] -> Transpose [0, 2, 1] -> Relu -> y (ViT's tokens).
struct TokenTail {
  bool conv_is_output = false;
  bool reshape_is_output = false;
  std::vector<int64_t> perm{0, 2, 1};
  std::vector<int64_t> flat_shape;  // empty: [N, M, h*w] ([0, M, h*w] with a dynamic batch)
  bool dynamic_batch = false;
};

GraphBuilder token_graph(const TokenTail& tail) {
  GraphBuilder b;
  std::mt19937 rng(11);
  constexpr int64_t n = 2, tokens = (kHeight / 4) * (kWidth / 4);
  const ir::ValueId x =
      b.input("x", {tail.dynamic_batch ? kDynamicDim : n, kChannels, kHeight, kWidth});
  const ir::ValueId conv =
      b.node("Conv", "patch_embed",
             {x, b.constant("w", random_tensor_f32({kOutChannels, kChannels, 4, 4}, rng)),
              b.constant("b", random_tensor_f32({kOutChannels}, rng))},
             attrs_of({{"strides", Attribute::of_ints({4, 4})}}));
  const std::vector<int64_t> flat = !tail.flat_shape.empty() ? tail.flat_shape
                                    : tail.dynamic_batch
                                        ? std::vector<int64_t>{0, kOutChannels, tokens}
                                        : std::vector<int64_t>{n, kOutChannels, tokens};
  const ir::ValueId flattened = b.node(
      "Reshape", "flatten",
      {conv, b.constant("flat_shape",
                        testing::make_tensor_i64({static_cast<int64_t>(flat.size())}, flat))});
  const ir::ValueId swapped = b.node("Transpose", "tokens", {flattened}, testing::perm(tail.perm));
  b.output(b.node("Relu", "y", {swapped}));
  if (tail.conv_is_output) b.output(conv);
  if (tail.reshape_is_output) b.output(flattened);
  infer_shapes(b.graph);
  return b;
}

TEST(PatchConvolutionPass, TokenFlatteningBecomesOneReshapeOfTheGemm) {
  GraphBuilder b = token_graph({});
  const ir::ValueId tokens =
      b.graph.nodes[static_cast<size_t>(testing::find_node(b.graph, "tokens"))].outputs[0];
  EXPECT_EQ(rewrite_and_compare(b, 1e-5f), 1);
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Reshape", "Transpose", "Reshape",
                                                              "MatMul", "Reshape", "Relu"}));
  const ir::Value& value = b.graph.value(tokens);
  EXPECT_EQ(value.name, "tokens");
  EXPECT_EQ(value.shape, (Shape{2, (kHeight / 4) * (kWidth / 4), kOutChannels}));
  ASSERT_GE(value.producer, 0);
  const ir::Node& reshape = b.graph.nodes[static_cast<size_t>(value.producer)];
  EXPECT_EQ(reshape.op_type, "Reshape");
  EXPECT_EQ(b.graph.nodes[static_cast<size_t>(b.graph.value(reshape.inputs[0]).producer)].op_type,
            "MatMul");
  eliminate_dead_code(b.graph);
  b.graph.verify();
  for (const ir::Value& v : b.graph.values) EXPECT_NE(v.name, "patch_embed") << "conv output";
}

TEST(PatchConvolutionPass, TokenTailKeptWhenReadElsewhereOrNotFlattening) {
  struct Case {
    TokenTail tail;
    const char* why;
  };
  std::vector<Case> cases{{{true, false, {0, 2, 1}, {}}, "conv output is a graph output"},
                          {{false, true, {0, 2, 1}, {}}, "flattened is a graph output"},
                          {{false, false, {2, 1, 0}, {}}, "other perm"},
                          {{false, false, {0, 2, 1}, {2, kOutChannels * 2, 3}}, "other reshape"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.why);
    GraphBuilder b = token_graph(c.tail);
    EXPECT_EQ(rewrite_and_compare(b, 1e-5f), 1);
    const std::vector<std::string> ops = live_op_types(b.graph);
    // The full rewrite, then the model's own Reshape and Transpose.
    ASSERT_GE(ops.size(), 8u);
    EXPECT_EQ(std::vector<std::string>(ops.begin(), ops.begin() + 8),
              (std::vector<std::string>{"Reshape", "Transpose", "Reshape", "MatMul", "Reshape",
                                        "Transpose", "Reshape", "Transpose"}));
    EXPECT_GE(testing::find_node(b.graph, "flatten"), 0);
    EXPECT_GE(testing::find_node(b.graph, "tokens"), 0);
  }
}

TEST(PatchConvolutionPass, TokenFlatteningWithDynamicBatch) {
  TokenTail tail;
  tail.dynamic_batch = true;
  GraphBuilder b = token_graph(tail);
  const ir::Graph original = b.graph;
  ASSERT_EQ(convert_patch_convolutions_to_matmul(b.graph), 1);
  b.graph.verify();
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Reshape", "Transpose", "Reshape",
                                                              "MatMul", "Reshape", "Relu"}));
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape,
            (Shape{kDynamicDim, (kHeight / 4) * (kWidth / 4), kOutChannels}));
  for (int64_t batch : {1, 4}) expect_same_on_batch(original, b.graph, batch);
}

// The order the CUDA lowering runs it in: rewrite, dead-code elimination, then float16 lowering
// converts the GEMM's weight and bias like any other constant.
TEST(PatchConvolutionLowering, RewriteThenFloat16LoweringMatchesFloat32Conv) {
  GraphBuilder b = token_graph({});
  const auto inputs = random_inputs(b.graph, 23);
  const std::vector<HostTensor> want = evaluate(b.graph, inputs);
  ASSERT_EQ(convert_patch_convolutions_to_matmul(b.graph), 1);
  eliminate_dead_code(b.graph);
  lower_precision(b.graph, DType::kFloat16);
  EXPECT_TRUE(live_nodes(b.graph, "Conv").empty());
  const auto matmuls = live_nodes(b.graph, "MatMul");
  ASSERT_EQ(matmuls.size(), 1u);
  for (ir::ValueId operand : matmuls[0]->inputs) {
    EXPECT_EQ(b.graph.value(operand).dtype, DType::kFloat16) << b.graph.value(operand).name;
  }
  const std::vector<HostTensor> got = evaluate(b.graph, inputs);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].dtype, DType::kFloat32);  // the output keeps its declared dtype
  testing::expect_close_to_scale(got[0], want[0], 1e-2f);
}

// A squeeze-excitation's 1x1 conv on a 1x1 map: the GEMM reads X [N, C, 1, 1] as [N, C] rows, so
// only Reshapes (views) surround it, with or without the fused Relu, for a dynamic batch too.
TEST(PatchConvolutionPass, OnePixelPointwiseConvIsAGemmBetweenReshapes) {
  for (const int64_t batch : {int64_t{3}, kDynamicDim}) {
    for (const bool relu : {false, true}) {
      ConvSpec spec;
      spec.batch = batch;
      spec.channels = 16;
      spec.out_channels = 4;
      spec.height = spec.width = 1;
      spec.patch_h = spec.patch_w = 1;
      spec.strides = {1, 1};
      if (relu) spec.edit_attrs = [](AttributeMap& attrs) { attrs.set("kiln_activation", Attribute::of_string("Relu")); };
      GraphBuilder b = conv_graph(spec);
      EXPECT_EQ(convert_patch_convolutions_to_matmul(b.graph), 0);  // not a patch embedding
      if (batch == kDynamicDim) {
        ASSERT_EQ(convert_patch_convolutions_to_matmul(b.graph, PatchKind::kOnePixel), 1);
      } else {
        EXPECT_EQ(rewrite_and_compare(b, 1e-5f, 7, PatchKind::kOnePixel), 1);
      }
      EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Reshape", "MatMul", "Reshape"}));
      const ir::Node& gemm = *live_nodes(b.graph, "MatMul")[0];
      EXPECT_EQ(graph_shape(b.graph, gemm.inputs[1]), (Shape{16, 4}));
      EXPECT_EQ(gemm.attrs.has("kiln_activation"), relu);
      EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape, (Shape{batch, 4, 1, 1}));
    }
  }
}

// The rewritten graph emits and runs as a CPU engine.
TEST(PatchConvolutionEngine, CpuEngineOfRewrittenGraphMatchesConv) {
  GraphBuilder b = token_graph({});
  const auto inputs = random_inputs(b.graph, 29);
  const std::vector<HostTensor> want = evaluate(b.graph, inputs);
  ASSERT_EQ(convert_patch_convolutions_to_matmul(b.graph), 1);
  eliminate_dead_code(b.graph);
  const std::vector<uint8_t> bytes =
      builder::build_engine_from_graph(std::move(b.graph), BuilderConfig{});
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext context = engine.create_context();
  std::vector<NamedTensor> named;
  for (const auto& [name, tensor] : inputs) {
    named.push_back(NamedTensor{
        name, TensorRef{tensor.dtype, tensor.shape, const_cast<uint8_t*>(tensor.bytes.data())}});
  }
  const std::vector<Tensor> outputs = context.execute(named);
  ASSERT_EQ(outputs.size(), 1u);
  HostTensor got(outputs[0].dtype, outputs[0].shape);
  got.bytes = outputs[0].bytes;
  expect_close(got, want[0], 1e-5f);
}

}  // namespace
}  // namespace kiln::passes
