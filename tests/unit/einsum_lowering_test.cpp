// Einsum: shape inference and its errors, and the builder's lowering to Transpose/Reshape/MatMul/
// ReduceSum. Lowered graphs (evaluated node by node on the CPU kernels) must match a naive einsum
// written here, which loops over every combination of label values.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "builder/build_from_graph.hpp"
#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "kiln/runtime.hpp"
#include "passes/einsum_lowering.hpp"
#include "passes/precision_lowering.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::evaluate;
using testing::expect_close;
using testing::GraphBuilder;
using testing::live_nodes;
using testing::random_tensor_f32;

// Naive reference. "..." is spelled out as the capital letters 'Z', 'Y', ... counted from the
// right, so operands whose ellipses differ in rank align numpy style; size-1 broadcasting is
// applied per label by indexing an operand's size-1 axis at 0.
HostTensor naive_einsum(std::string equation, const std::vector<HostTensor>& operands) {
  equation.erase(std::remove(equation.begin(), equation.end(), ' '), equation.end());
  std::string inputs = equation, output;
  const size_t arrow = equation.find("->");
  const bool explicit_output = arrow != std::string::npos;
  if (explicit_output) {
    inputs = equation.substr(0, arrow);
    output = equation.substr(arrow + 2);
  }
  std::vector<std::string> terms;
  for (size_t begin = 0;;) {
    const size_t comma = inputs.find(',', begin);
    terms.push_back(inputs.substr(begin, comma - begin));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  const auto ellipsis_letters = [](size_t count) {
    std::string letters;
    for (size_t i = count; i > 0; --i) letters.push_back(static_cast<char>('Z' + 1 - i));
    return letters;
  };
  size_t widest = 0;
  for (size_t o = 0; o < terms.size(); ++o) {
    const size_t dots = terms[o].find("...");
    if (dots == std::string::npos) continue;
    const size_t count = operands[o].shape.size() - (terms[o].size() - 3);
    widest = std::max(widest, count);
    terms[o] = terms[o].substr(0, dots) + ellipsis_letters(count) + terms[o].substr(dots + 3);
  }
  std::map<char, int64_t> sizes;
  std::map<char, int> uses;
  for (size_t o = 0; o < terms.size(); ++o) {
    for (size_t axis = 0; axis < terms[o].size(); ++axis) {
      int64_t& size = sizes[terms[o][axis]];
      size = std::max(size, operands[o].shape[axis]);
      ++uses[terms[o][axis]];
    }
  }
  if (!explicit_output) {
    output = "...";
    for (const auto& [label, count] : uses) {
      if (count == 1 && label >= 'a') output.push_back(label);
    }
  }
  const size_t dots = output.find("...");
  if (dots != std::string::npos) {
    output = output.substr(0, dots) + ellipsis_letters(widest) + output.substr(dots + 3);
  }

  std::string labels;
  for (const auto& [label, size] : sizes) labels.push_back(label);
  Shape out_shape;
  for (char label : output) out_shape.push_back(sizes[label]);
  HostTensor result(DType::kFloat32, out_shape);
  std::fill(result.data<float>(), result.data<float>() + result.numel(), 0.0f);
  std::map<char, int64_t> at;
  for (char label : labels) at[label] = 0;
  for (;;) {
    float product = 1.0f;
    for (size_t o = 0; o < terms.size(); ++o) {
      int64_t flat = 0;
      for (size_t axis = 0; axis < terms[o].size(); ++axis) {
        const int64_t dim = operands[o].shape[axis];
        flat = flat * dim + (dim == 1 ? 0 : at[terms[o][axis]]);
      }
      product *= operands[o].data<float>()[flat];
    }
    int64_t flat = 0;
    for (size_t axis = 0; axis < output.size(); ++axis)
      flat = flat * out_shape[axis] + at[output[axis]];
    result.data<float>()[flat] += product;
    size_t next = 0;
    for (; next < labels.size(); ++next) {
      if (++at[labels[next]] < sizes[labels[next]]) break;
      at[labels[next]] = 0;
    }
    if (next == labels.size()) break;
  }
  return result;
}

// "x0", "x1", ... (spelled out: GCC 12 warns falsely on "x" + std::to_string(i) here).
std::string input_name(size_t i) {
  static const char* const kNames[] = {"x0", "x1", "x2", "x3"};
  return kNames[i];
}

struct EinsumCase {
  std::string equation;
  std::vector<Shape> shapes;
};

GraphBuilder einsum_graph(const std::string& equation, const std::vector<Shape>& shapes,
                          DType dtype = DType::kFloat32) {
  GraphBuilder b;
  std::vector<ir::ValueId> inputs;
  for (size_t i = 0; i < shapes.size(); ++i) {
    inputs.push_back(b.input(input_name(i), shapes[i], dtype));
  }
  b.output(
      b.node("Einsum", "einsum", inputs, attrs_of({{"equation", Attribute::of_string(equation)}})));
  return b;
}

class EinsumLoweringCase : public ::testing::TestWithParam<EinsumCase> {};

TEST_P(EinsumLoweringCase, LowersToExistingOpsAndMatchesNaiveEinsum) {
  const EinsumCase& c = GetParam();
  GraphBuilder b = einsum_graph(c.equation, c.shapes);
  infer_shapes(b.graph);
  const Shape inferred = b.graph.value(b.graph.outputs[0]).shape;

  std::mt19937 rng(7);
  std::map<std::string, HostTensor> inputs;
  std::vector<HostTensor> operands;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    operands.push_back(random_tensor_f32(c.shapes[i], rng));
    inputs[input_name(i)] = operands.back();
  }
  const HostTensor want = naive_einsum(c.equation, operands);
  EXPECT_EQ(inferred, want.shape);

  ASSERT_EQ(lower_einsum(b.graph), 1);
  b.graph.verify();
  EXPECT_TRUE(live_nodes(b.graph, "Einsum").empty());
  for (const ir::Node* node : live_nodes(b.graph)) {
    EXPECT_TRUE(node->op_type == "Transpose" || node->op_type == "Reshape" ||
                node->op_type == "MatMul" || node->op_type == "ReduceSum" ||
                node->op_type == "Identity")
        << node->op_type;
  }
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape, want.shape);
  const std::vector<HostTensor> got = evaluate(b.graph, inputs);
  ASSERT_EQ(got.size(), 1u);
  expect_close(got[0], want, 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(
    EinsumLowering, EinsumLoweringCase,
    ::testing::Values(
        EinsumCase{"ij,jk->ik", {{3, 4}, {4, 5}}},
        EinsumCase{"bij,bjk->bik", {{2, 3, 4}, {2, 4, 5}}},
        EinsumCase{"bhqd,bhkd->bhqk", {{2, 3, 4, 5}, {2, 3, 6, 5}}},
        EinsumCase{"bhqk,bhkd->bhqd", {{2, 3, 4, 6}, {2, 3, 6, 5}}},
        EinsumCase{"...ij,...jk->...ik", {{2, 3, 4, 5}, {2, 3, 5, 6}}},
        EinsumCase{"ij->ji", {{3, 4}}}, EinsumCase{"ij->i", {{3, 4}}}, EinsumCase{"ij->", {{3, 4}}},
        EinsumCase{"ij->ij", {{3, 4}}}, EinsumCase{"i,j->ij", {{3}, {4}}},
        EinsumCase{"bid,jd->bij", {{2, 3, 4}, {5, 4}}}, EinsumCase{"ij,ij->i", {{3, 4}, {3, 4}}},
        EinsumCase{"ij,jk", {{3, 4}, {4, 5}}},
        EinsumCase{"ba,ca", {{3, 4}, {5, 4}}},  // implicit: "bc"
        EinsumCase{"i,i->", {{6}, {6}}}, EinsumCase{"ij,j->i", {{3, 4}, {4}}},
        EinsumCase{"ij,jk->k", {{3, 4}, {4, 5}}},  // i summed away alone
        EinsumCase{"ij,kl->ljik", {{2, 3}, {4, 5}}}, EinsumCase{"abc,cd->dba", {{2, 3, 4}, {4, 5}}},
        EinsumCase{"bhqd, bhkd -> bhkq", {{1, 2, 3, 4}, {1, 2, 5, 4}}},
        EinsumCase{"...ij,jk->...ik", {{2, 3, 4}, {4, 5}}},
        EinsumCase{"...ij,...jk->...ik", {{2, 1, 3, 4}, {1, 5, 4, 6}}},
        EinsumCase{"...ij,...jk", {{3, 3, 4}, {4, 5}}}, EinsumCase{"Ab,bA->A", {{3, 4}, {4, 3}}}));

// Attention scores: batch dims stay, so only K is transposed; no Reshape is needed.
TEST(EinsumLoweringShape, AttentionScoresNeedOneTransposeAndOneMatMul) {
  GraphBuilder b = einsum_graph("bhqd,bhkd->bhqk", {{2, 3, 4, 5}, {2, 3, 6, 5}});
  infer_shapes(b.graph);
  ASSERT_EQ(lower_einsum(b.graph), 1);
  EXPECT_EQ(testing::live_op_types(b.graph), (std::vector<std::string>{"Transpose", "MatMul"}));
}

TEST(EinsumLoweringShape, Float16StaysFloat16) {
  GraphBuilder b = einsum_graph("bij,bjk->bik", {{2, 3, 4}, {2, 4, 5}}, DType::kFloat16);
  infer_shapes(b.graph);
  const auto inputs = testing::random_inputs(b.graph, 3, -1.0f, 1.0f);
  std::vector<HostTensor> operands;
  for (const char* name : {"x0", "x1"}) {
    const HostTensor& h = inputs.at(name);
    HostTensor f(DType::kFloat32, h.shape);
    for (int64_t i = 0; i < h.numel(); ++i) f.data<float>()[i] = testing::element(h, i);
    operands.push_back(f);
  }
  ASSERT_EQ(lower_einsum(b.graph), 1);
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).dtype, DType::kFloat16);
  const std::vector<HostTensor> got = evaluate(b.graph, inputs);
  testing::expect_close_to_scale(got[0], testing::to_half(naive_einsum("bij,bjk->bik", operands)),
                                 1e-2f);
}

