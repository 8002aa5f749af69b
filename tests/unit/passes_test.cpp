#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/cpu/cpu_node_runner.hpp"
#include "graph_test_builder.hpp"
#include "passes/batch_norm_folding.hpp"
#include "passes/constant_folding.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/identity_elimination.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::find_node;
using testing::GraphBuilder;
using testing::make_tensor_f32;
using testing::make_tensor_i64;
using testing::random_tensor_f32;

std::vector<int64_t> constant_ints(const ir::Graph& graph, ir::ValueId id) {
  EXPECT_TRUE(graph.is_constant(id)) << graph.value(id).name;
  if (!graph.is_constant(id)) return {};
  return read_indices(view_of(*graph.value(id).constant));
}

// |got - want| <= tolerance * max|want| elementwise.
void expect_close(const HostTensor& got, const HostTensor& want, double tolerance) {
  ASSERT_EQ(got.shape, want.shape);
  ASSERT_EQ(got.dtype, DType::kFloat32);
  double scale = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i)
    scale = std::max(scale, std::fabs(double(want.data<float>()[i])));
  scale = std::max(scale, 1e-30);
  for (int64_t i = 0; i < want.numel(); ++i) {
    ASSERT_LE(std::fabs(double(got.data<float>()[i]) - want.data<float>()[i]), tolerance * scale)
        << "element " << i << ": got " << got.data<float>()[i] << ", want "
        << want.data<float>()[i];
  }
}

// ---- shape inference -------------------------------------------------------------------------

TEST(PassesShapeInference, FillsShapesIncludingDynamicDims) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {kDynamicDim, 3, 8, 8});
  std::mt19937 rng(1);
  const ir::ValueId w = b.constant("w", random_tensor_f32({4, 3, 3, 3}, rng));
  const ir::ValueId conv =
      b.node("Conv", "conv", {x, w}, attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}}));
  const ir::ValueId relu = b.node("Relu", "relu", {conv});
  const ir::ValueId bias = b.constant("bias", random_tensor_f32({4, 1, 1}, rng));
  const ir::ValueId sum = b.node("Add", "add", {relu, bias});
  const ir::ValueId shape = b.node("Shape", "shape", {sum});
  b.output(sum);
  b.output(shape);
  infer_shapes(b.graph);
  EXPECT_EQ(b.graph.value(conv).shape, (Shape{kDynamicDim, 4, 8, 8}));
  EXPECT_EQ(b.graph.value(relu).shape, (Shape{kDynamicDim, 4, 8, 8}));
  EXPECT_EQ(b.graph.value(sum).shape, (Shape{kDynamicDim, 4, 8, 8}));
  EXPECT_EQ(b.graph.value(sum).dtype, DType::kFloat32);
  EXPECT_EQ(b.graph.value(shape).shape, (Shape{4}));
  EXPECT_EQ(b.graph.value(shape).dtype, DType::kInt64);
}

TEST(PassesShapeInference, UsesConstantShapeTensors) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3, 4});
  const ir::ValueId target = b.constant("target", make_tensor_i64({2}, {4, -1}));
  const ir::ValueId y = b.node("Reshape", "reshape", {x, target});
  b.output(y);
  infer_shapes(b.graph);
  EXPECT_EQ(b.graph.value(y).shape, (Shape{4, 6}));
}

TEST(PassesShapeInference, UnknownOpIsUnsupportedNamingNodeAndOp) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2});
  const ir::ValueId y = b.node("FrobnicateXyz", "mystery_node", {x});
  b.output(y);
  try {
    infer_shapes(b.graph);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("mystery_node"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("FrobnicateXyz"), std::string::npos) << e.what();
  }
}

TEST(PassesShapeInference, ReportsBadShapesAsInvalidArgument) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3});
  const ir::ValueId y = b.input("y", {4, 5});
  b.output(b.node("Add", "bad_add", {x, y}));
  try {
    infer_shapes(b.graph);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("bad_add"), std::string::npos) << e.what();
  }
}

