// The NHWC layout pass: which nodes move to NHWC, where Transposes go, how constants are re-laid
// out, and that the rewritten graph computes what the NCHW graph did (both evaluated node by node
// on the CPU reference kernels, after the builder's pipeline up to precision lowering).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/half.hpp"
#include "builder/build_from_graph.hpp"
#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "passes/conv_padding.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/layout_nhwc.hpp"
#include "passes/pass.hpp"
#include "passes/precision_lowering.hpp"
#include "passes/shape_inference.hpp"
#include "passes/transpose_composition.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::element;
using testing::evaluate;
using testing::expect_close_to_scale;
using testing::GraphBuilder;
using testing::make_tensor_f32;
using testing::make_tensor_i64;
using testing::random_inputs;
using testing::random_tensor_f32;

// The builder's pipeline for the CUDA target up to the layout pass.
void lower(ir::Graph& graph, DType precision = DType::kFloat16) {
  infer_shapes(graph);
  builder::optimize_graph(graph);
  if (make_conv_padding_symmetric(graph) > 0) infer_shapes(graph);
  if (precision != DType::kFloat32) lower_precision(graph, precision);
}

// Lowers, runs the pass and checks every output against the graph before the pass. Returns the
// number of converted convolutions.
int convert_and_compare(ir::Graph& graph, uint32_t seed, DType precision = DType::kFloat16,
                        bool include_depthwise = false) {
  lower(graph, precision);
  const auto inputs = random_inputs(graph, seed, -1.0f, 1.0f);
  const std::vector<HostTensor> before = evaluate(graph, inputs);
  const std::vector<std::string> output_names = [&] {
    std::vector<std::string> names;
    for (ir::ValueId out : graph.outputs) names.push_back(graph.value(out).name);
    return names;
  }();
  const int converted = convert_conv_regions_to_nhwc(graph, include_depthwise);
  graph.verify();
  for (size_t o = 0; o < graph.outputs.size(); ++o) {
    EXPECT_EQ(graph.value(graph.outputs[o]).name, output_names[o]) << "outputs keep their names";
  }
  const std::vector<HostTensor> after = evaluate(graph, inputs);
  EXPECT_EQ(after.size(), before.size());
  // The CPU computes NHWC nodes through the same NCHW code: only rounding order may differ.
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) {
    expect_close_to_scale(after[i], before[i], 2e-3f);
  }
  return converted;
}

std::vector<const ir::Node*> nodes_of(const ir::Graph& graph, const std::string& op) {
  std::vector<const ir::Node*> found;
  for (const ir::Node& node : graph.nodes) {
    if (!node.removed && node.op_type == op) found.push_back(&node);
  }
  return found;
}

const ir::Node& producer_of(const ir::Graph& graph, ir::ValueId id) {
  const int32_t p = graph.value(id).producer;
  EXPECT_GE(p, 0) << graph.value(id).name;
  return graph.nodes.at(static_cast<size_t>(std::max(p, 0)));
}

bool is_nhwc(const ir::Node& node) {
  return node.attrs.get_string_or("kiln_layout", "") == "NHWC";
}

std::vector<int64_t> perm_of(const ir::Node& node) {
  return node.attrs.get_ints("perm");
}

const std::vector<int64_t> kToNhwc{0, 2, 3, 1};
const std::vector<int64_t> kToNchw{0, 3, 1, 2};

class Net {
 public:
  explicit Net(uint32_t seed) : rng_(seed) {}

  ir::ValueId input(const std::string& name, Shape shape) { return b.input(name, shape); }

  ir::ValueId weight(const std::string& name, Shape shape) {
    return b.constant(name, random_tensor_f32(std::move(shape), rng_, -0.5f, 0.5f));
  }

  ir::ValueId conv(const std::string& name, ir::ValueId x, int64_t in, int64_t out, int64_t k,
                   int64_t stride = 1, int64_t group = 1, bool bias = true) {
    std::vector<ir::ValueId> inputs{x, weight(name + ".w", {out, in / group, k, k})};
    if (bias) inputs.push_back(weight(name + ".b", {out}));
    const int64_t pad = k / 2;
    return b.node("Conv", name, inputs,
                  attrs_of({{"strides", Attribute::of_ints({stride, stride})},
                            {"pads", Attribute::of_ints({pad, pad, pad, pad})},
                            {"group", Attribute::of_int(group)}}));
  }