// Lowering runs before precision lowering, so an fp16 build runs the MatMul in fp16.
TEST(EinsumLoweringShape, PrecisionLoweringReachesTheMatMul) {
  GraphBuilder b = einsum_graph("bhqd,bhkd->bhqk", {{2, 2, 8, 16}, {2, 2, 12, 16}});
  infer_shapes(b.graph);
  const auto inputs = testing::random_inputs(b.graph, 5, -1.0f, 1.0f);
  const HostTensor want = naive_einsum("bhqd,bhkd->bhqk", {inputs.at("x0"), inputs.at("x1")});
  ASSERT_EQ(lower_einsum(b.graph), 1);
  lower_precision(b.graph, DType::kFloat16);
  const auto matmuls = live_nodes(b.graph, "MatMul");
  ASSERT_EQ(matmuls.size(), 1u);
  EXPECT_EQ(b.graph.value(matmuls[0]->outputs[0]).dtype, DType::kFloat16);
  const std::vector<HostTensor> got = evaluate(b.graph, inputs);
  EXPECT_EQ(got[0].dtype, DType::kFloat32);
  testing::expect_close_to_scale(got[0], want, 1e-2f);
}

TEST(EinsumLoweringShape, DynamicBatchUsesCopyOrInferredReshapeEntries) {
  GraphBuilder b = einsum_graph("bid,jd->bij", {{kDynamicDim, 3, 4}, {5, 4}});
  infer_shapes(b.graph);
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape, (Shape{kDynamicDim, 3, 5}));
  ASSERT_EQ(lower_einsum(b.graph), 1);
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape, (Shape{kDynamicDim, 3, 5}));
  for (const ir::Node* node : live_nodes(b.graph, "Reshape")) {
    const HostTensor& target = *b.graph.value(node->inputs[1]).constant;
    const int64_t* entries = target.data<int64_t>();
    EXPECT_EQ(std::count(entries, entries + target.numel(), -1), 1) << node->name;
  }
}