// ---- constant folding ------------------------------------------------------------------------

// x -> Shape -> Gather(0) -> Unsqueeze -> Concat(.., [-1]) -> Reshape(x, ..): the usual
// "flatten keeping the batch" subgraph exported from PyTorch.
struct FlattenSubgraph {
  GraphBuilder b;
  ir::ValueId x, shape, reshape_target, y;
  explicit FlattenSubgraph(Shape input_shape) {
    x = b.input("x", std::move(input_shape));
    shape = b.node("Shape", "shape", {x});
    const ir::ValueId zero = b.constant("zero", make_tensor_i64({}, {0}));
    const ir::ValueId batch =
        b.node("Gather", "gather", {shape, zero}, attrs_of({{"axis", Attribute::of_int(0)}}));
    const ir::ValueId axes = b.constant("axes", make_tensor_i64({1}, {0}));
    const ir::ValueId batch1 = b.node("Unsqueeze", "unsqueeze", {batch, axes});
    const ir::ValueId minus_one = b.constant("minus_one", make_tensor_i64({1}, {-1}));
    reshape_target =
        b.node("Concat", "concat", {batch1, minus_one}, attrs_of({{"axis", Attribute::of_int(0)}}));
    y = b.node("Reshape", "reshape", {x, reshape_target});
    b.output(y);
  }
};

TEST(PassesConstantFolding, FoldsShapeSubgraphOfStaticInput) {
  FlattenSubgraph f({2, 3, 4});
  infer_shapes(f.b.graph);
  const size_t folded = fold_constants(f.b.graph);
  EXPECT_EQ(folded, 4u);
  ASSERT_EQ(f.b.graph.nodes.size(), 1u);
  const ir::Node& reshape = f.b.graph.nodes[0];
  EXPECT_EQ(reshape.op_type, "Reshape");
  EXPECT_EQ(reshape.inputs[0], f.x);
  EXPECT_EQ(constant_ints(f.b.graph, reshape.inputs[1]), (std::vector<int64_t>{2, -1}));
  EXPECT_EQ(f.b.graph.value(f.y).shape, (Shape{2, 12}));
  EXPECT_EQ(f.b.graph.value(f.y).producer, 0);
  f.b.graph.verify();
}

TEST(PassesConstantFolding, LeavesDynamicShapeSubgraphAlone) {
  FlattenSubgraph f({kDynamicDim, 3, 4});
  infer_shapes(f.b.graph);
  EXPECT_EQ(fold_constants(f.b.graph), 0u);
  EXPECT_EQ(f.b.graph.nodes.size(), 5u);
  EXPECT_FALSE(f.b.graph.is_constant(f.reshape_target));
  EXPECT_EQ(f.b.graph.value(f.y).shape.size(), 2u);
  EXPECT_EQ(f.b.graph.value(f.y).shape[0], kDynamicDim);
}

TEST(PassesConstantFolding, FoldsShapeSliceWhoseDimsAreStatic) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {kDynamicDim, 3, 4});
  const ir::ValueId tail =
      b.node("Shape", "tail", {x}, attrs_of({{"start", Attribute::of_int(1)}}));
  const ir::ValueId head = b.node("Shape", "head", {x}, attrs_of({{"end", Attribute::of_int(-1)}}));
  const ir::ValueId size = b.node("Size", "size", {x});
  b.output(tail);
  b.output(head);
  b.output(size);
  infer_shapes(b.graph);
  EXPECT_EQ(fold_constants(b.graph), 1u);
  EXPECT_EQ(constant_ints(b.graph, tail), (std::vector<int64_t>{3, 4}));
  EXPECT_FALSE(b.graph.is_constant(head));  // includes the dynamic batch dim
  EXPECT_FALSE(b.graph.is_constant(size));
}