  ir::ValueId op(const std::string& op, const std::string& name, std::vector<ir::ValueId> inputs,
                 AttributeMap attrs = {}) {
    return b.node(op, name, std::move(inputs), std::move(attrs));
  }

  // GlobalAveragePool -> Flatten -> Gemm: the classifier head.
  ir::ValueId head(ir::ValueId x, int64_t channels, int64_t classes) {
    const ir::ValueId pooled = op("GlobalAveragePool", "gap", {x});
    const ir::ValueId flat = op("Flatten", "flatten", {pooled});
    return op("Gemm", "fc", {flat, weight("fc.w", {classes, channels}), weight("fc.b", {classes})},
              attrs_of({{"transB", Attribute::of_int(1)}}));
  }

  GraphBuilder b;

 private:
  std::mt19937 rng_;
};

TEST(PassesLayoutNhwc, ResidualNetBecomesOneRegion) {
  Net n(1);
  const ir::ValueId x = n.input("x", {2, 3, 12, 12});
  const ir::ValueId stem = n.op("Relu", "stem_relu", {n.conv("stem", x, 3, 8, 3, 2)});
  const ir::ValueId pooled = n.op("MaxPool", "pool", {stem},
                                  attrs_of({{"kernel_shape", Attribute::of_ints({3, 3})},
                                            {"strides", Attribute::of_ints({2, 2})},
                                            {"pads", Attribute::of_ints({1, 1, 1, 1})}}));
  const ir::ValueId c1 = n.op("Relu", "relu1", {n.conv("conv1", pooled, 8, 8, 3)});
  const ir::ValueId c2 = n.conv("conv2", c1, 8, 8, 3, 1, 1, false);
  const ir::ValueId block = n.op("Relu", "relu2", {n.op("Add", "add", {c2, pooled})});
  n.b.output(n.head(block, 8, 5));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 11), 3);

  for (const ir::Node* conv : nodes_of(g, "Conv")) {
    EXPECT_TRUE(is_nhwc(*conv)) << conv->name;
    // KRSC weights: [M, kH, kW, C/group].
    const ir::Value& w = g.value(conv->inputs[1]);
    EXPECT_EQ(w.shape[1], 3) << conv->name;
    EXPECT_EQ(w.shape[2], 3) << conv->name;
    EXPECT_NE(w.name.find(".krsc"), std::string::npos) << w.name;
    EXPECT_EQ(g.value(conv->outputs[0]).shape[3], 8) << "NHWC output of " << conv->name;
  }
  // The residual add and relu were fused into conv2, whose residual is the NHWC pool output.
  const ir::Node& conv2 = *nodes_of(g, "Conv").back();
  ASSERT_EQ(conv2.inputs.size(), 4u);
  EXPECT_EQ(producer_of(g, conv2.inputs[3]).op_type, "MaxPool");
  EXPECT_TRUE(is_nhwc(*nodes_of(g, "MaxPool")[0]));
  EXPECT_TRUE(is_nhwc(*nodes_of(g, "GlobalAveragePool")[0]));

  // Two transposes: into the region after the input's fp16 cast, out of it before Flatten.
  const auto transposes = nodes_of(g, "Transpose");
  ASSERT_EQ(transposes.size(), 2u);
  const ir::Node& entry = *transposes[0];
  EXPECT_EQ(perm_of(entry), kToNhwc);
  EXPECT_EQ(producer_of(g, entry.inputs[0]).op_type, "Cast");
  EXPECT_EQ(g.value(entry.outputs[0]).dtype, DType::kFloat16);
  EXPECT_EQ(g.value(entry.outputs[0]).shape, (Shape{2, 12, 12, 3}));
  const ir::Node& exit = *transposes[1];
  EXPECT_EQ(perm_of(exit), kToNchw);
  EXPECT_EQ(producer_of(g, exit.inputs[0]).op_type, "GlobalAveragePool");
  EXPECT_EQ(g.value(exit.outputs[0]).name, "gap");
  EXPECT_EQ(g.value(exit.outputs[0]).shape, (Shape{2, 8, 1, 1}));
  EXPECT_EQ(g.value(exit.inputs[0]).name, "gap.nhwc");
  EXPECT_EQ(producer_of(g, nodes_of(g, "Flatten")[0]->inputs[0]).op_type, "Transpose");
}