// Built into a CPU engine with a dynamic batch, then run at two batch sizes.
TEST(EinsumLoweringEngine, DynamicBatchEngineRunsAtSeveralBatchSizes) {
  const std::vector<EinsumCase> cases = {
      {"bid,jd->bij", {{kDynamicDim, 3, 4}, {5, 4}}},
      {"bhqd,bhkd->bhqk", {{kDynamicDim, 2, 3, 4}, {kDynamicDim, 2, 5, 4}}},
      {"bij,bjk->bki", {{kDynamicDim, 3, 4}, {kDynamicDim, 4, 5}}},
      // The size-1 ellipsis dim of x0 broadcasts against x1's dynamic one.
      {"...ij,...jk->...ik", {{1, 3, 4}, {kDynamicDim, 4, 5}}},
  };
  for (const auto& [equation, shapes] : cases) {
    SCOPED_TRACE(equation);
    GraphBuilder b = einsum_graph(equation, shapes);
    const std::vector<uint8_t> bytes =
        builder::build_engine_from_graph(std::move(b.graph), BuilderConfig{});
    Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
    ExecutionContext context = engine.create_context();
    std::mt19937 rng(11);
    for (int64_t batch : {2, 3}) {
      std::vector<HostTensor> operands;
      std::vector<NamedTensor> named;
      for (size_t i = 0; i < shapes.size(); ++i) {
        Shape shape = shapes[i];
        if (shape[0] == kDynamicDim) shape[0] = batch;
        operands.push_back(random_tensor_f32(shape, rng));
      }
      for (size_t i = 0; i < operands.size(); ++i) {
        named.push_back(
            NamedTensor{input_name(i), TensorRef{operands[i].dtype, operands[i].shape,
                                                 const_cast<uint8_t*>(operands[i].bytes.data())}});
      }
      const std::vector<Tensor> outputs = context.execute(named);
      ASSERT_EQ(outputs.size(), 1u);
      HostTensor got(outputs[0].dtype, outputs[0].shape);
      got.bytes = outputs[0].bytes;
      expect_close(got, naive_einsum(equation, operands), 1e-5f);
    }
  }
}

