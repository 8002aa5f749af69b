// FusedElementwise: program validation, the CPU kernel, and the elementwise fusion pass, whose
// rewritten graphs must compute what the original did (evaluated node by node on the CPU kernels).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/half.hpp"
#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "ops/fused_program.hpp"
#include "passes/elementwise_fusion.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using ops::FusedOpcode;
using testing::attrs_of;
using testing::evaluate;
using testing::expect_close;
using testing::random_inputs;
using testing::to_half;
using testing::GraphBuilder;
using testing::live_nodes;
using testing::make_tensor_f32;
using testing::random_tensor_f32;

int64_t op(FusedOpcode opcode) {
  return static_cast<int64_t>(opcode);
}

HostTensor scalar_f32(float v, Shape shape = {}) {
  return make_tensor_f32(std::move(shape), {v});
}

// Runs the pass and checks every graph output against the unfused graph.
int fuse_and_compare(GraphBuilder& b, uint32_t seed, float relative = 1e-6f) {
  const auto inputs = random_inputs(b.graph, seed);
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  const int fused = fuse_elementwise_chains(b.graph);
  b.graph.verify();
  const std::vector<HostTensor> after = evaluate(b.graph, inputs);
  EXPECT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size() && i < after.size(); ++i)
    expect_close(after[i], before[i], relative);
  return fused;
}

// x -> Div(sqrt2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5): GELU as exported by torch.
ir::ValueId gelu_chain(GraphBuilder& b, ir::ValueId x, DType dtype, const std::string& prefix) {
  auto constant = [&](const std::string& name, float v) {
    HostTensor t = scalar_f32(v);
    return b.constant(prefix + name, dtype == DType::kFloat16 ? to_half(t) : t);
  };
  const ir::ValueId d = b.node("Div", prefix + "div", {x, constant("sqrt2", 1.4142135f)});
  const ir::ValueId e = b.node("Erf", prefix + "erf", {d});
  const ir::ValueId a = b.node("Add", prefix + "add", {e, constant("one", 1.0f)});
  const ir::ValueId m = b.node("Mul", prefix + "mul", {x, a});
  return b.node("Mul", prefix + "half", {m, constant("half", 0.5f)});
}

// ---- program parsing --------------------------------------------------------------------------

void expect_parse_error(const std::vector<int64_t>& program, const std::vector<float>& constants,
                        int num_inputs, const std::string& fragment) {
  try {
    ops::parse_fused_program("node 'f' (FusedElementwise)", program, constants, num_inputs);
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("node 'f'"), std::string::npos) << e.what();
  }
}

TEST(FusionElementwiseProgram, RejectsMalformedPrograms) {
  const int64_t add = op(FusedOpcode::kAdd);
  expect_parse_error({}, {}, 1, "multiple of 4");
  expect_parse_error({add, 1, 0}, {}, 1, "multiple of 4");
  expect_parse_error({add, 1, 0, 0}, {}, 0, "1..8 inputs");
  expect_parse_error({add, 9, 0, 0}, {}, 9, "1..8 inputs");
  expect_parse_error({99, 1, 0, 0}, {}, 1, "unknown opcode 99");
  expect_parse_error({20, 1, 0, 0}, {}, 1, "unknown opcode 20");
  expect_parse_error({-1, 1, 0, 0}, {}, 1, "unknown opcode -1");
  expect_parse_error({add, 32, 0, 0}, {}, 1, "register 32");
  expect_parse_error({add, -1, 0, 0}, {}, 1, "register -1");
  expect_parse_error({add, 1, 0, 2}, {}, 2, "read before it is written");
  expect_parse_error({op(FusedOpcode::kRelu), 1, 5, 0}, {}, 1, "read before it is written");
  expect_parse_error({op(FusedOpcode::kLoadConstant), 1, 1, 0}, {2.0f}, 1, "constant index 1");
  expect_parse_error({op(FusedOpcode::kHardSigmoid), 1, 0, 0}, {0.2f}, 1, "constant index 0");
  expect_parse_error({op(FusedOpcode::kLeakyRelu), 1, 0, -1}, {0.1f}, 1, "constant index -1");
  std::vector<int64_t> too_long;
  for (int i = 0; i < 65; ++i) too_long.insert(too_long.end(), {add, 0, 0, 0});
  expect_parse_error(too_long, {}, 1, "65 instructions");
}

TEST(FusionElementwiseProgram, DecodesRegistersAndConstants) {
  const ops::FusedProgram p =
      ops::parse_fused_program("f",
                               {op(FusedOpcode::kLoadConstant), 5, 1, 0, op(FusedOpcode::kMul), 2,
                                0, 5, op(FusedOpcode::kHardSigmoid), 3, 2, 0},
                               {0.3f, 0.7f}, 2);
  EXPECT_EQ(p.num_instructions, 3);
  EXPECT_EQ(p.num_registers, 6);
  EXPECT_EQ(p.output_register, 3);
  EXPECT_EQ(p.code[0].p0, 0.7f);
  EXPECT_EQ(p.code[1].b, 5);
  EXPECT_EQ(p.code[2].p0, 0.3f);
  EXPECT_EQ(p.code[2].p1, 0.7f);
}