TEST(PassesLayoutNhwc, SingleConvGraphIsUntouched) {
  Net n(2);
  const ir::ValueId x = n.input("x", {1, 3, 16, 16});
  const ir::ValueId patches =
      n.op("Conv", "patch_embed", {x, n.weight("patch_embed.w", {8, 3, 4, 4})},
           attrs_of({{"strides", Attribute::of_ints({4, 4})}}));
  n.b.output(n.op("Reshape", "tokens",
                  {patches, n.b.constant("shape", make_tensor_i64({3}, {1, 8, 16}))}));
  ir::Graph& g = n.b.graph;
  lower(g);
  const size_t nodes = g.nodes.size();
  EXPECT_EQ(convert_conv_regions_to_nhwc(g), 0);
  EXPECT_EQ(g.nodes.size(), nodes);
  EXPECT_TRUE(nodes_of(g, "Transpose").empty());
  EXPECT_FALSE(is_nhwc(*nodes_of(g, "Conv")[0]));
}

TEST(PassesLayoutNhwc, Float32ConvsStayNchw) {
  Net n(3);
  const ir::ValueId x = n.input("x", {1, 4, 8, 8});
  n.b.output(n.conv("b", n.op("Relu", "r", {n.conv("a", x, 4, 4, 3)}), 4, 4, 3));
  ir::Graph& g = n.b.graph;
  lower(g, DType::kFloat32);
  EXPECT_EQ(convert_conv_regions_to_nhwc(g), 0);
  for (const ir::Node* conv : nodes_of(g, "Conv")) EXPECT_FALSE(is_nhwc(*conv));
}

TEST(PassesLayoutNhwc, PoolingWithPaddingAndCeilModeAndNchwOutput) {
  Net n(4);
  const ir::ValueId x = n.input("x", {1, 6, 11, 10});
  const ir::ValueId a = n.conv("a", x, 6, 8, 3);
  const ir::ValueId mp = n.op("MaxPool", "maxpool", {a},
                              attrs_of({{"kernel_shape", Attribute::of_ints({3, 2})},
                                        {"strides", Attribute::of_ints({2, 2})},
                                        {"pads", Attribute::of_ints({1, 0, 1, 1})},
                                        {"ceil_mode", Attribute::of_int(1)}}));
  const ir::ValueId b = n.conv("b", mp, 8, 8, 1);
  const ir::ValueId ap = n.op("AveragePool", "avgpool", {b},
                              attrs_of({{"kernel_shape", Attribute::of_ints({3, 3})},
                                        {"strides", Attribute::of_ints({2, 2})},
                                        {"pads", Attribute::of_ints({1, 1, 1, 1})},
                                        {"count_include_pad", Attribute::of_int(1)},
                                        {"ceil_mode", Attribute::of_int(1)}}));
  const ir::ValueId ap2 = n.op("AveragePool", "avgpool2", {ap},
                               attrs_of({{"kernel_shape", Attribute::of_ints({2, 2})},
                                         {"pads", Attribute::of_ints({1, 1, 0, 0})}}));
  n.b.output(n.conv("c", ap2, 8, 4, 3, 2));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 12), 3);
  for (const char* op : {"MaxPool", "AveragePool"}) {
    for (const ir::Node* pool : nodes_of(g, op)) EXPECT_TRUE(is_nhwc(*pool)) << pool->name;
  }
  // The graph output is a region tensor: it leaves through a Transpose (after the region's last
  // fp16 value, before the cast back to float32).
  const auto transposes = nodes_of(g, "Transpose");
  ASSERT_EQ(transposes.size(), 2u);
  EXPECT_EQ(perm_of(*transposes[1]), kToNchw);
  EXPECT_EQ(producer_of(g, transposes[1]->inputs[0]).op_type, "Conv");
  EXPECT_EQ(g.value(transposes[1]->outputs[0]).dtype, DType::kFloat16);
  const ir::Node& cast = producer_of(g, g.outputs[0]);
  EXPECT_EQ(cast.op_type, "Cast");
  EXPECT_EQ(producer_of(g, cast.inputs[0]).op_type, "Transpose");
}