TEST(PassesConstantFolding, FoldsSizeOfStaticTensor) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3, 5});
  const ir::ValueId size = b.node("Size", "size", {x});
  b.output(size);
  infer_shapes(b.graph);
  EXPECT_EQ(fold_constants(b.graph), 1u);
  EXPECT_EQ(constant_ints(b.graph, size), (std::vector<int64_t>{30}));
  EXPECT_EQ(b.graph.value(size).shape, Shape{});
}

TEST(PassesConstantFolding, EvaluatesConstantArithmeticOnCpu) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {3});
  const ir::ValueId a = b.constant("a", make_tensor_f32({3}, {1.0f, 2.0f, 3.0f}));
  const ir::ValueId c = b.constant("c", make_tensor_f32({3}, {0.5f, -1.0f, 4.0f}));
  const ir::ValueId sum = b.node("Add", "sum", {a, c});
  const ir::ValueId y = b.node("Mul", "mul", {x, sum});
  b.output(y);
  infer_shapes(b.graph);
  EXPECT_EQ(fold_constants(b.graph), 1u);
  ASSERT_EQ(b.graph.nodes.size(), 1u);
  ASSERT_TRUE(b.graph.is_constant(sum));
  const HostTensor& folded = *b.graph.value(sum).constant;
  EXPECT_EQ(folded.shape, Shape{3});
  EXPECT_FLOAT_EQ(folded.data<float>()[0], 1.5f);
  EXPECT_FLOAT_EQ(folded.data<float>()[1], 1.0f);
  EXPECT_FLOAT_EQ(folded.data<float>()[2], 7.0f);
}

TEST(PassesConstantFolding, SkipsOutputsOverTheSizeLimit) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {64});
  std::mt19937 rng(3);
  const ir::ValueId a = b.constant("a", random_tensor_f32({64}, rng));
  const ir::ValueId big = b.node("Relu", "relu", {a});
  b.output(b.node("Add", "add", {x, big}));
  infer_shapes(b.graph);
  ConstantFoldingOptions options;
  options.max_output_bytes = 64 * 4 - 1;
  EXPECT_EQ(fold_constants(b.graph, options), 0u);
  EXPECT_FALSE(b.graph.is_constant(big));
  options.max_output_bytes = 64 * 4;
  EXPECT_EQ(fold_constants(b.graph, options), 1u);
  EXPECT_TRUE(b.graph.is_constant(big));
}

// ---- dead code elimination -------------------------------------------------------------------

TEST(PassesDeadCode, RemovesDeadNodesAndUnusedConstants) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4});
  const ir::ValueId unused_input = b.input("unused", {4});
  const ir::ValueId c = b.constant("c", make_tensor_f32({4}, {1, 2, 3, 4}));
  b.constant("never_used", make_tensor_f32({1}, {9}));
  const ir::ValueId dead = b.node("Add", "dead_add", {x, c});
  b.node("Relu", "dead_relu", {dead});
  const ir::ValueId relu = b.node("Relu", "relu", {x});
  const ir::ValueId neg = b.node("Neg", "neg", {relu});
  b.output(neg);
  (void)unused_input;

  const DeadCodeResult result = eliminate_dead_code(b.graph);
  EXPECT_EQ(result.nodes_removed, 2u);
  EXPECT_EQ(result.values_removed, 4u);  // c, never_used, dead_add, dead_relu
  b.graph.verify();
  ASSERT_EQ(b.graph.nodes.size(), 2u);
  EXPECT_EQ(b.graph.nodes[0].name, "relu");
  EXPECT_EQ(b.graph.nodes[1].name, "neg");
  ASSERT_EQ(b.graph.values.size(), 4u);  // x, unused, relu, neg
  ASSERT_EQ(b.graph.inputs.size(), 2u);
  EXPECT_EQ(b.graph.value(b.graph.inputs[0]).name, "x");
  EXPECT_EQ(b.graph.value(b.graph.inputs[1]).name, "unused");
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).name, "neg");
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).producer, 1);
  EXPECT_EQ(b.graph.value(b.graph.nodes[1].inputs[0]).name, "relu");
  for (const ir::Value& v : b.graph.values) EXPECT_FALSE(v.constant) << v.name;
}

