// Variadic Sum/Mean/Min/Max become two-input ops for CUDA: which nodes change, into what, and that
// the rewritten graph computes what the variadic node computed (CPU kernels, the reference).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "passes/shape_inference.hpp"
#include "passes/variadic_expansion.hpp"

namespace kiln::passes {
namespace {

using testing::evaluate;
using testing::expect_close;
using testing::GraphBuilder;
using testing::live_op_types;
using testing::random_inputs;

// `op` over inputs of the given (broadcasting) shapes, in `dtype`.
GraphBuilder variadic_graph(const std::string& op, const std::vector<Shape>& shapes, DType dtype = DType::kFloat32) {
  GraphBuilder b;
  std::vector<ir::ValueId> inputs;
  for (size_t i = 0; i < shapes.size(); ++i) {
    std::string name = "x";
    name += std::to_string(i);
    inputs.push_back(b.input(name, shapes[i], dtype));
  }
  b.output(b.node(op, "combined", inputs));
  infer_shapes(b.graph);
  return b;
}

TEST(VariadicExpansion, ManyInputsBecomeLeftFoldsThatComputeTheSame) {
  const std::vector<Shape> shapes{{2, 1, 5}, {3, 1}, {2, 3, 5}, {5}};
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected{
      {"Sum", {"Add", "Add", "Add"}},
      {"Min", {"Min", "Min", "Min"}},
      {"Max", {"Max", "Max", "Max"}},
      {"Mean", {"Add", "Add", "Add", "Div"}},
  };
  for (const auto& [op, chain] : expected) {
    GraphBuilder b = variadic_graph(op, shapes);
    const auto inputs = random_inputs(b.graph, 3);
    const HostTensor before = evaluate(b.graph, inputs)[0];
    const ir::ValueId output = b.graph.outputs[0];
    ASSERT_EQ(expand_variadic_elementwise(b.graph), 1) << op;
    infer_shapes(b.graph);
    b.graph.verify();
    EXPECT_EQ(live_op_types(b.graph), chain) << op;
    EXPECT_EQ(b.graph.outputs[0], output) << op;
    EXPECT_EQ(b.graph.nodes.back().name, "combined") << op;  // the node writing the output keeps its name
    EXPECT_EQ(b.graph.value(output).shape, (Shape{2, 3, 5})) << op;
    expect_close(evaluate(b.graph, inputs)[0], before, 1e-6f);
  }
}

TEST(VariadicExpansion, SingleInputBecomesIdentity) {
  for (const char* op : {"Sum", "Mean", "Min", "Max"}) {
    GraphBuilder b = variadic_graph(op, {{4, 3}});
    const auto inputs = random_inputs(b.graph, 5);
    const HostTensor before = evaluate(b.graph, inputs)[0];
    ASSERT_EQ(expand_variadic_elementwise(b.graph), 1) << op;
    EXPECT_EQ(live_op_types(b.graph), std::vector<std::string>{"Identity"}) << op;
    expect_close(evaluate(b.graph, inputs)[0], before, 0.0f);
  }
}

TEST(VariadicExpansion, TwoInputsAndOtherOpsStay) {
  GraphBuilder b = variadic_graph("Sum", {{4}, {4}});
  const ir::ValueId sum = b.graph.outputs[0];
  b.output(b.node("Add", "other", {sum, sum}));
  EXPECT_EQ(expand_variadic_elementwise(b.graph), 0);
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Sum", "Add"}));
}

TEST(VariadicExpansion, HalfMeanDividesByAHalfCount) {
  GraphBuilder b = variadic_graph("Mean", {{8}, {8}, {8}}, DType::kFloat16);
  const auto inputs = random_inputs(b.graph, 7);
  const HostTensor before = evaluate(b.graph, inputs)[0];
  ASSERT_EQ(expand_variadic_elementwise(b.graph), 1);
  infer_shapes(b.graph);
  const ir::Node& divide = b.graph.nodes.back();
  ASSERT_EQ(divide.op_type, "Div");
  const ir::Value& count = b.graph.value(divide.inputs[1]);
  ASSERT_TRUE(count.constant);
  EXPECT_EQ(count.dtype, DType::kFloat16);
  EXPECT_EQ(testing::element(*count.constant, 0), 3.0f);
  // Two fp16 roundings of the partial sums instead of one float accumulation.
  expect_close(evaluate(b.graph, inputs)[0], before, 4e-3f);
}

TEST(VariadicExpansion, NaNPropagatesThroughMinAndMaxChains) {
  for (const char* op : {"Min", "Max"}) {
    GraphBuilder b = variadic_graph(op, {{3}, {3}, {3}});
    auto inputs = random_inputs(b.graph, 11);
    inputs.at("x1").data<float>()[1] = std::numeric_limits<float>::quiet_NaN();
    const HostTensor before = evaluate(b.graph, inputs)[0];
    ASSERT_TRUE(std::isnan(before.data<float>()[1]));
    ASSERT_EQ(expand_variadic_elementwise(b.graph), 1);
    expect_close(evaluate(b.graph, inputs)[0], before, 0.0f);
  }
}

}  // namespace
}  // namespace kiln::passes