// MobileNetV3's pieces: 1x1 expand + HardSwish, depthwise 3x3 stride 2, squeeze-excitation
// (GlobalAveragePool -> Conv -> Relu -> Conv -> HardSigmoid -> Mul), grouped conv, and
// elementwise ops with per-channel and scalar constants.
ir::ValueId mobilenet_block(Net& n) {
  const ir::ValueId x = n.input("x", {2, 8, 9, 9});
  const ir::ValueId expand = n.op("HardSwish", "expand_act", {n.conv("expand", x, 8, 16, 1)});
  const ir::ValueId dw = n.op("HardSwish", "dw_act", {n.conv("dw", expand, 16, 16, 3, 2, 16)});
  const ir::ValueId squeeze = n.op("GlobalAveragePool", "se_pool", {dw});
  const ir::ValueId fc1 = n.op("Relu", "se_relu", {n.conv("se_fc1", squeeze, 16, 4, 1)});
  const ir::ValueId gate = n.op("HardSigmoid", "se_gate", {n.conv("se_fc2", fc1, 4, 16, 1)},
                                attrs_of({{"alpha", Attribute::of_float(1.0f / 6.0f)}}));
  const ir::ValueId excited = n.op("Mul", "se_mul", {dw, gate});
  const ir::ValueId grouped = n.conv("grouped", excited, 16, 8, 3, 1, 2, false);
  const ir::ValueId shifted = n.op("Add", "channel_shift", {grouped, n.weight("shift", {8, 1, 1})});
  const ir::ValueId scaled =
      n.op("Mul", "channel_scale", {n.weight("scale", {1, 8, 1, 1}), shifted});
  const ir::ValueId clipped = n.op("Clip", "clip",
                                   {scaled, n.b.constant("lo", make_tensor_f32({}, {-0.5f})),
                                    n.b.constant("hi", make_tensor_f32({}, {0.75f}))});
  const ir::ValueId halved =
      n.op("Mul", "halve", {clipped, n.b.constant("half", make_tensor_f32({1}, {0.5f}))});
  return halved;
}

// By default a region with a depthwise convolution stays NCHW: no Conv converted, no Transpose.
TEST(PassesLayoutNhwc, DepthwiseRegionsStayNchwByDefault) {
  Net n(5);
  n.b.output(n.head(mobilenet_block(n), 8, 3));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 13), 0);
  for (const ir::Node* conv : nodes_of(g, "Conv")) EXPECT_FALSE(is_nhwc(*conv)) << conv->name;
  EXPECT_TRUE(nodes_of(g, "Transpose").empty());
}

// Forced (include_depthwise, KILN_CONV_LAYOUT=nhwc) the whole block converts.
TEST(PassesLayoutNhwc, DepthwiseGroupedAndSqueezeExcitation) {
  Net n(5);
  n.b.output(n.head(mobilenet_block(n), 8, 3));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 13, DType::kFloat16, /*include_depthwise=*/true), 5);

  for (const ir::Node* conv : nodes_of(g, "Conv")) EXPECT_TRUE(is_nhwc(*conv)) << conv->name;
  const int dw_index = testing::find_node(g, "dw");
  ASSERT_GE(dw_index, 0);
  EXPECT_EQ(g.value(g.nodes[static_cast<size_t>(dw_index)].inputs[1]).shape,
            (Shape{16, 3, 3, 1}));  // depthwise KRSC
  EXPECT_EQ(nodes_of(g, "GlobalAveragePool").size(), 2u);
  for (const ir::Node* pool : nodes_of(g, "GlobalAveragePool")) EXPECT_TRUE(is_nhwc(*pool));
  // The SE product multiplies two NHWC tensors: [2, 5, 5, 16] by [2, 1, 1, 16].
  const ir::Node& se_mul = *nodes_of(g, "Mul")[0];
  EXPECT_EQ(g.value(se_mul.inputs[1]).shape, (Shape{2, 1, 1, 16}));
  // Per-channel constants are re-laid out to broadcast against NHWC; scalars are left alone.
  const ir::Node& shift = g.nodes[static_cast<size_t>(testing::find_node(g, "channel_shift"))];
  EXPECT_EQ(g.value(shift.inputs[1]).shape, (Shape{1, 1, 1, 8}));
  EXPECT_NE(g.value(shift.inputs[1]).name.find(".nhwc"), std::string::npos);
  const ir::Node& scale = g.nodes[static_cast<size_t>(testing::find_node(g, "channel_scale"))];
  EXPECT_EQ(g.value(scale.inputs[0]).shape, (Shape{1, 1, 1, 8}));
  const ir::Node& halve = g.nodes[static_cast<size_t>(testing::find_node(g, "halve"))];
  EXPECT_EQ(g.value(halve.inputs[1]).shape, (Shape{1}));
  EXPECT_EQ(g.value(halve.outputs[0]).shape, (Shape{2, 5, 5, 8}));
  EXPECT_EQ(nodes_of(g, "Transpose").size(), 2u);
}

