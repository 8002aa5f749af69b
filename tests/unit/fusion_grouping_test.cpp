// Fusion grouping (passes/fusion_grouping.hpp), the FusedGroup op and the kernel generator:
// which groups form on typical graph shapes, that a grouped graph computes what the original did
// (the FusedGroup CPU kernel runs the members), how each group is planned, and that every
// generated source compiles with NVRTC for sm_90 (no GPU needed).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "codegen/group_emitter.hpp"
#include "codegen/group_kernels.hpp"
#include "codegen/group_plan.hpp"
#include "codegen/nvrtc_compiler.hpp"
#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "ops/fused_group.hpp"
#include "passes/batch_norm_affine.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/fusion_grouping.hpp"
#include "passes/precision_lowering.hpp"
#include "passes/shape_inference.hpp"
#include "passes/transpose_composition.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::GraphBuilder;
using testing::live_nodes;
using testing::live_op_types;

#ifdef KILN_EXPECT_NVRTC
constexpr bool kExpectNvrtc = true;
#else
constexpr bool kExpectNvrtc = false;
#endif

ir::ValueId scalar(GraphBuilder& b, const std::string& name, float value) {
  return b.constant(name, testing::make_tensor_f32({}, {value}));
}

ir::ValueId axes(GraphBuilder& b, const std::string& name, std::vector<int64_t> values) {
  const auto count = static_cast<int64_t>(values.size());
  return b.constant(name, testing::make_tensor_i64({count}, values));
}

std::map<std::string, HostTensor> random_inputs(const ir::Graph& graph, uint32_t seed) {
  std::mt19937 rng(seed);
  std::map<std::string, HostTensor> inputs;
  for (ir::ValueId in : graph.inputs) {
    inputs[graph.value(in).name] = testing::random_tensor_f32(graph.value(in).shape, rng, -2.0f, 2.0f);
  }
  return inputs;
}

// Groups `b`'s graph, then checks the grouped graph against the original on the CPU reference.
ir::Graph group_and_compare(GraphBuilder& b, FusionReport* report = nullptr) {
  infer_shapes(b.graph);
  const ir::Graph original = b.graph;
  ir::Graph grouped = b.graph;
  form_fusion_groups(grouped, report);
  infer_shapes(grouped);
  grouped.verify();
  const auto inputs = random_inputs(original, 7);
  const std::vector<HostTensor> want = testing::evaluate(original, inputs);
  const std::vector<HostTensor> got = testing::evaluate(grouped, inputs);
  EXPECT_EQ(got.size(), want.size());
  for (size_t o = 0; o < want.size() && o < got.size(); ++o) testing::expect_close(got[o], want[o], 1e-6f);
  return grouped;
}

codegen::GroupPlan plan_of(const ir::Graph& graph, const ir::Node& node) {
  const ops::GroupProgram program = ops::decode_group("test", node.attrs, node.inputs.size(), node.outputs.size());
  codegen::GroupPlanResult result = codegen::plan_group(program, codegen::group_input_infos(graph, node),
                                                        codegen::group_output_infos(graph, node));
  EXPECT_TRUE(result.plan.has_value()) << result.reason;
  return result.plan ? *result.plan : codegen::GroupPlan{};
}

// Every FusedGroup of `graph` emits a module that NVRTC compiles for sm_90.
void expect_groups_compile(const ir::Graph& graph) {
  std::string missing;
  try {
    codegen::nvrtc_version();
  } catch (const Error& e) {
    missing = e.what();
  }
  if (!missing.empty()) {
    if (kExpectNvrtc) FAIL() << "configure found NVRTC, but it fails: " << missing;
    GTEST_SKIP() << missing;
  }
  for (const ir::Node* node : live_nodes(graph, "FusedGroup")) {
    const codegen::GroupKernelSource kernel = codegen::emit_group_kernel(plan_of(graph, *node));
    EXPECT_FALSE(kernel.entries.empty());
    codegen::CompiledModule module;
    ASSERT_NO_THROW(module = codegen::compile_cuda(node->name, kernel.source, 90, kernel.nvrtc_options))
        << kernel.source;
    ASSERT_GE(module.cubin.size(), 4u);
    EXPECT_EQ(module.cubin[1], 'E');
  }
}

