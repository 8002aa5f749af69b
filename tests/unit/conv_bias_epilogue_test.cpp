// The conv bias/residual epilogue pass (passes/conv_bias_epilogue.hpp): which Convs give their bias
// and residual to Adds, the shapes of the broadcast bias per layout, and that rewritten graphs
// compute what they computed (evaluated node by node on the CPU kernels).
#include "passes/conv_bias_epilogue.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::evaluate;
using testing::expect_close;
using testing::GraphBuilder;
using testing::live_nodes;
using testing::live_op_types;
using testing::random_inputs;
using testing::random_tensor_f32;

constexpr int64_t kIn = 4, kOut = 6, kSize = 5;

struct Spec {
  bool bias = true;
  bool bias_is_input = false;  // a bias that is not a constant
  bool residual = false;
  std::string activation;       // kiln_activation
  int64_t group = 1;
  std::string readers = "silu";  // "silu" (Sigmoid and Mul), "conv", "output", "relu_and_conv"
};

// x [1, kIn, kSize, kSize] -> Conv (3x3, pad 1) -> readers.
GraphBuilder conv_graph(const Spec& spec) {
  GraphBuilder b;
  std::mt19937 rng(5);
  const ir::ValueId x = b.input("x", {1, kIn, kSize, kSize});
  const int64_t out = spec.group == kIn ? kIn : kOut;
  std::vector<ir::ValueId> inputs{x, b.constant("w", random_tensor_f32({out, kIn / spec.group, 3, 3}, rng))};
  if (spec.bias || spec.residual) {
    inputs.push_back(!spec.bias             ? ir::kNoValue
                     : spec.bias_is_input ? b.input("b", {out})
                                          : b.constant("b", random_tensor_f32({out}, rng)));
  }
  if (spec.residual) inputs.push_back(b.input("r", {1, out, kSize, kSize}));
  AttributeMap attrs;
  attrs.set("kernel_shape", Attribute::of_ints({3, 3}));
  attrs.set("pads", Attribute::of_ints({1, 1, 1, 1}));
  if (spec.group != 1) attrs.set("group", Attribute::of_int(spec.group));
  if (!spec.activation.empty()) attrs.set("kiln_activation", Attribute::of_string(spec.activation));
  const ir::ValueId y = b.node("Conv", "conv", inputs, attrs);
  if (spec.readers == "silu") {
    b.output(b.node("Mul", "silu", {y, b.node("Sigmoid", "gate", {y})}));
  } else if (spec.readers == "output") {
    b.output(y);
  } else {
    std::vector<ir::ValueId> next{y, b.constant("w2", random_tensor_f32({2, out, 1, 1}, rng))};
    AttributeMap one;
    one.set("kernel_shape", Attribute::of_ints({1, 1}));
    b.output(b.node("Conv", "next", next, one));
    if (spec.readers == "relu_and_conv") b.output(b.node("Relu", "relu", {y}));
  }
  infer_shapes(b.graph);
  return b;
}

// Runs the pass; checks the graph still evaluates as before. Returns the pass's count.
size_t rewrite_and_compare(GraphBuilder& b) {
  const auto inputs = random_inputs(b.graph, 11);
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  const size_t rewritten = move_conv_bias_into_pointwise_readers(b.graph);
  b.graph.verify();
  const std::vector<HostTensor> after = evaluate(b.graph, inputs);
  EXPECT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) expect_close(after[i], before[i], 1e-5f);
  return rewritten;
}

const ir::Node& only(const ir::Graph& graph, const char* op) {
  const auto nodes = live_nodes(graph, op);
  EXPECT_EQ(nodes.size(), 1u) << op;
  return *nodes.at(0);
}