TEST(PassesDeadCode, KeepsUnusedOutputsOfLiveNodes) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4, 2});
  const std::vector<ir::ValueId> parts =
      b.node_n("Split", "split", {x}, 2,
               attrs_of({{"axis", Attribute::of_int(0)}, {"num_outputs", Attribute::of_int(2)}}));
  b.output(parts[0]);
  const DeadCodeResult result = eliminate_dead_code(b.graph);
  EXPECT_EQ(result.nodes_removed, 0u);
  EXPECT_EQ(result.values_removed, 0u);
  EXPECT_EQ(b.graph.nodes[0].outputs.size(), 2u);
  b.graph.verify();
}

// ---- identity elimination --------------------------------------------------------------------

TEST(PassesIdentity, RemovesIdentityAndInferenceDropout) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4});
  const ir::ValueId a = b.node("Relu", "relu", {x});
  const ir::ValueId id = b.node("Identity", "identity", {a});
  const ir::ValueId ratio = b.constant("ratio", make_tensor_f32({}, {0.5f}));
  const ir::ValueId dropped = b.node("Dropout", "dropout", {id, ratio});
  const ir::ValueId y = b.node("Neg", "neg", {dropped});
  b.output(y);
  EXPECT_EQ(eliminate_identities(b.graph), 2u);
  b.graph.verify();
  ASSERT_EQ(b.graph.nodes.size(), 2u);
  EXPECT_EQ(b.graph.nodes[1].name, "neg");
  EXPECT_EQ(b.graph.nodes[1].inputs[0], a);
  EXPECT_EQ(b.graph.outputs[0], y);
}

TEST(PassesIdentity, GraphOutputKeepsItsName) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4});
  const ir::ValueId a = b.node("Relu", "relu", {x});
  const ir::ValueId y = b.node("Identity", "y", {a});
  const ir::ValueId z = b.node("Neg", "z", {a});  // another reader of the Identity's input
  b.output(y);
  b.output(z);
  EXPECT_EQ(eliminate_identities(b.graph), 1u);
  b.graph.verify();
  ASSERT_EQ(b.graph.nodes.size(), 2u);
  EXPECT_EQ(b.graph.outputs[0], a);
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).name, "y");
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).producer, 0);
  EXPECT_EQ(b.graph.nodes[1].inputs[0], a);
  // The removed value no longer carries the output's name.
  EXPECT_NE(b.graph.value(y).name, "y");
}

TEST(PassesIdentity, KeepsCopiesThatOutputsNeed) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4});
  const ir::ValueId c = b.constant("c", make_tensor_f32({4}, {1, 2, 3, 4}));
  const ir::ValueId relu = b.node("Relu", "relu", {x});
  b.output(b.node("Identity", "copy_of_input", {x}));
  b.output(b.node("Identity", "copy_of_constant", {c}));
  b.output(relu);
  b.output(b.node("Identity", "copy_of_output", {relu}));
  EXPECT_EQ(eliminate_identities(b.graph), 0u);
  EXPECT_EQ(b.graph.nodes.size(), 4u);
}