AttributeMap keepdims(int64_t keep) { return attrs_of({{"keepdims", Attribute::of_int(keep)}}); }

TEST(FusionGrouping, GeluChainWithBiasIsOnePointwiseGroup) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 8, 64});
  const ir::ValueId bias = b.constant("bias", testing::make_tensor_f32({64}, std::vector<float>(64, 0.25f)));
  const ir::ValueId h = b.node("Add", "bias_add", {x, bias});
  const ir::ValueId d = b.node("Div", "div", {h, scalar(b, "sqrt2", 1.4142135f)});
  const ir::ValueId e = b.node("Erf", "erf", {d});
  const ir::ValueId p = b.node("Add", "plus_one", {e, scalar(b, "one", 1.0f)});
  const ir::ValueId m = b.node("Mul", "mul", {h, p});
  b.output(b.node("Mul", "half", {m, scalar(b, "half_c", 0.5f)}));
  const ir::Graph grouped = group_and_compare(b);
  ASSERT_EQ(live_op_types(grouped), std::vector<std::string>{"FusedGroup"});
  const ir::Node& node = *live_nodes(grouped).front();
  EXPECT_EQ(node.outputs.size(), 1u);
  EXPECT_EQ(node.inputs.size(), 5u);  // x, bias and three literals (passed, read as literals)
  const codegen::GroupPlan plan = plan_of(grouped, node);
  EXPECT_EQ(plan.schedule, codegen::Schedule::kPointwise);
  const codegen::GroupKernelSource kernel = codegen::emit_group_kernel(plan);
  EXPECT_EQ(kernel.vector_width, 4);  // float32: 16-byte accesses
  EXPECT_TRUE(kernel.nvrtc_options.empty());  // fp32 tensors: correctly rounded division
  expect_groups_compile(grouped);
}

TEST(FusionGrouping, ResidualAddJoinsLayerNormAndStaysAnOutput) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 16, 96});
  const ir::ValueId r = b.input("r", {2, 16, 96});
  const ir::ValueId gamma = b.constant("gamma", testing::make_tensor_f32({96}, std::vector<float>(96, 1.5f)));
  const ir::ValueId beta = b.constant("beta", testing::make_tensor_f32({96}, std::vector<float>(96, -0.5f)));
  const ir::ValueId sum = b.node("Add", "residual", {x, r});
  const ir::ValueId norm = b.node("LayerNormalization", "ln", {sum, gamma, beta},
                                  attrs_of({{"axis", Attribute::of_int(-1)}, {"epsilon", Attribute::of_float(1e-5f)}}));
  b.output(norm);
  b.output(b.node("Relu", "next_block", {sum}));
  const ir::Graph grouped = group_and_compare(b);
  const auto groups = live_nodes(grouped, "FusedGroup");
  ASSERT_EQ(groups.size(), 1u);  // Add, LayerNorm and the Relu reading the sum: one kernel
  EXPECT_EQ(groups.front()->outputs.size(), 2u);
  const codegen::GroupPlan plan = plan_of(grouped, *groups.front());
  EXPECT_EQ(plan.schedule, codegen::Schedule::kRow);
  EXPECT_EQ(plan.passes, 2);  // the mean, then the variance of the centred row
  expect_groups_compile(grouped);
}