TEST(ConvBiasEpilogue, BiasBeforeSiluBecomesAnAddOfAChannelConstant) {
  GraphBuilder b = conv_graph({});
  const ir::ValueId y = only(b.graph, "Conv").outputs[0];
  EXPECT_EQ(rewrite_and_compare(b), 1u);
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Conv", "Add", "Sigmoid", "Mul"}));
  const ir::Node& conv = only(b.graph, "Conv");
  EXPECT_EQ(conv.inputs.size(), 2u);
  const ir::Node& add = only(b.graph, "Add");
  EXPECT_EQ(add.inputs[0], conv.outputs[0]);
  EXPECT_EQ(add.outputs[0], y);  // the readers still read the same value
  ASSERT_TRUE(b.graph.is_constant(add.inputs[1]));
  EXPECT_EQ(b.graph.value(add.inputs[1]).shape, (Shape{kOut, 1, 1}));
}

TEST(ConvBiasEpilogue, ResidualWithoutActivationBecomesAddsWhateverReadsTheOutput) {
  Spec spec;
  spec.residual = true;
  spec.readers = "conv";
  GraphBuilder b = conv_graph(spec);
  EXPECT_EQ(rewrite_and_compare(b), 1u);
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Conv", "Add", "Add", "Conv"}));
  const auto adds = live_nodes(b.graph, "Add");
  EXPECT_TRUE(b.graph.is_constant(adds[0]->inputs[1]));  // the bias first
  EXPECT_EQ(b.graph.value(adds[1]->inputs[1]).name, "r");

  spec.bias = false;  // a residual alone
  GraphBuilder no_bias = conv_graph(spec);
  EXPECT_EQ(rewrite_and_compare(no_bias), 1u);
  EXPECT_EQ(live_op_types(no_bias.graph), (std::vector<std::string>{"Conv", "Add", "Conv"}));
  EXPECT_EQ(no_bias.graph.nodes[static_cast<size_t>(testing::find_node(no_bias.graph, "conv"))].inputs.size(), 2u);
}

TEST(ConvBiasEpilogue, NhwcConvsGetABiasAlongTheLastAxis) {
  GraphBuilder b;
  std::mt19937 rng(3);
  const ir::ValueId x = b.input("x", {1, kSize, kSize, kIn});
  AttributeMap attrs;
  attrs.set("kernel_shape", Attribute::of_ints({3, 3}));
  attrs.set("pads", Attribute::of_ints({1, 1, 1, 1}));
  attrs.set("kiln_layout", Attribute::of_string("NHWC"));
  const ir::ValueId y = b.node("Conv", "conv", {x, b.constant("w", random_tensor_f32({kOut, 3, 3, kIn}, rng)),
                                                b.constant("b", random_tensor_f32({kOut}, rng))},
                               attrs);
  b.output(b.node("Relu", "relu", {y}));
  b.graph.value(y).shape = {1, kSize, kSize, kOut};  // as the layout pass leaves it
  b.graph.value(y).dtype = DType::kFloat32;
  EXPECT_EQ(move_conv_bias_into_pointwise_readers(b.graph), 1u);
  const ir::Node& add = only(b.graph, "Add");
  EXPECT_EQ(b.graph.value(add.inputs[1]).shape, (Shape{kOut}));
}

TEST(ConvBiasEpilogue, LeavesConvsWhoseEpilogueStaysInTheLibraryOrHasNowhereToGo) {
  std::vector<Spec> kept(6);
  kept[0].activation = "Relu";      // cuDNN's fused call adds bias and residual
  kept[1].group = kIn;              // depthwise: kiln's kernel adds them
  kept[2].readers = "conv";         // the bias would be a kernel of its own
  kept[3].readers = "output";       // nothing to join
  kept[4].readers = "relu_and_conv";  // one reader that no group takes
  kept[5].bias_is_input = true;     // not a constant
  for (size_t i = 0; i < kept.size(); ++i) {
    SCOPED_TRACE(i);
    GraphBuilder b = conv_graph(kept[i]);
    const std::vector<std::string> ops = live_op_types(b.graph);
    EXPECT_EQ(move_conv_bias_into_pointwise_readers(b.graph), 0u);
    EXPECT_EQ(live_op_types(b.graph), ops);
  }
}

}  // namespace
}  // namespace kiln::passes