TEST(PassesIdentity, KeepsTrainingDropoutAndUsedMasks) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4});
  const ir::ValueId ratio = b.constant("ratio", make_tensor_f32({}, {0.5f}));
  HostTensor training(DType::kBool, {});
  training.bytes[0] = 1;
  const ir::ValueId train = b.constant("train", std::move(training));
  b.output(b.node("Dropout", "training_dropout", {x, ratio, train}));
  const std::vector<ir::ValueId> with_mask = b.node_n("Dropout", "masked_dropout", {x}, 2);
  b.output(with_mask[1]);
  HostTensor inference(DType::kBool, {});
  inference.bytes[0] = 0;
  const ir::ValueId infer = b.constant("infer", std::move(inference));
  const std::vector<ir::ValueId> unused_mask =
      b.node_n("Dropout", "inference_dropout", {x, ratio, infer}, 2);
  b.output(b.node("Neg", "neg", {unused_mask[0]}));
  EXPECT_EQ(eliminate_identities(b.graph), 1u);
  EXPECT_GE(find_node(b.graph, "training_dropout"), 0);
  EXPECT_GE(find_node(b.graph, "masked_dropout"), 0);
  EXPECT_EQ(find_node(b.graph, "inference_dropout"), -1);
  EXPECT_EQ(b.graph.nodes[static_cast<size_t>(find_node(b.graph, "neg"))].inputs[0], x);
}

TEST(PassesIdentity, RemovesOpsWhoseParametersMakeThemCopies) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 6, 6, 4});
  const ir::ValueId zero_pads = b.constant("zero_pads", make_tensor_i64({8}, std::vector<int64_t>(8, 0)));
  const ir::ValueId padded = b.node("Pad", "pad_by_nothing", {b.node("Relu", "relu", {x}), zero_pads});
  const ir::ValueId starts = b.constant("starts", make_tensor_i64({1}, {0}));
  const ir::ValueId ends = b.constant("ends", make_tensor_i64({1}, {100}));
  const ir::ValueId axes = b.constant("axes", make_tensor_i64({1}, {1}));
  const ir::ValueId sliced = b.node("Slice", "slice_of_all", {padded, starts, ends, axes});
  const ir::ValueId shape = b.constant("shape", make_tensor_i64({4}, {2, 6, 6, 4}));
  const ir::ValueId expanded = b.node("Expand", "expand_to_itself", {sliced, shape});
  const ir::ValueId ones = b.constant("ones", make_tensor_i64({4}, {1, 1, 1, 1}));
  const ir::ValueId tiled = b.node("Tile", "tile_once", {expanded, ones});
  const ir::ValueId cast = b.node("Cast", "cast_to_float", {tiled}, attrs_of({{"to", Attribute::of_int(1)}}));
  const ir::ValueId joined = b.node("Concat", "concat_of_one", {cast}, attrs_of({{"axis", Attribute::of_int(0)}}));
  b.output(b.node("Neg", "neg", {joined}));
  const ir::ValueId dynamic = b.input("d", {kDynamicDim, 6});
  const ir::ValueId no_pads = b.constant("no_pads", make_tensor_i64({4}, {0, 0, 0, 0}));
  b.output(b.node("Neg", "neg_d", {b.node("Pad", "pad_of_dynamic", {dynamic, no_pads})}));
  infer_shapes(b.graph);
  EXPECT_EQ(eliminate_identities(b.graph), 7u);
  b.graph.verify();
  ASSERT_EQ(b.graph.nodes.size(), 3u);
  EXPECT_EQ(b.graph.nodes[1].name, "neg");
  EXPECT_EQ(b.graph.nodes[1].inputs[0], b.graph.nodes[0].outputs[0]);
  EXPECT_EQ(b.graph.nodes[2].inputs[0], dynamic);
}

