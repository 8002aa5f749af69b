// Conv epilogue fusion and precision lowering: the rewritten graph computes what the original did
// (evaluated node by node on the CPU reference kernels).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/half.hpp"
#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "passes/conv_fusion.hpp"
#include "passes/conv_padding.hpp"
#include "passes/matmul_fusion.hpp"
#include "passes/precision_lowering.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::element;
using testing::evaluate;
using testing::expect_close_to_scale;
using testing::GraphBuilder;
using testing::random_inputs;
using testing::random_tensor_f32;


// x -> Conv -> Relu -> Conv -> Add(relu1) -> Relu -> y, plus a second output reading relu1.
GraphBuilder residual_block(bool second_output) {
  std::mt19937 rng(5);
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 4, 6, 6});
  const AttributeMap pads = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}});
  const ir::ValueId c1 = b.node("Conv", "conv1",
                                {x, b.constant("w1", random_tensor_f32({4, 4, 3, 3}, rng)),
                                 b.constant("b1", random_tensor_f32({4}, rng))},
                                pads);
  const ir::ValueId r1 = b.node("Relu", "relu1", {c1});
  const ir::ValueId c2 = b.node("Conv", "conv2", {r1, b.constant("w2", random_tensor_f32({4, 4, 3, 3}, rng))}, pads);
  const ir::ValueId sum = b.node("Add", "add", {r1, c2});
  b.output(b.node("Relu", "relu2", {sum}));
  if (second_output) b.output(c2);
  infer_shapes(b.graph);
  return b;
}

TEST(PassesConvFusion, FusesResidualAddAndReluAndMatchesUnfused) {
  GraphBuilder b = residual_block(false);
  const auto inputs = random_inputs(b.graph, 1, -1.0f, 1.0f);
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  EXPECT_EQ(fuse_conv_epilogues(b.graph), 3);  // relu1 into conv1; add and relu2 into conv2
  b.graph.verify();
  int live = 0;
  for (const ir::Node& node : b.graph.nodes) live += !node.removed;
  EXPECT_EQ(live, 2);
  const ir::Node& last = b.graph.nodes.back();
  EXPECT_EQ(last.op_type, "Conv");
  EXPECT_EQ(last.attrs.get_string("kiln_activation"), "Relu");
  ASSERT_EQ(last.inputs.size(), 4u);
  EXPECT_EQ(last.inputs[2], ir::kNoValue);
  expect_close_to_scale(evaluate(b.graph, inputs)[0], before[0], 1e-6f);
}

TEST(PassesConvFusion, KeepsAddWhoseConvOutputHasAnotherReader) {
  GraphBuilder b = residual_block(true);
  const auto inputs = random_inputs(b.graph, 2, -1.0f, 1.0f);
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  EXPECT_EQ(fuse_conv_epilogues(b.graph), 1);  // only relu1 into conv1: conv2's output is an output
  const std::vector<HostTensor> after = evaluate(b.graph, inputs);
  expect_close_to_scale(after[0], before[0], 1e-6f);
  expect_close_to_scale(after[1], before[1], 1e-6f);
}

TEST(PassesPrecisionLowering, Float16GraphKeepsFloat32EdgesAndMatches) {
  for (DType precision : {DType::kFloat16, DType::kBFloat16}) {
    GraphBuilder b = residual_block(true);
    const auto inputs = random_inputs(b.graph, 3, -1.0f, 1.0f);
    const std::vector<HostTensor> before = evaluate(b.graph, inputs);
    lower_precision(b.graph, precision);
    // Edges stay float32, the compute in between is lowered.
    EXPECT_EQ(b.graph.value(b.graph.inputs[0]).dtype, DType::kFloat32);
    for (ir::ValueId out : b.graph.outputs) EXPECT_EQ(b.graph.value(out).dtype, DType::kFloat32);
    EXPECT_EQ(b.graph.value(b.graph.outputs[0]).name, "relu2");
    int casts = 0;
    for (const ir::Node& node : b.graph.nodes) {
      if (node.op_type == "Cast") {
        ++casts;
        continue;
      }
      for (ir::ValueId in : node.inputs) {
        if (in >= 0) {
          EXPECT_EQ(b.graph.value(in).dtype, precision) << node.name;
        }
      }
    }
    EXPECT_EQ(casts, 3);  // one in, two out
    const std::vector<HostTensor> after = evaluate(b.graph, inputs);
    const float tolerance = precision == DType::kFloat16 ? 5e-3f : 4e-2f;
    expect_close_to_scale(after[0], before[0], tolerance);
    expect_close_to_scale(after[1], before[1], tolerance);
  }
}