TEST(FusionGrouping, ScaleMaskAndSoftmaxAreOneRowKernel) {
  GraphBuilder b;
  const ir::ValueId scores = b.input("scores", {2, 4, 16, 16});
  const ir::ValueId mask = b.input("mask", {2, 1, 1, 16});
  const ir::ValueId scaled = b.node("Mul", "scale", {scores, scalar(b, "s", 0.125f)});
  const ir::ValueId masked = b.node("Add", "mask_add", {scaled, mask});
  b.output(b.node("Softmax", "softmax", {masked}, attrs_of({{"axis", Attribute::of_int(-1)}})));
  const ir::Graph grouped = group_and_compare(b);
  ASSERT_EQ(live_op_types(grouped), std::vector<std::string>{"FusedGroup"});
  const codegen::GroupPlan plan = plan_of(grouped, *live_nodes(grouped).front());
  EXPECT_EQ(plan.schedule, codegen::Schedule::kRow);
  EXPECT_EQ(plan.passes, 2);  // the max, then the sum of exponentials
  expect_groups_compile(grouped);
}

TEST(FusionGrouping, DecomposedLayerNormAndRmsNormEachBecomeOneGroup) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4, 10, 32});
  const ir::ValueId last = axes(b, "last", {-1});
  const ir::ValueId mean = b.node("ReduceMean", "mean", {x, last}, keepdims(1));
  const ir::ValueId centered = b.node("Sub", "center", {x, mean});
  const ir::ValueId sq = b.node("Pow", "square", {centered, scalar(b, "two", 2.0f)});
  const ir::ValueId var = b.node("ReduceMean", "var", {sq, last}, keepdims(1));
  const ir::ValueId denom = b.node("Sqrt", "sqrt", {b.node("Add", "eps", {var, scalar(b, "e", 1e-5f)})});
  const ir::ValueId normalized = b.node("Div", "normalize", {centered, denom});
  // RMS norm of the result, as T5 writes it.
  const ir::ValueId ms = b.node("ReduceMean", "ms", {b.node("Mul", "sq2", {normalized, normalized}), last}, keepdims(1));
  const ir::ValueId rs = b.node("Reciprocal", "rs", {b.node("Sqrt", "rsqrt", {b.node("Add", "eps2", {ms, scalar(b, "e2", 1e-6f)})})});
  b.output(b.node("Mul", "rms", {normalized, rs}));
  const ir::Graph grouped = group_and_compare(b);
  ASSERT_EQ(live_op_types(grouped), std::vector<std::string>{"FusedGroup"});
  const codegen::GroupPlan plan = plan_of(grouped, *live_nodes(grouped).front());
  EXPECT_EQ(plan.passes, 3);  // mean, variance, mean square
  expect_groups_compile(grouped);
}

TEST(FusionGrouping, SqueezeExcitationGatesFuseAroundTheConvolutions) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 8, 6, 6});
  const ir::ValueId act = b.node("HardSwish", "act", {x});
  const ir::ValueId pooled = b.node("GlobalAveragePool", "pool", {act});
  std::mt19937 rng(3);
  const ir::ValueId w1 = b.constant("w1", testing::random_tensor_f32({4, 8, 1, 1}, rng));
  const ir::ValueId w2 = b.constant("w2", testing::random_tensor_f32({8, 4, 1, 1}, rng));
  const ir::ValueId squeezed = b.node("Relu", "relu", {b.node("Conv", "fc1", {pooled, w1})});
  const ir::ValueId gate = b.node("HardSigmoid", "gate", {b.node("Conv", "fc2", {squeezed, w2})});
  b.output(b.node("Mul", "excite", {act, gate}));
  const ir::Graph grouped = group_and_compare(b);
  // {act, pool} (act stays an output for the gate), Conv, {relu}, Conv, {gate, excite}.
  EXPECT_EQ(live_op_types(grouped),
            (std::vector<std::string>{"FusedGroup", "Conv", "FusedGroup", "Conv", "FusedGroup"}));
  const auto groups = live_nodes(grouped, "FusedGroup");
  EXPECT_EQ(groups.front()->outputs.size(), 2u);
  EXPECT_EQ(plan_of(grouped, *groups.front()).schedule, codegen::Schedule::kRow);
  expect_groups_compile(grouped);
}