TEST(FusionElementwiseKernel, BroadcastsInputsAndRunsProgram) {
  // out = relu(x * s + bias) with x [2, 3], bias [3], s a scalar input [1].
  const HostTensor x = make_tensor_f32({2, 3}, {1, -2, 3, -4, 5, -6});
  const HostTensor bias = make_tensor_f32({3}, {0.5f, 10.0f, -1.0f});
  const HostTensor s = make_tensor_f32({1}, {2.0f});
  AttributeMap attrs;
  attrs.set("program", Attribute::of_ints({op(FusedOpcode::kMul), 3, 0, 2, op(FusedOpcode::kAdd), 3,
                                           3, 1, op(FusedOpcode::kRelu), 4, 3, 0}));
  const std::vector<const HostTensor*> args = {&x, &bias, &s};
  const std::vector<HostTensor> out = cpu::run_node_on_cpu("f", "FusedElementwise", attrs, args, 1);
  ASSERT_EQ(out[0].shape, (Shape{2, 3}));
  const std::vector<float> want = {2.5f, 6.0f, 5.0f, 0.0f, 20.0f, 0.0f};
  for (int i = 0; i < 6; ++i)
    EXPECT_FLOAT_EQ(out[0].data<float>()[i], want[static_cast<size_t>(i)]) << i;
}

TEST(FusionElementwiseKernel, RejectsMixedDtypesAndBadPrograms) {
  const HostTensor x = make_tensor_f32({2}, {1, 2});
  const HostTensor h = to_half(x);
  AttributeMap attrs;
  attrs.set("program", Attribute::of_ints({op(FusedOpcode::kAdd), 2, 0, 1}));
  const std::vector<const HostTensor*> mixed = {&x, &h};
  EXPECT_THROW(cpu::run_node_on_cpu("f", "FusedElementwise", attrs, mixed, 1), Error);
  AttributeMap bad;
  bad.set("program", Attribute::of_ints({op(FusedOpcode::kAdd), 2, 0, 7}));
  const std::vector<const HostTensor*> two = {&x, &x};
  EXPECT_THROW(cpu::run_node_on_cpu("f", "FusedElementwise", bad, two, 1), Error);
}

// ---- the pass ---------------------------------------------------------------------------------

TEST(FusionElementwisePass, GeluDecompositionBecomesOneNode) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3, 37});
  b.output(gelu_chain(b, x, DType::kFloat32, "g_"));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, 1), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0]->op_type, "FusedElementwise");
  EXPECT_EQ(live[0]->name, "g_half");
  EXPECT_EQ(live[0]->inputs, std::vector<ir::ValueId>{x});  // constants became LOAD_CONSTANTs
  EXPECT_EQ(live[0]->attrs.get_floats("constants").size(), 3u);
  EXPECT_EQ(live[0]->attrs.get_ints("program").size(), 8u * 4u);  // 5 ops + 3 constant loads
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).name, "g_half");
}

TEST(FusionElementwisePass, BiasReluResidualWithBroadcastBias) {
  std::mt19937 rng(3);
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4, 5, 6});
  const ir::ValueId residual = b.input("residual", {4, 5, 6});
  const ir::ValueId bias = b.constant("bias", random_tensor_f32({6}, rng));
  const ir::ValueId biased = b.node("Add", "bias_add", {x, bias});
  const ir::ValueId relu = b.node("Relu", "relu", {biased});
  b.output(b.node("Add", "residual_add", {relu, residual}));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, 2), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0]->inputs, (std::vector<ir::ValueId>{x, bias, residual}));
}

TEST(FusionElementwisePass, ScaleAndMaskBeforeSoftmax) {
  GraphBuilder b;
  const ir::ValueId scores = b.input("scores", {2, 3, 5, 5});
  const ir::ValueId mask = b.input("mask", {2, 1, 1, 5});
  const ir::ValueId scaled =
      b.node("Div", "scale", {scores, b.constant("d", scalar_f32(8.0f, {1}))});
  const ir::ValueId masked = b.node("Add", "mask_add", {scaled, mask});
  b.output(b.node("Softmax", "softmax", {masked}, attrs_of({{"axis", Attribute::of_int(-1)}})));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, 4), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0]->op_type, "FusedElementwise");
  EXPECT_EQ(live[0]->inputs, (std::vector<ir::ValueId>{scores, mask}));
  EXPECT_EQ(live[1]->op_type, "Softmax");
}