TEST(PassesPrecisionLowering, ValueInputsStayFloat32) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {1, 2, 3, 3});
  HostTensor scales(DType::kFloat32, {4});
  const float s[4] = {1.0f, 1.0f, 2.0f, 2.0f};
  std::memcpy(scales.bytes.data(), s, sizeof s);
  const ir::ValueId resized = b.node("Resize", "up", {x, ir::kNoValue, b.constant("scales", scales)},
                                     attrs_of({{"mode", Attribute::of_string("nearest")}}));
  b.output(b.node("Relu", "relu", {resized}));
  infer_shapes(b.graph);
  lower_precision(b.graph, DType::kFloat16);
  for (const ir::Node& node : b.graph.nodes) {
    if (node.op_type != "Resize") continue;
    EXPECT_EQ(b.graph.value(node.inputs[0]).dtype, DType::kFloat16);
    EXPECT_EQ(b.graph.value(node.inputs[2]).dtype, DType::kFloat32);
  }
  const auto inputs = random_inputs(b.graph, 4, -1.0f, 1.0f);
  EXPECT_EQ(evaluate(b.graph, inputs)[0].shape, (Shape{1, 2, 6, 6}));
}

TEST(PassesMatMulFusion, BiasAddAndReluMoveIntoTheMatMulAndGemm) {
  std::mt19937 rng(12);
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3, 4});
  const ir::ValueId product = b.node("MatMul", "proj", {x, b.constant("w", random_tensor_f32({4, 5}, rng))});
  const ir::ValueId biased = b.node("Add", "bias", {b.constant("b", random_tensor_f32({1, 1, 5}, rng)), product});
  const ir::ValueId relu = b.node("Relu", "relu", {biased});
  const ir::ValueId flat = b.node("Reshape", "flat", {relu, b.constant("shape", testing::make_tensor_i64({2}, {6, 5}))});
  const ir::ValueId gemm = b.node("Gemm", "fc", {flat, b.constant("w2", random_tensor_f32({5, 3}, rng)),
                                                 b.constant("c2", random_tensor_f32({3}, rng))});
  b.output(b.node("Relu", "relu2", {gemm}));
  infer_shapes(b.graph);
  const auto inputs = random_inputs(b.graph, 8, -1.0f, 1.0f);
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  EXPECT_EQ(fuse_matmul_epilogues(b.graph), 3);
  infer_shapes(b.graph);
  b.graph.verify();
  std::vector<std::string> ops;
  for (const ir::Node& node : b.graph.nodes) ops.push_back(node.op_type);
  EXPECT_EQ(ops, (std::vector<std::string>{"MatMul", "Reshape", "Gemm"}));
  EXPECT_EQ(b.graph.nodes[0].inputs.size(), 3u);
  EXPECT_EQ(b.graph.value(b.graph.nodes[0].inputs[2]).shape, (Shape{5}));
  EXPECT_EQ(b.graph.nodes[2].attrs.get_string("kiln_activation"), "Relu");
  expect_close_to_scale(evaluate(b.graph, inputs)[0], before[0], 1e-6f);
}

TEST(PassesMatMulFusion, LeavesAddsThatBroadcastTheProduct) {
  std::mt19937 rng(13);
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {3, 4});
  const ir::ValueId product = b.node("MatMul", "proj", {x, b.constant("w", random_tensor_f32({4, 5}, rng))});
  b.output(b.node("Add", "bias", {product, b.constant("b", random_tensor_f32({2, 3, 5}, rng))}));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_matmul_epilogues(b.graph), 0);
}

TEST(PassesConvPadding, AsymmetricPadsBecomeAPadNodeAndMatch) {
  struct Case {
    AttributeMap attrs;
    int inserted;
  };
  const std::vector<Case> cases = {
      {attrs_of({{"pads", Attribute::of_ints({0, 2, 1, 1})}}), 1},
      {attrs_of({{"auto_pad", Attribute::of_string("SAME_LOWER")}, {"strides", Attribute::of_ints({2, 2})}}), 1},
      {attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}}), 0},
  };
  for (const Case& c : cases) {
    std::mt19937 rng(9);
    GraphBuilder b;
    const ir::ValueId x = b.input("x", {1, 2, 7, 8});
    b.output(b.node("Conv", "conv", {x, b.constant("w", random_tensor_f32({3, 2, 2, 3}, rng))}, c.attrs));
    infer_shapes(b.graph);
    const auto inputs = random_inputs(b.graph, 6, -1.0f, 1.0f);
    const std::vector<HostTensor> before = evaluate(b.graph, inputs);
    EXPECT_EQ(make_conv_padding_symmetric(b.graph), c.inserted);
    infer_shapes(b.graph);
    for (const ir::Node& node : b.graph.nodes) {
      if (node.op_type != "Conv") continue;
      EXPECT_FALSE(node.attrs.has("auto_pad") && c.inserted);
      const auto pads = node.attrs.get_ints_or("pads", {0, 0, 0, 0});
      EXPECT_EQ(pads[0], pads[2]);
      EXPECT_EQ(pads[1], pads[3]);
    }
    expect_close_to_scale(evaluate(b.graph, inputs)[0], before[0], 1e-6f);
  }
}

}  // namespace
}  // namespace kiln::passes