// torch exports adaptive_avg_pool2d(1) as ReduceMean(axes=[-1, -2], keepdims=1): inside a region
// it becomes an NHWC GlobalAveragePool (ReduceMax a GlobalMaxPool); other reductions stay NCHW.
TEST(PassesLayoutNhwc, SpatialReductionsBecomeGlobalPools) {
  Net n(11);
  const ir::ValueId x = n.input("x", {2, 8, 6, 5});
  const ir::ValueId a = n.op("HardSwish", "act", {n.conv("a", x, 8, 8, 3)});
  const ir::ValueId mean =
      n.op("ReduceMean", "mean", {a, n.b.constant("axes", make_tensor_i64({2}, {-1, -2}))});
  const ir::ValueId gate = n.op("Sigmoid", "gate", {n.conv("fc", mean, 8, 8, 1)});
  const ir::ValueId excited = n.op("Mul", "excite", {gate, a});
  const ir::ValueId b = n.conv("b", excited, 8, 8, 3);
  const ir::ValueId peak =
      n.op("ReduceMax", "peak", {b, n.b.constant("axes2", make_tensor_i64({2}, {2, 3}))});
  const ir::ValueId channel_mean =
      n.op("ReduceMean", "channel_mean", {b, n.b.constant("axes3", make_tensor_i64({1}, {1}))});
  n.b.output(n.op("Flatten", "flat", {peak}));
  n.b.output(channel_mean);
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 19), 3);
  EXPECT_EQ(nodes_of(g, "ReduceMax").size(), 0u);
  const auto reduce_means = nodes_of(g, "ReduceMean");
  ASSERT_EQ(reduce_means.size(), 1u);
  EXPECT_EQ(reduce_means[0]->name, "channel_mean");
  EXPECT_EQ(producer_of(g, reduce_means[0]->inputs[0]).op_type, "Transpose");
  const ir::Node& pooled = g.nodes[static_cast<size_t>(testing::find_node(g, "mean"))];
  EXPECT_EQ(pooled.op_type, "GlobalAveragePool");
  EXPECT_TRUE(is_nhwc(pooled));
  ASSERT_EQ(pooled.inputs.size(), 1u);
  EXPECT_EQ(g.value(pooled.outputs[0]).shape, (Shape{2, 1, 1, 8}));
  const ir::Node& peak_node = g.nodes[static_cast<size_t>(testing::find_node(g, "peak"))];
  EXPECT_EQ(peak_node.op_type, "GlobalMaxPool");
  EXPECT_TRUE(is_nhwc(peak_node));
}

TEST(PassesLayoutNhwc, ComputedNchwBroadcastStopsTheRegion) {
  Net n(6);
  const ir::ValueId x = n.input("x", {1, 4, 6, 6});
  const ir::ValueId gain = n.input("gain", {4, 1, 1});
  const ir::ValueId a = n.op("Relu", "ra", {n.conv("a", x, 4, 4, 3)});
  const ir::ValueId b = n.conv("b", a, 4, 4, 3);
  n.b.output(n.op("Mul", "gained", {b, gain}));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 14), 2);
  const ir::Node& mul = *nodes_of(g, "Mul")[0];
  const ir::Node& feeding = producer_of(g, mul.inputs[0]);
  EXPECT_EQ(feeding.op_type, "Transpose");
  EXPECT_EQ(perm_of(feeding), kToNchw);
  EXPECT_EQ(g.value(mul.outputs[0]).shape, (Shape{1, 4, 6, 6}));
}