TEST(FusionGrouping, NhwcPoolingIsAColumnReduction) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 5, 5, 24});
  const ir::ValueId pooled =
      b.node("GlobalAveragePool", "pool", {b.node("Sigmoid", "act", {x})}, attrs_of({{"kiln_layout", Attribute::of_string("NHWC")}}));
  b.output(pooled);
  const ir::Graph grouped = group_and_compare(b);
  ASSERT_EQ(live_op_types(grouped), std::vector<std::string>{"FusedGroup"});
  EXPECT_EQ(plan_of(grouped, *live_nodes(grouped).front()).schedule, codegen::Schedule::kColumn);
  expect_groups_compile(grouped);
}

TEST(FusionGrouping, NoCycleThroughAnOutsideNode) {
  // relu -> MatMul -> add, and relu -> add: merging relu into add's group would put the MatMul
  // both after and before the group.
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4, 16});
  std::mt19937 rng(5);
  const ir::ValueId w = b.constant("w", testing::random_tensor_f32({16, 16}, rng));
  const ir::ValueId r = b.node("Relu", "relu", {x});
  const ir::ValueId y = b.node("MatMul", "mm", {r, w});
  b.output(b.node("Add", "add", {r, y}));
  FusionReport report;
  const ir::Graph grouped = group_and_compare(b, &report);
  EXPECT_EQ(live_op_types(grouped), (std::vector<std::string>{"FusedGroup", "MatMul", "FusedGroup"}));
  bool explained = false;
  for (const FusionDecision& d : report.decisions) explained |= d.node == "add" && !d.reason.empty();
  EXPECT_TRUE(explained) << "the report says why add did not take relu";
}

TEST(FusionGrouping, LongColumnReductionsGetEntriesThatSplitTheRows) {
  // An NHWC pool over 56x56 rows of 24 channels: one unit per image, so only the split entries
  // give the GPU enough blocks. Its epilogue (Sigmoid of the mean) runs after the combine.
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 56, 56, 24});
  const ir::ValueId pooled =
      b.node("GlobalAveragePool", "pool", {b.node("Relu", "act", {x})}, attrs_of({{"kiln_layout", Attribute::of_string("NHWC")}}));
  b.output(b.node("Sigmoid", "gate", {pooled}));
  const ir::Graph grouped = group_and_compare(b);
  ASSERT_EQ(live_op_types(grouped), std::vector<std::string>{"FusedGroup"});
  const codegen::GroupPlan plan = plan_of(grouped, *live_nodes(grouped).front());
  ASSERT_EQ(plan.schedule, codegen::Schedule::kColumn);
  const codegen::GroupKernelSource kernel = codegen::emit_group_kernel(plan);
  // The reduced rows of one unit, as static dims (the space may keep H and W apart or merged).
  int64_t rows = 1;
  for (int64_t d : kernel.split_rows) rows *= d;
  EXPECT_EQ(rows, 56 * 56);
  int split_entries = 0;
  for (const codegen::KernelEntry& e : kernel.entries) {
    if (e.name.find("_split") == std::string::npos) {
      EXPECT_EQ(e.split_partials, 0) << e.name;
      continue;
    }
    ++split_entries;
    EXPECT_EQ(e.split_partials, 16) << e.name;  // one reduction x a tile of 16 of the 24 columns
  }
  EXPECT_EQ(split_entries, 2);
  EXPECT_NE(kernel.source.find("atomicAdd(arrived + u, 1u)"), std::string::npos);
  expect_groups_compile(grouped);

  // Short rows, or a reduction feeding space outputs (two passes), get no split entries.
  GraphBuilder small;
  small.output(small.node("GlobalAveragePool", "pool", {small.input("x", {2, 5, 5, 24})},
                          attrs_of({{"kiln_layout", Attribute::of_string("NHWC")}})));
  const ir::Graph short_rows = group_and_compare(small);
  EXPECT_TRUE(codegen::emit_group_kernel(plan_of(short_rows, *live_nodes(short_rows).front())).split_rows.empty());
}

