// The pass manager: passes run in order, the graph is cleaned, re-inferred and verified after every
// pass that changed it, and a pass that leaves a broken graph is named in the error.
#include <gtest/gtest.h>

#include "graph_test_builder.hpp"
#include "passes/pass_manager.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::GraphBuilder;
using testing::live_op_types;

TEST(PassManager, RunsPassesInOrderAndReinfersAfterChanges) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3});
  const ir::ValueId r = b.node("Relu", "relu", {x});
  b.node("Neg", "dead", {x});  // nothing reads it: dropped after the first changing pass
  b.output(r);
  infer_shapes(b.graph);
  std::vector<std::string> order;
  PassManager manager;
  manager.add("rename", [&](ir::Graph& g) {
    order.push_back("rename");
    // Change the Relu into a Sigmoid and forget the output's dtype: the manager re-infers it.
    g.nodes[0].op_type = "Sigmoid";
    g.value(g.nodes[0].outputs[0]).shape = {};
    return size_t{1};
  });
  manager.add("noop", [&](ir::Graph&) {
    order.push_back("noop");
    return size_t{0};
  });
  manager.run(b.graph);
  EXPECT_EQ(order, (std::vector<std::string>{"rename", "noop"}));
  EXPECT_EQ(live_op_types(b.graph), std::vector<std::string>{"Sigmoid"});
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape, (Shape{2, 3}));
  ASSERT_EQ(manager.records().size(), 2u);
  EXPECT_EQ(manager.records()[0].name, "rename");
  EXPECT_EQ(manager.records()[0].changes, 1u);
  EXPECT_EQ(manager.records()[1].changes, 0u);
}

TEST(PassManager, APassThatBreaksTheGraphIsNamed) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3});
  b.output(b.node("Relu", "relu", {x}));
  infer_shapes(b.graph);
  PassManager manager;
  manager.add("breaks_shapes", [](ir::Graph& g) {
    g.nodes[0].op_type = "MatMul";  // one input: MatMul's inference rejects it
    return size_t{1};
  });
  try {
    manager.run(b.graph);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("after pass 'breaks_shapes'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::passes