// Runs shape inference on an Einsum graph and expects an error of `code` whose message holds
// every one of `parts`.
void expect_einsum_error(const std::string& equation, const std::vector<Shape>& shapes,
                         ErrorCode code, const std::vector<std::string>& parts,
                         DType dtype = DType::kFloat32, bool lower = false) {
  SCOPED_TRACE(equation);
  GraphBuilder b = einsum_graph(equation, shapes, dtype);
  try {
    infer_shapes(b.graph);
    if (lower) lower_einsum(b.graph);
    ADD_FAILURE() << "no error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), code) << error.what();
    const std::string message = error.what();
    EXPECT_NE(message.find("node 'einsum'"), std::string::npos) << message;
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << message << " lacks " << part;
    }
  }
}

TEST(EinsumInference, MalformedEquations) {
  const ErrorCode invalid = ErrorCode::kInvalidArgument;
  expect_einsum_error("", {{3}}, invalid, {"is empty"});
  expect_einsum_error("ij->i->j", {{3, 4}}, invalid, {"ij->i->j", "'-'"});
  expect_einsum_error("i.j->i", {{3, 4}}, invalid, {"'.'"});
  expect_einsum_error("...i...->i", {{3, 4}}, invalid, {"more than one '...'"});
  expect_einsum_error("i1->i", {{3, 4}}, invalid, {"'1'"});
  expect_einsum_error("ij->i,j", {{3, 4}}, invalid, {"','"});
  expect_einsum_error("ij->ii", {{3, 4}}, invalid, {"repeats the label 'i'"});
  expect_einsum_error("ij->k", {{3, 4}}, invalid, {"output label 'k'"});
  expect_einsum_error("...ij->ij", {{2, 3, 4}}, invalid, {"'...' standing for 1"});
}