TEST(FusionGrouping, BroadcastValuesAreRecomputedOnlyWhileThatCostsLessThanAKernel) {
  // gate = 20 chained Sigmoids of s on [2, 8, 1, 1], then x * gate: in one pointwise kernel the
  // chain runs once per element of x. Over 64x64 maps that is cheap (merged, and --explain says
  // so); over 1024x1024 maps it is about 2.7e9 extra scalar ops, more than the 1.4e9 that x's
  // 134 MB of traffic and a launch hide, so the gate keeps its own kernel.
  for (int64_t side : {int64_t{64}, int64_t{1024}}) {
    GraphBuilder b;
    ir::ValueId gate = b.input("s", {2, 8, 1, 1});
    for (int i = 0; i < 19; ++i) gate = b.node("Sigmoid", "sigmoid" + std::to_string(i), {gate});
    gate = b.node("Sigmoid", "gate", {gate});
    const ir::ValueId x = b.input("x", {2, 8, side, side});
    b.output(b.node("Mul", "scale", {x, gate}));
    infer_shapes(b.graph);
    FusionReport report;
    form_fusion_groups(b.graph, &report);
    const auto decision = std::find_if(report.decisions.begin(), report.decisions.end(),
                                       [](const FusionDecision& d) { return d.node == "gate"; });
    ASSERT_NE(decision, report.decisions.end());
    if (side == 64) {
      EXPECT_EQ(report.groups, 1);
      EXPECT_EQ(decision->group, "scale");
      EXPECT_NE(decision->reason.find("recomputed 4096 times per value"), std::string::npos) << decision->reason;
    } else {
      EXPECT_EQ(report.groups, 2);
      const auto scale = std::find_if(report.decisions.begin(), report.decisions.end(),
                                      [](const FusionDecision& d) { return d.node == "scale"; });
      ASSERT_NE(scale, report.decisions.end());
      EXPECT_NE(scale->reason.find("would be recomputed"), std::string::npos) << scale->reason;
    }
  }
}

TEST(FusionGrouping, ReductionsOverDifferentAxesStayApart) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {3, 5, 7});
  const ir::ValueId s1 = b.node("ReduceSum", "sum_last", {x, axes(b, "a1", {-1})}, keepdims(1));
  const ir::ValueId y = b.node("Sub", "sub", {x, s1});
  b.output(b.node("ReduceMax", "max_mid", {y, axes(b, "a2", {1})}, keepdims(1)));
  const ir::Graph grouped = group_and_compare(b);
  EXPECT_EQ(live_nodes(grouped, "FusedGroup").size(), 2u);
  expect_groups_compile(grouped);
}

TEST(FusionGrouping, IntegerArithmeticAndDynamicInnerDimsStayOut) {
  GraphBuilder b;
  const ir::ValueId ids = b.input("ids", {2, 8}, DType::kInt64);
  b.output(b.node("Add", "int_add", {ids, b.constant("one", testing::make_tensor_i64({}, {1}))}));
  infer_shapes(b.graph);
  FusionReport report;
  EXPECT_EQ(form_fusion_groups(b.graph, &report), 0);
  EXPECT_EQ(live_op_types(b.graph), std::vector<std::string>{"Add"});
  ASSERT_FALSE(report.decisions.empty());
  EXPECT_NE(report.decisions.front().reason.find("int64"), std::string::npos) << report.decisions.front().reason;
}

TEST(FusionGrouping, DynamicBatchBecomesASymbol) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {kDynamicDim, 32, 48});
  const ir::ValueId y = b.node("Sigmoid", "sig", {x});
  b.output(b.node("Mul", "silu", {x, y}));
  infer_shapes(b.graph);
  ASSERT_EQ(form_fusion_groups(b.graph), 1);
  infer_shapes(b.graph);
  const codegen::GroupPlan plan = plan_of(b.graph, *live_nodes(b.graph).front());
  ASSERT_EQ(plan.symbols.size(), 1u);
  EXPECT_EQ(plan.symbols[0].tensor, 0);
  EXPECT_EQ(plan.symbols[0].axis, 0);
  const codegen::GroupKernelSource kernel = codegen::emit_group_kernel(plan);
  // Both index widths: 32 bits while the batch is small enough, 64 beyond.
  bool has32 = false, has64 = false;
  for (const codegen::KernelEntry& e : kernel.entries) (e.index64 ? has64 : has32) = true;
  EXPECT_TRUE(has32 && has64);
  expect_groups_compile(b.graph);
}