TEST(PassesLayoutNhwc, TensorReadInsideAndOutsideLeavesOnce) {
  Net n(7);
  const ir::ValueId x = n.input("x", {1, 4, 5, 5});
  const ir::ValueId a = n.conv("a", x, 4, 4, 3);
  const ir::ValueId b = n.conv("b", a, 4, 4, 3);
  const ir::ValueId c = n.conv("c", a, 4, 4, 1);
  n.b.output(n.op("Add", "sum", {b, c}));
  n.b.output(n.op("Sigmoid", "side", {n.op("Flatten", "flat", {a})}));
  n.b.output(n.op("Tanh", "direct", {a}));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 15), 3);
  // a leaves once (for Flatten) although two NHWC convs, Flatten and Tanh read it; Tanh runs in
  // the region and its output leaves on its own; sum leaves as an output.
  int exits_of_a = 0;
  for (const ir::Node* t : nodes_of(g, "Transpose")) {
    exits_of_a += g.value(t->outputs[0]).name == "a" && perm_of(*t) == kToNchw;
  }
  EXPECT_EQ(exits_of_a, 1);
  EXPECT_EQ(nodes_of(g, "Transpose").size(), 4u);  // x in; a, sum, direct out
}

TEST(PassesLayoutNhwc, ChannelConcatAndSharedWeights) {
  Net n(8);
  const ir::ValueId x = n.input("x", {1, 4, 7, 7});
  const ir::ValueId shared = n.weight("shared.w", {4, 4, 3, 3});
  const AttributeMap pads = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}});
  const ir::ValueId left = n.op("Conv", "left", {x, shared}, pads);
  const ir::ValueId right = n.op("Conv", "right", {n.op("Relu", "rr", {left}), shared}, pads);
  const ir::ValueId joined =
      n.op("Concat", "cat", {left, right}, attrs_of({{"axis", Attribute::of_int(-3)}}));
  n.b.output(n.conv("fuse", joined, 8, 2, 1));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 16), 3);
  EXPECT_EQ(nodes_of(g, "Concat")[0]->attrs.get_int("axis"), 3);
  const auto convs = nodes_of(g, "Conv");
  EXPECT_EQ(convs[0]->inputs[1], convs[1]->inputs[1]) << "one permuted copy of a shared weight";
}

TEST(PassesLayoutNhwc, AsymmetricPaddingPadJoinsTheRegion) {
  Net n(9);
  const ir::ValueId x = n.input("x", {1, 4, 8, 8});
  const ir::ValueId a = n.conv("a", x, 4, 4, 3);
  const ir::ValueId b = n.op("Conv", "b", {a, n.weight("b.w", {4, 4, 2, 2})},
                             attrs_of({{"auto_pad", Attribute::of_string("SAME_UPPER")},
                                       {"strides", Attribute::of_ints({1, 1})}}));
  n.b.output(n.conv("c", b, 4, 4, 3));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 17), 3);
  const auto pads = nodes_of(g, "Pad");
  ASSERT_EQ(pads.size(), 1u);
  EXPECT_EQ(g.value(pads[0]->outputs[0]).shape, (Shape{1, 9, 9, 4}));
  EXPECT_EQ(nodes_of(g, "Transpose").size(), 2u);
}

TEST(PassesLayoutNhwc, Bfloat16RegionMatches) {
  Net n(10);
  const ir::ValueId x = n.input("x", {1, 8, 6, 6});
  const ir::ValueId a = n.op("Relu", "ra", {n.conv("a", x, 8, 8, 3)});
  n.b.output(n.head(n.conv("b", a, 8, 8, 3, 2), 8, 4));
  EXPECT_EQ(convert_and_compare(n.b.graph, 18, DType::kBFloat16), 2);
}