TEST(FusionElementwisePass, ValueWithOutsideReaderEndsTheGroup) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {3, 8});
  const ir::ValueId y = b.input("y", {3, 8});
  const ir::ValueId m = b.node("Mul", "mul", {x, y});
  const ir::ValueId t = b.node("Add", "add", {m, b.constant("c", scalar_f32(0.25f))});
  b.output(b.node("Relu", "relu", {t}));
  b.output(b.node("Tanh", "tanh", {t}));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, 5), 1);  // mul + add; relu and tanh each read t
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 3u);
  EXPECT_EQ(live[0]->op_type, "FusedElementwise");
  EXPECT_EQ(live[0]->outputs[0], t);
  EXPECT_EQ(live[1]->op_type, "Relu");
  EXPECT_EQ(live[2]->op_type, "Tanh");
}

TEST(FusionElementwisePass, GraphOutputsStayMaterialised) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {7});
  const ir::ValueId e = b.node("Exp", "exp", {x});
  b.output(e);
  b.output(b.node("Add", "add", {e, b.constant("one", scalar_f32(1.0f))}));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, 6), 0);
  EXPECT_EQ(live_nodes(b.graph).size(), 2u);
}

TEST(FusionElementwisePass, RankDecidingScalarConstantStaysAnInput) {
  // x [3] * c [1, 1] has shape [1, 3]: c cannot become a LOAD_CONSTANT.
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {3});
  const ir::ValueId c = b.constant("c", scalar_f32(3.0f, {1, 1}));
  b.output(b.node("Sigmoid", "sig", {b.node("Mul", "mul", {x, c})}));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, 7), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0]->inputs, (std::vector<ir::ValueId>{x, c}));
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape, (Shape{1, 3}));
}

TEST(FusionElementwisePass, EveryOpcodeMatchesUnfusedKernels) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {5, 41});
  const ir::ValueId y = b.input("y", {41});
  const ir::ValueId z = b.input("z", {5, 1});
  auto un = [&](const std::string& op_type, ir::ValueId in, AttributeMap attrs = {}) {
    return b.node(op_type, op_type + std::to_string(in), {in}, std::move(attrs));
  };
  auto bin = [&](const std::string& op_type, ir::ValueId l, ir::ValueId r) {
    return b.node(op_type, op_type + std::to_string(l) + "_" + std::to_string(r), {l, r});
  };
  ir::ValueId v = bin("Add", x, y);
  v = un("Relu", bin("Sub", v, z));
  const ir::ValueId positive = bin("Add", un("Abs", x), b.constant("one", scalar_f32(1.0f)));
  v = bin("Mul", v, un("Log", positive));
  v = bin("Add", v, un("Sqrt", positive));
  v = bin("Div", v, un("Reciprocal", positive));
  v = bin("Pow", un("Sigmoid", v), b.constant("e", scalar_f32(1.5f)));
  v = bin("Max", un("Tanh", v), un("Erf", y));
  v = b.node("Min", "min3", {v, un("Neg", z), un("Exp", x)});
  v = un("LeakyRelu", v, attrs_of({{"alpha", Attribute::of_float(0.3f)}}));
  v = un("HardSigmoid", v,
         attrs_of({{"alpha", Attribute::of_float(0.4f)}, {"beta", Attribute::of_float(0.45f)}}));
  v = un("HardSwish", bin("Add", v, x));
  v = un("Gelu", v);
  v = un("Gelu", v, attrs_of({{"approximate", Attribute::of_string("tanh")}}));
  b.output(v);
  infer_shapes(b.graph);
  const size_t nodes_before = live_nodes(b.graph).size();
  EXPECT_EQ(fuse_and_compare(b, 8), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 1u) << "of " << nodes_before;
  EXPECT_EQ(live[0]->inputs, (std::vector<ir::ValueId>{x, y, z}));
}

TEST(FusionElementwisePass, MoreThanEightInputsSplitsIntoGroups) {
  GraphBuilder b;
  ir::ValueId v = b.input("in0", {2, 9});
  for (int i = 1; i < 12; ++i)
    v = b.node("Add", "add" + std::to_string(i), {v, b.input("in" + std::to_string(i), {2, 9})});
  b.output(v);
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, 9), 2);
  for (const ir::Node* node : live_nodes(b.graph)) {
    EXPECT_EQ(node->op_type, "FusedElementwise");
    EXPECT_LE(node->inputs.size(), 8u);
  }
}

TEST(FusionElementwisePass, Float16ChainComputesInFloat32) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {3, 50}, DType::kFloat16);
  const ir::ValueId bias = b.input("bias", {50}, DType::kFloat16);
  b.output(gelu_chain(b, b.node("Add", "bias_add", {x, bias}), DType::kFloat16, "g_"));
  infer_shapes(b.graph);
  // The unfused graph rounds every intermediate to float16; the fused one rounds once.
  EXPECT_EQ(fuse_and_compare(b, 10, 4e-3f), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(b.graph.value(live[0]->outputs[0]).dtype, DType::kFloat16);
}

TEST(FusionElementwisePass, MixedDtypesAreNotFused) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4});
  const ir::ValueId e = b.constant("e", testing::make_tensor_i64({}, {2}));
  b.output(b.node("Relu", "relu", {b.node("Pow", "pow", {x, e})}));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, 11), 0);
}

}  // namespace
}  // namespace kiln::passes
