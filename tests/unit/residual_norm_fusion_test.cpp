// The residual fold into LayerNormalization: which Adds fold, and that the folded graph computes
// what Add + LayerNormalization computed (CPU kernels, the reference).
#include <gtest/gtest.h>

#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "passes/residual_norm_fusion.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::evaluate;
using testing::expect_close;
using testing::GraphBuilder;
using testing::random_inputs;
using testing::random_tensor_f32;

struct Residual {
  GraphBuilder b;
  ir::ValueId sum = ir::kNoValue;
};

Residual residual_layer_norm(Shape residual_shape, bool with_bias) {
  Residual r;
  std::mt19937 rng(5);
  const ir::ValueId x = r.b.input("x", {2, 7, 48});
  const ir::ValueId y = r.b.input("y", std::move(residual_shape));
  r.sum = r.b.node("Add", "sum", {x, y});
  std::vector<ir::ValueId> inputs{r.sum, r.b.constant("scale", random_tensor_f32({48}, rng, 0.5f, 1.5f))};
  if (with_bias) inputs.push_back(r.b.constant("bias", random_tensor_f32({48}, rng)));
  r.b.output(r.b.node("LayerNormalization", "norm", inputs, attrs_of({{"epsilon", Attribute::of_float(1e-5f)}})));
  infer_shapes(r.b.graph);
  return r;
}

TEST(ResidualNormFusion, AddFoldsIntoLayerNormAndComputesTheSame) {
  for (bool with_bias : {true, false}) {
    Residual r = residual_layer_norm({2, 7, 48}, with_bias);
    const auto inputs = random_inputs(r.b.graph, 9);
    const std::vector<HostTensor> before = evaluate(r.b.graph, inputs);
    ASSERT_EQ(fuse_residual_into_layer_norm(r.b.graph), 1);
    r.b.graph.verify();
    ASSERT_EQ(r.b.graph.nodes.size(), 1u);
    const ir::Node& norm = r.b.graph.nodes[0];
    EXPECT_EQ(norm.op_type, "LayerNormalization");
    ASSERT_EQ(norm.inputs.size(), 4u);
    EXPECT_EQ(norm.inputs[2] == ir::kNoValue, !with_bias);
    expect_close(evaluate(r.b.graph, inputs)[0], before[0], 1e-6f);
  }
}

TEST(ResidualNormFusion, BroadcastingOrSharedSumsStay) {
  Residual broadcast = residual_layer_norm({48}, true);
  EXPECT_EQ(fuse_residual_into_layer_norm(broadcast.b.graph), 0);
  Residual shared = residual_layer_norm({2, 7, 48}, true);
  shared.b.output(shared.sum);  // the sum is needed beyond the normalization
  EXPECT_EQ(fuse_residual_into_layer_norm(shared.b.graph), 0);
}

TEST(ResidualNormFusion, MismatchedResidualIsAnErrorNamingIt) {
  std::mt19937 rng(2);
  const HostTensor x = random_tensor_f32({2, 8}, rng);
  const HostTensor scale = random_tensor_f32({8}, rng);
  const HostTensor residual = random_tensor_f32({1, 8}, rng);
  const std::vector<const HostTensor*> inputs{&x, &scale, nullptr, &residual};
  try {
    cpu::run_node_on_cpu("norm", "LayerNormalization", AttributeMap{}, inputs, 1);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("input 3 (residual)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("node 'norm'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::passes
