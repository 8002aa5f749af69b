// Flattener::inline_subgraph, on decoded proto structs: a body's values get fresh names, its
// inputs and outer-scope reads bind to the caller's names, nested bodies capture through it.
#include <gtest/gtest.h>

#include <memory>

#include "base/error.hpp"
#include "frontend/onnx/build_time_control_flow.hpp"
#include "frontend/onnx/function_inliner.hpp"

namespace kiln::onnx {
namespace {

proto::ValueInfo info(const std::string& name) {
  proto::ValueInfo v;
  v.name = name;
  return v;
}

proto::Node node(const std::string& op, std::vector<std::string> inputs, std::vector<std::string> outputs) {
  proto::Node n;
  n.op_type = op;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  return n;
}

proto::Attribute graph_attribute(const std::string& name, proto::Graph g) {
  proto::Attribute a;
  a.name = name;
  a.type = proto::Attribute::kGraph;
  a.g = std::make_shared<const proto::Graph>(std::move(g));
  a.graph_count = 1;
  return a;
}

// main: outer = Relu(x); y = Loop(M, c, x) with body (i, cond, acc) -> (cond, acc + outer), the
// body holding an If whose branch reads `outer` and the body's `acc`.
proto::Model loop_model() {
  proto::Graph branch;
  branch.nodes = {node("Mul", {"acc", "outer"}, {"prod"})};
  branch.outputs = {info("prod")};
  proto::Graph body;
  body.inputs = {info("i"), info("cond"), info("acc")};
  body.nodes = {node("Add", {"acc", "outer"}, {"sum"}), node("If", {"cond"}, {"picked"})};
  body.nodes[1].attributes = {graph_attribute("then_branch", branch), graph_attribute("else_branch", branch)};
  body.outputs = {info("cond"), info("sum"), info("picked")};
  proto::Model m;
  m.opset_imports = {{"", 21}};
  m.has_graph = true;
  m.graph.inputs = {info("x"), info("M"), info("c")};
  m.graph.nodes = {node("Relu", {"x"}, {"outer"}), node("Loop", {"M", "c", "x"}, {"y", "scan"})};
  m.graph.nodes[1].name = "loop";
  m.graph.nodes[1].attributes = {graph_attribute("body", body)};
  m.graph.outputs = {info("y")};
  return m;
}

TEST(OnnxSubgraphInlining, BodyNamesAreFreshAndOuterReadsAreCaptured) {
  const proto::Model m = loop_model();
  ImportOptions options;
  Flattener flattener(m, options, nullptr);
  const std::vector<FlatNode> main = flattener.flatten_main_graph();
  ASSERT_EQ(main.size(), 2u);
  const FlatNode& loop = main[1];
  // The body reads `outer` itself and through its If; it is captured once, under its own name.
  ASSERT_EQ(loop.captures.size(), 1u);
  EXPECT_EQ(loop.captures[0].first, "outer");
  EXPECT_EQ(loop.captures[0].second, "outer");
  ASSERT_TRUE(loop.scope_opsets);
  EXPECT_EQ(loop.scope_opsets->at(""), 21);

  const proto::Graph& body = *m.graph.nodes[1].attributes[0].g;
  const InlinedSubgraph first = flattener.inline_subgraph(body, loop, {"iter0", "c", "x"}, "loop/0/");
  ASSERT_EQ(first.nodes.size(), 2u);
  EXPECT_EQ(first.nodes[0].name, "loop/0/Add_0");
  EXPECT_EQ(first.nodes[0].inputs, (std::vector<std::string>{"x", "outer"}));
  EXPECT_EQ(first.nodes[0].outputs, (std::vector<std::string>{"loop/0/sum"}));
  // Body outputs: the bound condition, then the fresh names.
  EXPECT_EQ(first.outputs, (std::vector<std::string>{"c", "loop/0/sum", "loop/0/picked"}));
  // The nested If captures the body's acc (bound to x) and the main graph's outer.
  const FlatNode& inner = first.nodes[1];
  ASSERT_EQ(inner.captures.size(), 2u);
  EXPECT_EQ(inner.captures[0], (std::pair<std::string, std::string>{"acc", "x"}));
  EXPECT_EQ(inner.captures[1], (std::pair<std::string, std::string>{"outer", "outer"}));

  // A second iteration never reuses the first one's names.
  const InlinedSubgraph second =
      flattener.inline_subgraph(body, loop, {"iter1", first.outputs[0], first.outputs[1]}, "loop/0/");
  EXPECT_EQ(second.nodes[0].inputs, (std::vector<std::string>{"loop/0/sum", "outer"}));
  EXPECT_EQ(second.nodes[0].outputs, (std::vector<std::string>{"loop/0/sum_1"}));
}

TEST(OnnxSubgraphInlining, WrongInputCountIsCorruptNamingTheNode) {
  const proto::Model m = loop_model();
  ImportOptions options;
  options.source = "m.onnx";
  Flattener flattener(m, options, nullptr);
  const std::vector<FlatNode> main = flattener.flatten_main_graph();
  const proto::Graph& body = *m.graph.nodes[1].attributes[0].g;
  try {
    flattener.inline_subgraph(body, main[1], {"only_one"}, "loop/0/");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
    EXPECT_NE(std::string(e.what()).find("node 'loop' (op 'Loop')"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("declares 3 inputs; the op binds 1"), std::string::npos) << e.what();
  }
}

TEST(OnnxSubgraphInlining, ResolverHandlesOnlyDefaultDomainControlFlowAndSequenceOps) {
  EXPECT_TRUE(BuildTimeControlFlow::handles("If", ""));
  EXPECT_TRUE(BuildTimeControlFlow::handles("Scan", ""));
  EXPECT_TRUE(BuildTimeControlFlow::handles("SplitToSequence", ""));
  EXPECT_TRUE(BuildTimeControlFlow::handles("OptionalHasElement", ""));
  EXPECT_FALSE(BuildTimeControlFlow::handles("If", "com.example"));
  EXPECT_FALSE(BuildTimeControlFlow::handles("Relu", ""));
}

}  // namespace
}  // namespace kiln::onnx