TEST(PassesIdentity, KeepsOpsThatMoveOrChangeData) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 6});
  const ir::ValueId one_pad = b.constant("one_pad", make_tensor_i64({4}, {0, 1, 0, 0}));
  b.output(b.node("Pad", "pad", {x, one_pad}));
  // Reversing keeps the shape but not the order.
  const ir::ValueId starts = b.constant("starts", make_tensor_i64({1}, {-1}));
  const ir::ValueId ends = b.constant("ends", make_tensor_i64({1}, {-100}));
  const ir::ValueId axes = b.constant("axes", make_tensor_i64({1}, {1}));
  const ir::ValueId steps = b.constant("steps", make_tensor_i64({1}, {-1}));
  b.output(b.node("Slice", "reverse", {x, starts, ends, axes, steps}));
  b.output(b.node("Cast", "to_half", {x}, attrs_of({{"to", Attribute::of_int(10)}})));
  const ir::ValueId shape = b.constant("shape", make_tensor_i64({3}, {3, 2, 6}));
  b.output(b.node("Expand", "broadcast", {x, shape}));
  // A dynamic dim hides whether a Slice keeps everything (a Pad by nothing is a copy whatever the dims).
  const ir::ValueId dynamic = b.input("d", {kDynamicDim, 6});
  const ir::ValueId zero = b.constant("zero", make_tensor_i64({1}, {0}));
  const ir::ValueId big = b.constant("big", make_tensor_i64({1}, {4}));
  b.output(b.node("Slice", "slice_of_dynamic", {dynamic, zero, big, zero}));
  infer_shapes(b.graph);
  EXPECT_EQ(eliminate_identities(b.graph), 0u);
}

// ---- batch-norm folding ----------------------------------------------------------------------

struct BatchNormParams {
  HostTensor scale, bias, mean, var;
  explicit BatchNormParams(int64_t channels, std::mt19937& rng)
      : scale(random_tensor_f32({channels}, rng, 0.5f, 2.0f)),
        bias(random_tensor_f32({channels}, rng)),
        mean(random_tensor_f32({channels}, rng)),
        var(random_tensor_f32({channels}, rng, 0.1f, 3.0f)) {}
};

HostTensor run_op(const std::string& op, std::vector<const HostTensor*> inputs,
                  const AttributeMap& attrs = {}) {
  return std::move(cpu::run_node_on_cpu("test", op, attrs, inputs, 1).front());
}

const AttributeMap kBatchNormAttrs = attrs_of({{"epsilon", Attribute::of_float(1e-3f)}});

TEST(PassesBatchNormFolding, ConvBatchNormMatchesUnfolded) {
  std::mt19937 rng(42);
  const HostTensor x = random_tensor_f32({2, 3, 7, 7}, rng);
  const HostTensor w = random_tensor_f32({4, 3, 3, 3}, rng);
  const HostTensor bias = random_tensor_f32({4}, rng);
  const BatchNormParams bn(4, rng);
  const AttributeMap conv_attrs = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}});

  for (const bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    const HostTensor conv_ref = run_op("Conv", {&x, &w, with_bias ? &bias : nullptr}, conv_attrs);
    const HostTensor want = run_op(
        "BatchNormalization", {&conv_ref, &bn.scale, &bn.bias, &bn.mean, &bn.var}, kBatchNormAttrs);

    GraphBuilder b;
    const ir::ValueId xin = b.input("x", x.shape);
    std::vector<ir::ValueId> conv_inputs = {xin, b.constant("w", w)};
    if (with_bias) conv_inputs.push_back(b.constant("b", bias));
    const ir::ValueId conv = b.node("Conv", "conv", conv_inputs, conv_attrs);
    const ir::ValueId y =
        b.node("BatchNormalization", "bn",
               {conv, b.constant("scale", bn.scale), b.constant("bn_bias", bn.bias),
                b.constant("mean", bn.mean), b.constant("var", bn.var)},
               kBatchNormAttrs);
    b.output(b.node("Relu", "relu", {y}));
    infer_shapes(b.graph);
    ASSERT_EQ(fold_batch_norm(b.graph), 1u);
    b.graph.verify();
    ASSERT_EQ(b.graph.nodes.size(), 2u);
    const ir::Node& folded = b.graph.nodes[0];
    EXPECT_EQ(folded.op_type, "Conv");
    EXPECT_EQ(folded.outputs[0], y);
    EXPECT_EQ(b.graph.value(y).producer, 0);
    ASSERT_EQ(folded.inputs.size(), 3u);
    ASSERT_TRUE(b.graph.is_constant(folded.inputs[1]));
    ASSERT_TRUE(b.graph.is_constant(folded.inputs[2]));
    const HostTensor got = run_op("Conv",
                                  {&x, b.graph.value(folded.inputs[1]).constant.get(),
                                   b.graph.value(folded.inputs[2]).constant.get()},
                                  folded.attrs);
    expect_close(got, want, 1e-5);
    // The original weights are untouched (another node might share them).
    EXPECT_EQ(b.graph.value(conv_inputs[1]).constant->bytes, w.bytes);
  }
}