TEST(FusionGrouping, HalfPrecisionGroupsUseWideVectorsAndCompile) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4, 16, 64});
  const ir::ValueId h = b.node("Gelu", "gelu", {x});
  b.output(b.node("Softmax", "softmax", {b.node("Add", "add", {h, x})}, attrs_of({{"axis", Attribute::of_int(-1)}})));
  infer_shapes(b.graph);
  lower_precision(b.graph, DType::kFloat16);
  infer_shapes(b.graph);
  form_fusion_groups(b.graph);
  infer_shapes(b.graph);
  // The input and output Casts of the fp16 graph join the group too.
  ASSERT_EQ(live_op_types(b.graph), std::vector<std::string>{"FusedGroup"});
  const codegen::GroupPlan plan = plan_of(b.graph, *live_nodes(b.graph).front());
  EXPECT_EQ(plan.inputs[0].dtype, DType::kFloat32);
  EXPECT_FALSE(codegen::uses_half_precision_math(plan));  // it reads an fp32 tensor
  expect_groups_compile(b.graph);
}

TEST(FusionGrouping, GroupsOfOnly16BitTensorsCompileWithFastDivisionAndSayItInTheSource) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    GraphBuilder b;
    const ir::ValueId x = b.input("x", {4, 16, 64}, dtype);
    const ir::ValueId s = b.node("Sigmoid", "sigmoid", {x});
    b.output(b.node("Div", "div", {x, b.node("Add", "add", {s, x})}));
    const ir::Graph grouped = [&] {
      infer_shapes(b.graph);
      form_fusion_groups(b.graph);
      infer_shapes(b.graph);
      return b.graph;
    }();
    ASSERT_EQ(live_op_types(grouped), std::vector<std::string>{"FusedGroup"});
    const codegen::GroupPlan plan = plan_of(grouped, *live_nodes(grouped).front());
    EXPECT_TRUE(codegen::uses_half_precision_math(plan));
    const codegen::GroupKernelSource kernel = codegen::emit_group_kernel(plan);
    EXPECT_EQ(kernel.nvrtc_options, std::vector<std::string>{"--prec-div=false"});
    EXPECT_NE(kernel.source.find("compiled with --prec-div=false"), std::string::npos);
    EXPECT_EQ(kernel.vector_width, 8);
    expect_groups_compile(grouped);
  }
}

TEST(BatchNormAffine, LeftoverBatchNormBecomesAMultiplyAddThatGroupsWithItsRelu) {
  // DenseNet's pre-activation: Concat -> BatchNormalization -> Relu (no conv to fold into).
  GraphBuilder b;
  const ir::ValueId a = b.input("a", {2, 3, 5, 5});
  const ir::ValueId c = b.input("c", {2, 4, 5, 5});
  const ir::ValueId cat = b.node("Concat", "cat", {a, c}, attrs_of({{"axis", Attribute::of_int(1)}}));
  std::mt19937 rng(9);
  auto param = [&](const std::string& name, float low, float high) {
    return b.constant(name, testing::random_tensor_f32({7}, rng, low, high));
  };
  const ir::ValueId bn = b.node("BatchNormalization", "bn",
                                {cat, param("g", 0.5f, 1.5f), param("beta", -1.0f, 1.0f), param("mu", -1.0f, 1.0f),
                                 param("var", 0.1f, 2.0f)},
                                attrs_of({{"epsilon", Attribute::of_float(1e-3f)}}));
  b.output(b.node("Relu", "relu", {bn}));
  infer_shapes(b.graph);
  const ir::Graph original = b.graph;
  ASSERT_EQ(convert_batch_norm_to_affine(b.graph), 1u);
  infer_shapes(b.graph);
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Concat", "Mul", "Add", "Relu"}));
  const auto inputs = random_inputs(original, 4);
  testing::expect_close(testing::evaluate(b.graph, inputs)[0], testing::evaluate(original, inputs)[0], 1e-5f);
  form_fusion_groups(b.graph);
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Concat", "FusedGroup"}));
  expect_groups_compile(b.graph);
  // A graph without BatchNormalization comes out unchanged.
  GraphBuilder plain;
  plain.output(plain.node("Relu", "relu", {plain.input("x", {2, 3})}));
  infer_shapes(plain.graph);
  EXPECT_EQ(convert_batch_norm_to_affine(plain.graph), 0u);
  plain.graph.verify();
  EXPECT_EQ(live_op_types(plain.graph), std::vector<std::string>{"Relu"});
}