// ConvNeXt's block as exported: channels-last pointwise work, a permute to NCHW, a 7x7 conv, a
// permute back. The lone conv converts (its region costs no transposes: the inserted ones cancel
// the model's own); a depthwise one only where depthwise regions do (include_depthwise), as does
// the last stage's, whose pooled [N, C, 1, 1] output leaves through a Reshape.
ir::ValueId channels_last_block(Net& n, ir::ValueId x, const std::string& name, int64_t group) {
  const ir::ValueId to_nchw = n.op("Transpose", name + ".to_nchw", {x}, attrs_of({{"perm", Attribute::of_ints(kToNchw)}}));
  const ir::ValueId conv = n.conv(name + ".conv", to_nchw, 16, 16, 7, 1, group);
  const ir::ValueId back = n.op("Transpose", name + ".to_nhwc", {conv}, attrs_of({{"perm", Attribute::of_ints(kToNhwc)}}));
  return n.op("Add", name + ".residual", {n.op("Gelu", name + ".act", {back}), x});
}

// Converts with the layout pass, then composes transposes as the CUDA lowering does: none is left.
void expect_permutes_cancel(ir::Graph& g, ir::ValueId x) {
  EXPECT_TRUE(is_nhwc(*nodes_of(g, "Conv")[0]));
  EXPECT_GT(compose_transposes(g), 0u);
  eliminate_dead_code(g);  // the model's permutes, now unread
  EXPECT_TRUE(nodes_of(g, "Transpose").empty()) << "the layout edges cancel the permutes";
  const ir::Node& conv = *nodes_of(g, "Conv")[0];
  EXPECT_EQ(g.value(conv.inputs[0]).name, g.value(x).name + "/float16");
}

TEST(PassesLayoutNhwc, ConvBetweenPermutesConvertsAndTheirTransposesCancel) {
  Net n(21);
  const ir::ValueId x = n.input("x", {2, 9, 9, 16});
  n.b.output(channels_last_block(n, x, "block", 1));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 22), 1);
  expect_permutes_cancel(g, x);
}

TEST(PassesLayoutNhwc, DepthwiseConvBetweenPermutesConvertsWhereDepthwiseRegionsDo) {
  for (const bool include_depthwise : {false, true}) {
    Net n(21);
    const ir::ValueId x = n.input("x", {2, 9, 9, 16});
    n.b.output(channels_last_block(n, x, "block", 16));
    ir::Graph& g = n.b.graph;
    EXPECT_EQ(convert_and_compare(g, 22, DType::kFloat16, include_depthwise), include_depthwise ? 1 : 0);
    if (include_depthwise) expect_permutes_cancel(g, x);
  }
}

TEST(PassesLayoutNhwc, PooledOutputLeavesTheRegionForFree) {
  Net n(23);
  const ir::ValueId x = n.input("x", {2, 9, 9, 16});
  const ir::ValueId to_nchw = n.op("Transpose", "to_nchw", {x}, attrs_of({{"perm", Attribute::of_ints(kToNchw)}}));
  const ir::ValueId dw = n.conv("dw", to_nchw, 16, 16, 7, 1, 16);
  n.b.output(n.head(dw, 16, 4));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 24, DType::kFloat16, /*include_depthwise=*/true), 1);
  EXPECT_TRUE(is_nhwc(*nodes_of(g, "GlobalAveragePool")[0]));
}

TEST(PassesLayoutNhwc, LoneConvWithAnNchwNeighbourStaysNchw) {
  Net n(25);
  const ir::ValueId x = n.input("x", {2, 9, 9, 16});
  const ir::ValueId to_nchw = n.op("Transpose", "to_nchw", {x}, attrs_of({{"perm", Attribute::of_ints(kToNchw)}}));
  const ir::ValueId conv = n.conv("conv", to_nchw, 16, 16, 7);
  // Read in NCHW by a Reshape that is no layout edge: converting would add a transpose.
  n.b.output(n.op("Reshape", "flat", {conv, n.b.constant("shape", make_tensor_i64({2}, {2, -1}))}));
  ir::Graph& g = n.b.graph;
  EXPECT_EQ(convert_and_compare(g, 26, DType::kFloat16, /*include_depthwise=*/true), 0);
  EXPECT_FALSE(is_nhwc(*nodes_of(g, "Conv")[0]));
}

}  // namespace
}  // namespace kiln::passes