TEST(PassesBatchNormFolding, GemmBatchNormMatchesUnfolded) {
  std::mt19937 rng(7);
  const HostTensor a = random_tensor_f32({5, 6}, rng);
  const BatchNormParams bn(3, rng);
  for (const int trans_b : {0, 1}) {
    SCOPED_TRACE(trans_b ? "transB=1" : "transB=0");
    const HostTensor weight = random_tensor_f32(trans_b ? Shape{3, 6} : Shape{6, 3}, rng);
    const HostTensor c = random_tensor_f32({3}, rng);
    const AttributeMap gemm_attrs = attrs_of({{"transB", Attribute::of_int(trans_b)},
                                              {"alpha", Attribute::of_float(0.75f)},
                                              {"beta", Attribute::of_float(1.5f)}});
    const HostTensor gemm_ref = run_op("Gemm", {&a, &weight, &c}, gemm_attrs);
    const HostTensor want = run_op(
        "BatchNormalization", {&gemm_ref, &bn.scale, &bn.bias, &bn.mean, &bn.var}, kBatchNormAttrs);

    GraphBuilder b;
    const ir::ValueId ain = b.input("a", a.shape);
    const ir::ValueId gemm =
        b.node("Gemm", "gemm", {ain, b.constant("w", weight), b.constant("c", c)}, gemm_attrs);
    const ir::ValueId y =
        b.node("BatchNormalization", "bn",
               {gemm, b.constant("scale", bn.scale), b.constant("bn_bias", bn.bias),
                b.constant("mean", bn.mean), b.constant("var", bn.var)},
               kBatchNormAttrs);
    b.output(y);
    infer_shapes(b.graph);
    ASSERT_EQ(fold_batch_norm(b.graph), 1u);
    ASSERT_EQ(b.graph.nodes.size(), 1u);
    const ir::Node& folded = b.graph.nodes[0];
    EXPECT_EQ(folded.outputs[0], y);
    const HostTensor got = run_op("Gemm",
                                  {&a, b.graph.value(folded.inputs[1]).constant.get(),
                                   b.graph.value(folded.inputs[2]).constant.get()},
                                  folded.attrs);
    expect_close(got, want, 1e-5);
  }
}