TEST(TransposeComposition, PermutesThatUndoEachOtherCancelAndChainsCompose) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3, 4, 5});
  // NHWC -> NCHW (a layout edge) then the model's own permute back to channels-last: identity.
  const ir::ValueId to_nchw = b.node("Transpose", "edge", {x}, testing::perm({0, 3, 1, 2}));
  const ir::ValueId back = b.node("Transpose", "permute", {to_nchw}, testing::perm({0, 2, 3, 1}));
  const ir::ValueId relu = b.node("Relu", "relu", {back});
  // Two permutes that compose into one.
  const ir::ValueId p1 = b.node("Transpose", "p1", {relu}, testing::perm({1, 0, 2, 3}));
  b.output(b.node("Transpose", "p2", {p1}, testing::perm({0, 1, 3, 2})));
  infer_shapes(b.graph);
  const ir::Graph original = b.graph;
  EXPECT_GT(compose_transposes(b.graph), 0u);
  eliminate_dead_code(b.graph);
  infer_shapes(b.graph);
  EXPECT_EQ(live_op_types(b.graph), (std::vector<std::string>{"Relu", "Transpose"}));
  EXPECT_EQ(live_nodes(b.graph, "Transpose")[0]->attrs.get_ints("perm"), (std::vector<int64_t>{1, 0, 3, 2}));
  const auto inputs = random_inputs(original, 5);
  testing::expect_close(testing::evaluate(b.graph, inputs)[0], testing::evaluate(original, inputs)[0], 0.0f);
}

TEST(FusionGrouping, TransposesThatKeepTheInnermostDimAreFoldedIntoLoadsAndStores) {
  // nn.MultiheadAttention's batch_first round trip: [S, B, E] -> Transpose(1, 0, 2) -> residual Add
  // -> LayerNorm -> Transpose back for the next projection. Both Transposes fold into the group.
  GraphBuilder b;
  const ir::ValueId attn = b.input("attn", {7, 3, 32});
  const ir::ValueId residual = b.input("residual", {3, 7, 32});
  const ir::ValueId gamma = b.constant("gamma", testing::make_tensor_f32({32}, std::vector<float>(32, 1.25f)));
  const ir::ValueId back = b.node("Transpose", "to_batch_first", {attn}, testing::perm({1, 0, 2}));
  const ir::ValueId sum = b.node("Add", "residual_add", {back, residual});
  const ir::ValueId norm = b.node("LayerNormalization", "ln", {sum, gamma}, attrs_of({{"axis", Attribute::of_int(-1)}}));
  b.output(sum);
  b.output(b.node("Transpose", "to_seq_first", {norm}, testing::perm({1, 0, 2})));
  // A Transpose that moves the innermost dim stays a kernel of its own.
  b.output(b.node("Relu", "relu", {b.node("Transpose", "swap_last", {residual}, testing::perm({0, 2, 1}))}));
  const ir::Graph grouped = group_and_compare(b);
  EXPECT_EQ(live_op_types(grouped), (std::vector<std::string>{"FusedGroup", "Transpose", "FusedGroup"}));
  const ir::Node& group = *live_nodes(grouped, "FusedGroup")[0];
  const codegen::GroupPlan plan = plan_of(grouped, group);
  EXPECT_EQ(plan.schedule, codegen::Schedule::kRow);
  ASSERT_EQ(plan.input_strides.size(), group.inputs.size());
  EXPECT_EQ(plan.input_strides[0], (std::vector<int64_t>{32, 3 * 32, 1}));  // attn read in place
  ASSERT_EQ(plan.output_strides.size(), 2u);
  EXPECT_TRUE(plan.output_strides[0].empty());                              // the sum, as is
  EXPECT_EQ(plan.output_strides[1], (std::vector<int64_t>{32, 3 * 32, 1}));  // written seq-first
  expect_groups_compile(grouped);
}