TEST(EinsumInference, OperandsMustMatchTheTerms) {
  const ErrorCode invalid = ErrorCode::kInvalidArgument;
  expect_einsum_error("ij->i", {{3, 4}, {4, 5}}, invalid, {"1 input term(s)", "2 input(s)"});
  expect_einsum_error("ij,jk->ik", {{3, 4}}, invalid, {"2 input term(s)", "1 input(s)"});
  expect_einsum_error("ijk,jk->ik", {{3, 4}, {4, 5}}, invalid, {"input 0", "rank 2"});
  expect_einsum_error("...ijk->i", {{3, 4}}, invalid, {"rank 2", "'...'"});
  expect_einsum_error("ij,jk->ik", {{3, 4}, {5, 6}}, invalid, {"label 'j'", "4", "5"});
  expect_einsum_error("...ij,...jk->...ik", {{2, 3, 4}, {3, 4, 5}}, invalid, {"...[0]"});
  expect_einsum_error("ij,jk->ik", {{3, 1}, {4, 5}}, invalid, {"label 'j'"});  // no broadcast
}

TEST(EinsumInference, UnsupportedOperandsAndDtypes) {
  expect_einsum_error("i,i,i->i", {{3}, {3}, {3}}, ErrorCode::kUnsupported, {"3 operands"});
  expect_einsum_error("ij->i", {{3, 4}}, ErrorCode::kUnsupported, {"int32"}, DType::kInt32);
  GraphBuilder b;
  b.output(b.node("Einsum", "einsum", {b.input("x", {3})}));
  EXPECT_THROW(infer_shapes(b.graph), Error);
}

TEST(EinsumInference, ShapesIncludingBroadcastAndDynamicDims) {
  const auto inferred = [](const std::string& equation, const std::vector<Shape>& shapes) {
    GraphBuilder b = einsum_graph(equation, shapes);
    infer_shapes(b.graph);
    return b.graph.value(b.graph.outputs[0]).shape;
  };
  EXPECT_EQ(inferred("ij,jk", {{3, 4}, {4, 5}}), (Shape{3, 5}));
  EXPECT_EQ(inferred("ba,ca", {{3, 4}, {5, 4}}), (Shape{3, 5}));
  EXPECT_EQ(inferred("ji", {{3, 4}}), (Shape{4, 3}));  // implicit output is alphabetical
  EXPECT_EQ(inferred("...ij,...jk", {{2, 1, 3, 4}, {6, 4, 5}}), (Shape{2, 6, 3, 5}));
  EXPECT_EQ(inferred("...ij,...jk->...ik", {{1, 3, 4}, {kDynamicDim, 4, 5}}),
            (Shape{kDynamicDim, 3, 5}));
  EXPECT_EQ(inferred("ij,jk->ik", {{kDynamicDim, 4}, {kDynamicDim, 5}}), (Shape{kDynamicDim, 5}));
  EXPECT_EQ(inferred("ij,jk->ki", {{kDynamicDim, kDynamicDim}, {4, 5}}), (Shape{5, kDynamicDim}));
}

TEST(EinsumLoweringErrors, DiagonalIsUnsupported) {
  expect_einsum_error("ii->i", {{3, 3}}, ErrorCode::kUnsupported, {"ii->i", "diagonal"},
                      DType::kFloat32, true);
  expect_einsum_error("iij,jk->ik", {{3, 3, 4}, {4, 5}}, ErrorCode::kUnsupported, {"diagonal"},
                      DType::kFloat32, true);
}

TEST(EinsumLoweringErrors, MergingTwoDynamicDimsIsUnsupported) {
  expect_einsum_error("bsd,de->bse", {{kDynamicDim, kDynamicDim, 4}, {4, 5}},
                      ErrorCode::kUnsupported, {"bsd,de->bse", "more than one dynamic"},
                      DType::kFloat32, true);
}

}  // namespace
}  // namespace kiln::passes