TEST(PassesBatchNormFolding, MatMulAndBiasBecomeGemm) {
  std::mt19937 rng(8);
  const HostTensor a = random_tensor_f32({4, 5}, rng);
  const HostTensor weight = random_tensor_f32({5, 3}, rng);
  const HostTensor bias = random_tensor_f32({3}, rng);
  const BatchNormParams bn(3, rng);
  for (const bool with_bias : {false, true}) {
    SCOPED_TRACE(with_bias ? "MatMul+Add" : "MatMul");
    HostTensor product = run_op("MatMul", {&a, &weight});
    if (with_bias) product = run_op("Add", {&bias, &product});
    const HostTensor want = run_op(
        "BatchNormalization", {&product, &bn.scale, &bn.bias, &bn.mean, &bn.var}, kBatchNormAttrs);

    GraphBuilder b;
    const ir::ValueId ain = b.input("a", a.shape);
    ir::ValueId x = b.node("MatMul", "matmul", {ain, b.constant("w", weight)});
    // The bias comes first to check that either operand order is recognised.
    if (with_bias) x = b.node("Add", "add", {b.constant("bias", bias), x});
    const ir::ValueId y = b.node("BatchNormalization", "bn",
                                 {x, b.constant("scale", bn.scale), b.constant("bn_bias", bn.bias),
                                  b.constant("mean", bn.mean), b.constant("var", bn.var)},
                                 kBatchNormAttrs);
    b.output(y);
    infer_shapes(b.graph);
    ASSERT_EQ(fold_batch_norm(b.graph), 1u);
    b.graph.verify();
    ASSERT_EQ(b.graph.nodes.size(), 1u);
    const ir::Node& gemm = b.graph.nodes[0];
    EXPECT_EQ(gemm.op_type, "Gemm");
    EXPECT_EQ(gemm.outputs[0], y);
    infer_shapes(b.graph);
    EXPECT_EQ(b.graph.value(y).shape, (Shape{4, 3}));
    const HostTensor got = run_op("Gemm",
                                  {&a, b.graph.value(gemm.inputs[1]).constant.get(),
                                   b.graph.value(gemm.inputs[2]).constant.get()},
                                  gemm.attrs);
    expect_close(got, want, 1e-5);
  }
}

TEST(PassesBatchNormFolding, LeavesBatchedMatMul) {
  // For a rank-3 MatMul output, BN's channel dim (1) is not MatMul's last dim.
  std::mt19937 rng(9);
  const BatchNormParams bn(2, rng);
  GraphBuilder b;
  const ir::ValueId a = b.input("a", {1, 2, 4});
  const ir::ValueId x =
      b.node("MatMul", "matmul", {a, b.constant("w", random_tensor_f32({4, 2}, rng))});
  b.output(b.node("BatchNormalization", "bn",
                  {x, b.constant("scale", bn.scale), b.constant("bias", bn.bias),
                   b.constant("mean", bn.mean), b.constant("var", bn.var)}));
  infer_shapes(b.graph);
  EXPECT_EQ(fold_batch_norm(b.graph), 0u);
  EXPECT_EQ(b.graph.nodes[0].op_type, "MatMul");
}

TEST(PassesBatchNormFolding, LeavesConvWhoseOutputHasOtherReaders) {
  std::mt19937 rng(5);
  const BatchNormParams bn(2, rng);
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {1, 2, 4, 4});
  const ir::ValueId conv =
      b.node("Conv", "conv", {x, b.constant("w", random_tensor_f32({2, 2, 1, 1}, rng))});
  const ir::ValueId y = b.node("BatchNormalization", "bn",
                               {conv, b.constant("scale", bn.scale), b.constant("bias", bn.bias),
                                b.constant("mean", bn.mean), b.constant("var", bn.var)});
  b.output(y);
  b.output(b.node("Relu", "relu", {conv}));
  infer_shapes(b.graph);
  EXPECT_EQ(fold_batch_norm(b.graph), 0u);
  EXPECT_GE(find_node(b.graph, "bn"), 0);
}

TEST(PassesBatchNormFolding, LeavesNonConstantParameters) {
  std::mt19937 rng(6);
  const BatchNormParams bn(2, rng);
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {1, 2, 4, 4});
  const ir::ValueId scale = b.input("scale", {2});
  const ir::ValueId conv =
      b.node("Conv", "conv", {x, b.constant("w", random_tensor_f32({2, 2, 1, 1}, rng))});
  b.output(b.node("BatchNormalization", "bn",
                  {conv, scale, b.constant("bias", bn.bias), b.constant("mean", bn.mean),
                   b.constant("var", bn.var)}));
  infer_shapes(b.graph);
  EXPECT_EQ(fold_batch_norm(b.graph), 0u);
  EXPECT_EQ(b.graph.nodes.size(), 2u);
}

}  // namespace
}  // namespace kiln::passes