TEST(FusedGroupOp, DecodeRejectsBadReferencesWithTheMemberNamed) {
  AttributeMap attrs;
  ops::GroupProgram program;
  program.num_inputs = 1;
  ops::GroupMember relu;
  relu.name = "my_relu";
  relu.op = "Relu";
  relu.inputs = {3};  // neither the input nor an earlier member
  relu.values = {nullptr};
  program.members.push_back(relu);
  program.outputs = {0};
  ops::encode_group(program, attrs);
  try {
    ops::decode_group("node 'g' (FusedGroup)", attrs, 1, 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("my_relu"), std::string::npos) << e.what();
  }
}

TEST(FusedGroupOp, DecodeNamesEveryOtherMalformedGroup) {
  auto relu_group = [] {
    ops::GroupProgram program;
    program.num_inputs = 1;
    ops::GroupMember relu;
    relu.name = "my_relu";
    relu.op = "Relu";
    relu.inputs = {0};
    relu.values = {nullptr};
    program.members.push_back(relu);
    program.outputs = {0};
    return program;
  };
  auto expect_error = [](const AttributeMap& attrs, size_t inputs, size_t outputs, ErrorCode code,
                         const std::string& part) {
    try {
      ops::decode_group("node 'g' (FusedGroup)", attrs, inputs, outputs);
      ADD_FAILURE() << "expected an error containing " << part;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  AttributeMap good;
  ops::encode_group(relu_group(), good);
  EXPECT_NO_THROW(ops::decode_group("g", good, 1, 1));
  expect_error(good, 1, 2, ErrorCode::kInvalidArgument, "'group_outputs' has 1 entries for 2 outputs");

  ops::GroupProgram unknown = relu_group();
  unknown.members[0].op = "NoSuchOp";
  AttributeMap unknown_attrs;
  ops::encode_group(unknown, unknown_attrs);
  expect_error(unknown_attrs, 1, 1, ErrorCode::kUnsupported, "'NoSuchOp'");

  ops::GroupProgram arity = relu_group();
  arity.members[0].inputs = {0, 0};
  arity.members[0].values = {nullptr, nullptr};
  AttributeMap arity_attrs;
  ops::encode_group(arity, arity_attrs);
  expect_error(arity_attrs, 1, 1, ErrorCode::kInvalidArgument, "('my_relu', Relu) has arity 2");

  ops::GroupProgram missing_value = relu_group();
  missing_value.members[0].op = "ReduceSum";
  missing_value.members[0].inputs = {0, ops::kGroupAttributeValue};
  missing_value.members[0].values = {nullptr, std::make_shared<const HostTensor>(testing::make_tensor_i64({1}, {0}))};
  AttributeMap value_attrs;
  ops::encode_group(missing_value, value_attrs);
  value_attrs.erase(ops::member_attribute_name(0, "input1"));
  expect_error(value_attrs, 1, 1, ErrorCode::kInvalidArgument, "holds no tensor");
}

}  // namespace
}  // namespace kiln::passes
