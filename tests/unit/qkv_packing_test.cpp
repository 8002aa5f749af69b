// QKV packing: FusedAttention's packed form (geometry, infer, CPU kernel) and the pass that merges
// self-attention's three projections into one MatMul whose output the attention reads in place.
// Rewritten graphs must compute what the separate projections computed (both evaluated node by
// node on the CPU kernels, and once through a CPU engine).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "builder/build_from_graph.hpp"
#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "kiln/runtime.hpp"
#include "ops/attention.hpp"
#include "passes/attention_fusion.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/matmul_fusion.hpp"
#include "passes/qkv_packing.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::evaluate;
using testing::expect_close;
using testing::GraphBuilder;
using testing::perm;
using testing::live_nodes;
using testing::make_tensor_f32;
using testing::make_tensor_i64;
using testing::random_inputs;
using testing::random_tensor_f32;
using testing::to_half;

constexpr int64_t kBatch = 2, kSeq = 5, kHeads = 3, kDim = 4, kEmbed = 6;
constexpr int64_t kWidth = kHeads * kDim;

// What makes a variant of the BERT-like block below differ from the packable one.
struct Variant {
  DType dtype = DType::kFloat32;
  bool mask = true;
  bool biases = true;           // every projection has a bias
  bool v_without_bias = false;  // only Q and K have one
  bool k_reads_other_input = false;
  bool v_weight_is_input = false;  // V's weight is not a constant
  bool q_also_output = false;      // Q's projection is read outside the attention too
};

// x [B, S, E] → three MatMul (+ bias Add) → Reshape [B, S, H, D] → Transpose to BHSD → scaled
// Q·Kᵀ + mask → Softmax → ·V → Transpose back → Reshape [B, S, H*D], as transformers exports it.
GraphBuilder bert_attention(const Variant& variant) {
  GraphBuilder b;
  std::mt19937 rng(17);
  const auto constant = [&](const std::string& name, Shape shape) {
    HostTensor t = random_tensor_f32(std::move(shape), rng);
    return b.constant(name, variant.dtype == DType::kFloat16 ? to_half(t) : t);
  };
  const ir::ValueId x = b.input("x", {kBatch, kSeq, kEmbed}, variant.dtype);
  const ir::ValueId x2 =
      variant.k_reads_other_input ? b.input("x2", {kBatch, kSeq, kEmbed}, variant.dtype) : x;
  const ir::ValueId mask =
      variant.mask ? b.input("mask", {kBatch, 1, 1, kSeq}, variant.dtype) : ir::kNoValue;
  ir::ValueId q_projection = ir::kNoValue;
  const auto project = [&](const std::string& name, ir::ValueId in, bool weight_is_input,
                           bool bias) {
    const ir::ValueId w = weight_is_input ? b.input(name + "_w", {kEmbed, kWidth}, variant.dtype)
                                          : constant(name + "_w", {kEmbed, kWidth});
    ir::ValueId y = b.node("MatMul", name + "_matmul", {in, w});
    if (bias) y = b.node("Add", name + "_add", {constant(name + "_b", {kWidth}), y});
    if (name == "q") q_projection = y;
    const ir::ValueId heads = b.node(
        "Reshape", name + "_heads",
        {y, b.constant(name + "_shape", make_tensor_i64({4}, {kBatch, kSeq, kHeads, kDim}))});
    return b.node("Transpose", name + "_t", {heads}, perm({0, 2, 1, 3}));
  };
  const ir::ValueId q = project("q", x, false, variant.biases);
  const ir::ValueId k = project("k", x2, false, variant.biases);
  const ir::ValueId v =
      project("v", x, variant.v_weight_is_input, variant.biases && !variant.v_without_bias);
  const ir::ValueId key_t = b.node("Transpose", "k_tt", {k}, perm({0, 1, 3, 2}));
  HostTensor scale = make_tensor_f32({}, {1.0f / std::sqrt(float(kDim))});
  const ir::ValueId scaled =
      b.node("Mul", "scaled",
             {b.node("MatMul", "scores", {q, key_t}),
              b.constant("scale", variant.dtype == DType::kFloat16 ? to_half(scale) : scale)});
  const ir::ValueId masked = variant.mask ? b.node("Add", "masked", {scaled, mask}) : scaled;
  const ir::ValueId probs =
      b.node("Softmax", "softmax", {masked}, attrs_of({{"axis", Attribute::of_int(-1)}}));
  const ir::ValueId context = b.node("Transpose", "context_t",
                                     {b.node("MatMul", "context", {probs, v})}, perm({0, 2, 1, 3}));
  b.output(b.node("Reshape", "y",
                  {context, b.constant("y_shape", make_tensor_i64({3}, {kBatch, kSeq, kWidth}))}));
  if (variant.q_also_output) b.output(q_projection);
  infer_shapes(b.graph);
  return b;
}

// The builder's passes up to attention fusion: biases into the MatMuls, then FusedAttention.
void fuse_for_attention(ir::Graph& graph) {
  fuse_matmul_epilogues(graph);
  infer_shapes(graph);
  ASSERT_EQ(fuse_attention(graph), 1);
  eliminate_dead_code(graph);
}

// Packs `b` (already fused for attention), checks it evaluates as before and returns the count.
int pack_and_compare(GraphBuilder& b, const std::map<std::string, HostTensor>& inputs,
                     float relative) {
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  const int packed = pack_qkv_projections(b.graph);
  eliminate_dead_code(b.graph);
  b.graph.verify();
  const std::vector<HostTensor> after = evaluate(b.graph, inputs);
  EXPECT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size() && i < after.size(); ++i)
    expect_close(after[i], before[i], relative);
  return packed;
}

TEST(QkvPackingPass, ThreeProjectionsBecomeOneGemmReadInPlace) {
  GraphBuilder b = bert_attention({});
  fuse_for_attention(b.graph);
  ASSERT_EQ(live_nodes(b.graph, "MatMul").size(), 3u);
  const auto inputs = random_inputs(b.graph, 5);
  EXPECT_EQ(pack_and_compare(b, inputs, 1e-5f), 1);

  const auto matmuls = live_nodes(b.graph, "MatMul");
  ASSERT_EQ(matmuls.size(), 1u);
  const ir::Node& gemm = *matmuls[0];
  ASSERT_EQ(gemm.inputs.size(), 3u);  // the bias stays in the GEMM (cuBLASLt's epilogue)
  EXPECT_EQ(gemm.inputs[0], b.graph.inputs[0]);
  EXPECT_EQ(b.graph.value(gemm.inputs[1]).shape, (Shape{kEmbed, 3 * kWidth}));
  EXPECT_EQ(b.graph.value(gemm.inputs[2]).shape, (Shape{3 * kWidth}));
  EXPECT_TRUE(b.graph.is_constant(gemm.inputs[1]));
  EXPECT_TRUE(b.graph.is_constant(gemm.inputs[2]));

  const auto attention = live_nodes(b.graph, "FusedAttention");
  ASSERT_EQ(attention.size(), 1u);
  const ir::Node& node = *attention[0];
  EXPECT_EQ(node.attrs.get_int("qkv_packed"), 1);
  EXPECT_FALSE(node.attrs.has("q_layout"));
  EXPECT_FALSE(node.attrs.has("k_transposed"));
  ASSERT_EQ(node.inputs.size(), 4u);
  EXPECT_EQ(node.inputs[1], ir::kNoValue);
  EXPECT_EQ(node.inputs[2], ir::kNoValue);
  EXPECT_EQ(b.graph.value(node.inputs[3]).name, "mask");
  EXPECT_EQ(b.graph.value(node.inputs[0]).shape, (Shape{kBatch, kSeq, 3, kHeads, kDim}));
  // The Reshape between them copies B and S (0) so dynamic dims would stay dynamic.
  const ir::Node& reshape =
      b.graph.nodes[static_cast<size_t>(b.graph.value(node.inputs[0]).producer)];
  ASSERT_EQ(reshape.op_type, "Reshape");
  EXPECT_EQ(reshape.inputs[0], gemm.outputs[0]);
  const HostTensor& target = *b.graph.value(reshape.inputs[1]).constant;
  EXPECT_EQ(read_indices(view_of(target)), (std::vector<int64_t>{0, 0, 3, kHeads, kDim}));
  // Nothing else is left of the projections: GEMM, Reshape, attention, output Reshape.
  EXPECT_EQ(b.graph.nodes.size(), 4u);

  // The shapes the pass gave are what shape inference gives.
  std::vector<Shape> shapes;
  for (const ir::Value& value : b.graph.values) shapes.push_back(value.shape);
  infer_shapes(b.graph);
  for (size_t i = 0; i < shapes.size(); ++i)
    EXPECT_EQ(b.graph.values[i].shape, shapes[i]) << b.graph.values[i].name;

  EXPECT_EQ(pack_qkv_projections(b.graph), 0);  // a packed node is not packed again
}

TEST(QkvPackingPass, ConcatenatedWeightsHoldQThenKThenVColumns) {
  GraphBuilder b = bert_attention({});
  fuse_for_attention(b.graph);
  std::vector<std::shared_ptr<const HostTensor>> weights;
  for (const char* name : {"q_w", "k_w", "v_w"}) {
    for (const ir::Value& value : b.graph.values) {
      if (value.name == name) weights.push_back(value.constant);
    }
  }
  ASSERT_EQ(weights.size(), 3u);
  ASSERT_EQ(pack_qkv_projections(b.graph), 1);
  const HostTensor& merged = *b.graph.value(live_nodes(b.graph, "MatMul")[0]->inputs[1]).constant;
  for (int64_t row = 0; row < kEmbed; ++row) {
    for (int64_t part = 0; part < 3; ++part) {
      for (int64_t col = 0; col < kWidth; ++col) {
        ASSERT_EQ(merged.data<float>()[row * 3 * kWidth + part * kWidth + col],
                  weights[static_cast<size_t>(part)]->data<float>()[row * kWidth + col])
            << "row " << row << " part " << part << " col " << col;
      }
    }
  }
}

TEST(QkvPackingPass, Float16WithoutMaskOrBiases) {
  Variant variant;
  variant.dtype = DType::kFloat16;
  variant.mask = false;
  variant.biases = false;
  GraphBuilder b = bert_attention(variant);
  fuse_for_attention(b.graph);
  EXPECT_EQ(pack_and_compare(b, random_inputs(b.graph, 9), 1e-2f), 1);
  const auto matmuls = live_nodes(b.graph, "MatMul");
  ASSERT_EQ(matmuls.size(), 1u);
  EXPECT_EQ(matmuls[0]->inputs.size(), 2u);
  EXPECT_EQ(b.graph.value(matmuls[0]->inputs[1]).dtype,
            DType::kFloat16);  // concatenated in float16
  const auto attention = live_nodes(b.graph, "FusedAttention");
  ASSERT_EQ(attention.size(), 1u);
  EXPECT_EQ(attention[0]->inputs.size(), 1u);  // only QKV: no mask to keep at index 3
}

TEST(QkvPackingPass, Float16WithBiasesMatches) {
  Variant variant;
  variant.dtype = DType::kFloat16;
  GraphBuilder b = bert_attention(variant);
  fuse_for_attention(b.graph);
  EXPECT_EQ(pack_and_compare(b, random_inputs(b.graph, 13), 1e-2f), 1);
  EXPECT_EQ(b.graph.value(live_nodes(b.graph, "MatMul")[0]->inputs[2]).dtype, DType::kFloat16);
}

TEST(QkvPackingPass, LeavesOtherProjectionsAlone) {
  struct Case {
    const char* name;
    Variant variant;
  };
  std::vector<Case> cases(4);
  cases[0] = {"different inputs", {}};
  cases[0].variant.k_reads_other_input = true;
  cases[1] = {"non-constant weight", {}};
  cases[1].variant.v_weight_is_input = true;
  cases[2] = {"projection read elsewhere", {}};
  cases[2].variant.q_also_output = true;
  cases[3] = {"bias on only two", {}};
  cases[3].variant.v_without_bias = true;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    GraphBuilder b = bert_attention(c.variant);
    fuse_for_attention(b.graph);
    const size_t nodes = b.graph.nodes.size();
    EXPECT_EQ(pack_and_compare(b, random_inputs(b.graph, 21), 0.0f), 0);
    EXPECT_EQ(b.graph.nodes.size(), nodes);
    EXPECT_EQ(live_nodes(b.graph, "MatMul").size(), 3u);
  }
}

TEST(QkvPackingPass, LeavesMismatchedWeightDtypesAlone) {
  GraphBuilder b = bert_attention({});
  fuse_for_attention(b.graph);
  // V's weight in float16 (an invalid graph for MatMul, but the pass must not merge it).
  for (ir::Value& value : b.graph.values) {
    if (value.name != "v_w") continue;
    value.constant = std::make_shared<const HostTensor>(to_half(*value.constant));
    value.dtype = DType::kFloat16;
  }
  EXPECT_EQ(pack_qkv_projections(b.graph), 0);
  EXPECT_EQ(live_nodes(b.graph, "MatMul").size(), 3u);
}

TEST(QkvPackingEngine, CpuEngineOfPackedGraphMatchesSeparateProjections) {
  GraphBuilder b = bert_attention({});
  fuse_for_attention(b.graph);
  const auto inputs = random_inputs(b.graph, 31);
  const std::vector<HostTensor> want = evaluate(b.graph, inputs);
  ASSERT_EQ(pack_qkv_projections(b.graph), 1);
  eliminate_dead_code(b.graph);

  const format::EngineModel model = builder::build_engine_model(b.graph, BuilderConfig{});
  int matmuls = 0;
  bool packed_attention = false;
  for (const format::Layer& layer : model.layers) {
    matmuls += layer.op == "MatMul";
    if (layer.op == "FusedAttention") {
      packed_attention = layer.attrs.get_int("qkv_packed") == 1 && layer.inputs.size() == 4 &&
                         layer.inputs[1] == -1 && layer.inputs[2] == -1 && layer.inputs[3] >= 0;
    }
  }
  EXPECT_EQ(matmuls, 1);
  EXPECT_TRUE(packed_attention);

  const std::vector<uint8_t> bytes =
      builder::build_engine_from_graph(std::move(b.graph), BuilderConfig{});
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext context = engine.create_context();
  std::vector<NamedTensor> named;
  for (const auto& [name, tensor] : inputs) {
    named.push_back(NamedTensor{
        name, TensorRef{tensor.dtype, tensor.shape, const_cast<uint8_t*>(tensor.bytes.data())}});
  }
  const std::vector<Tensor> outputs = context.execute(named);
  ASSERT_EQ(outputs.size(), 1u);
  HostTensor got(outputs[0].dtype, outputs[0].shape);
  got.bytes = outputs[0].bytes;
  expect_close(got, want[0], 1e-5f);
}

// ---- the packed form itself ---------------------------------------------------------------------

// QKV [B, S, 3, H, D] random, and Q, K, V [B, S, H, D] copied out of it.
struct PackedNumbers {
  HostTensor qkv, q, k, v, mask;
};

PackedNumbers packed_numbers(int64_t batch, int64_t seq, int64_t heads, int64_t dim,
                             uint32_t seed) {
  std::mt19937 rng(seed);
  PackedNumbers n;
  n.qkv = random_tensor_f32({batch, seq, 3, heads, dim}, rng, -2.0f, 2.0f);
  n.mask = random_tensor_f32({batch, 1, seq, seq}, rng, -4.0f, 0.0f);
  HostTensor* parts[3] = {&n.q, &n.k, &n.v};
  const int64_t width = heads * dim;
  for (int64_t part = 0; part < 3; ++part) {
    HostTensor& t = *parts[part];
    t = HostTensor(DType::kFloat32, {batch, seq, heads, dim});
    for (int64_t row = 0; row < batch * seq; ++row) {
      std::memcpy(t.data<float>() + row * width, n.qkv.data<float>() + (row * 3 + part) * width,
                  static_cast<size_t>(width) * sizeof(float));
    }
  }
  return n;
}

AttributeMap separate_attrs(const std::string& out_layout) {
  return attrs_of({{"scale", Attribute::of_float(0.35f)},
                   {"q_layout", Attribute::of_string("BSHD")},
                   {"k_layout", Attribute::of_string("BSHD")},
                   {"v_layout", Attribute::of_string("BSHD")},
                   {"out_layout", Attribute::of_string(out_layout)}});
}

AttributeMap packed_attrs(const std::string& out_layout) {
  return attrs_of({{"scale", Attribute::of_float(0.35f)},
                   {"qkv_packed", Attribute::of_int(1)},
                   {"out_layout", Attribute::of_string(out_layout)}});
}

HostTensor run_attention(const AttributeMap& attrs, std::vector<const HostTensor*> inputs) {
  std::vector<HostTensor> out =
      cpu::run_node_on_cpu("attention", "FusedAttention", attrs, inputs, 1);
  return std::move(out.at(0));
}

TEST(QkvPackingKernel, PackedEqualsSeparateOnTheSameNumbers) {
  const PackedNumbers n = packed_numbers(2, 7, 3, 5, 41);
  for (const std::string layout : {"BSHD", "BHSD"}) {
    SCOPED_TRACE(layout);
    const HostTensor separate = run_attention(separate_attrs(layout), {&n.q, &n.k, &n.v, &n.mask});
    const HostTensor packed =
        run_attention(packed_attrs(layout), {&n.qkv, nullptr, nullptr, &n.mask});
    ASSERT_EQ(packed.shape, separate.shape);
    EXPECT_EQ(packed.bytes, separate.bytes);  // the same arithmetic on the same numbers
    const HostTensor separate_unmasked = run_attention(separate_attrs(layout), {&n.q, &n.k, &n.v});
    const HostTensor packed_unmasked = run_attention(packed_attrs(layout), {&n.qkv});
    EXPECT_EQ(packed_unmasked.bytes, separate_unmasked.bytes);
    EXPECT_NE(packed_unmasked.bytes, packed.bytes);  // the mask did something
  }
}

TEST(QkvPackingKernel, Float16PackedEqualsSeparate) {
  const PackedNumbers n = packed_numbers(1, 9, 2, 16, 43);
  const HostTensor qkv = to_half(n.qkv), q = to_half(n.q), k = to_half(n.k), v = to_half(n.v),
                   mask = to_half(n.mask);
  const HostTensor separate = run_attention(separate_attrs("BSHD"), {&q, &k, &v, &mask});
  const HostTensor packed = run_attention(packed_attrs("BSHD"), {&qkv, nullptr, nullptr, &mask});
  EXPECT_EQ(packed.dtype, DType::kFloat16);
  EXPECT_EQ(packed.bytes, separate.bytes);
}

TEST(QkvPackingGeometry, PackedStridesAndOffsets) {
  const ops::AttentionGeometry g = ops::resolve_attention(
      "n", packed_attrs("BSHD"), Shape{2, 7, 3, 4, 16}, nullptr, nullptr, nullptr);
  EXPECT_TRUE(g.qkv_packed);
  EXPECT_EQ(g.batch, 2);
  EXPECT_EQ(g.query_length, 7);
  EXPECT_EQ(g.key_length, 7);
  EXPECT_EQ(g.heads, 4);
  EXPECT_EQ(g.head_dim, 16);
  EXPECT_EQ(g.value_dim, 16);
  const int64_t want[4] = {7 * 3 * 4 * 16, 16, 3 * 4 * 16, 1};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(g.q_strides[i], want[i]);
    EXPECT_EQ(g.k_strides[i], want[i]);
    EXPECT_EQ(g.v_strides[i], want[i]);
  }
  EXPECT_EQ(g.q_offset, 0);
  EXPECT_EQ(g.k_offset, 4 * 16);
  EXPECT_EQ(g.v_offset, 2 * 4 * 16);
  EXPECT_EQ(g.out_shape, (Shape{2, 7, 4, 16}));
  EXPECT_TRUE(ops::attention_fits_tensor_cores(DType::kFloat16, g));
  EXPECT_FALSE(ops::attention_fits_tensor_cores(DType::kFloat32, g));
  // The separate form's geometry has no offsets.
  const Shape bshd{2, 7, 4, 16};
  const ops::AttentionGeometry separate =
      ops::resolve_attention("n", separate_attrs("BSHD"), bshd, bshd, bshd, nullptr);
  EXPECT_FALSE(separate.qkv_packed);
  EXPECT_EQ(separate.k_offset, 0);
  EXPECT_EQ(separate.v_offset, 0);
}

void expect_error(const std::function<void()>& call, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(QkvPackingGeometry, RejectsBadPackedShapesAndInputs) {
  const AttributeMap packed = packed_attrs("BSHD");
  const Shape four{2, 7, 4, 16};
  expect_error([&] { ops::resolve_attention("n", packed, four, nullptr, nullptr, nullptr); },
               "QKV (input 0) must have a static shape of 5 dims in qkv_layout \"BSTHD\" with 3 along T, got "
               "[2, 7, 4, 16]");
  expect_error(
      [&] {
        ops::resolve_attention("n", packed, Shape{2, 7, 2, 4, 16}, nullptr, nullptr, nullptr);
      },
      "got [2, 7, 2, 4, 16]");
  expect_error(
      [&] {
        ops::resolve_attention("n", packed, Shape{2, kDynamicDim, 3, 4, 16}, nullptr, nullptr,
                               nullptr);
      },
      "must have a static shape");
  const Shape qkv{2, 7, 3, 4, 16};
  expect_error([&] { ops::resolve_attention("n", packed, qkv, &four, nullptr, nullptr); },
               "inputs 1 and 2 (K, V) must be absent");
  expect_error([&] { ops::resolve_attention("n", packed, qkv, nullptr, &four, nullptr); },
               "got V [2, 7, 4, 16]");
  const Shape bad_mask{2, 1, 7, 6};
  expect_error([&] { ops::resolve_attention("n", packed, qkv, nullptr, nullptr, &bad_mask); },
               "does not broadcast");
  AttributeMap with_layout = packed;
  with_layout.set("q_layout", Attribute::of_string("BSHD"));
  expect_error([&] { ops::resolve_attention("n", with_layout, qkv, nullptr, nullptr, nullptr); },
               "attribute 'q_layout' does not apply with qkv_packed = 1");
  AttributeMap transposed = packed;
  transposed.set("k_transposed", Attribute::of_int(1));
  expect_error([&] { ops::resolve_attention("n", transposed, qkv, nullptr, nullptr, nullptr); },
               "k_transposed must be 0");
  // The separate form still needs K and V.
  expect_error(
      [&] { ops::resolve_attention("n", separate_attrs("BSHD"), four, nullptr, &four, nullptr); },
      "input 1 (K) is missing");
  expect_error(
      [&] { ops::resolve_attention("n", separate_attrs("BSHD"), four, &four, nullptr, nullptr); },
      "input 2 (V) is missing");
}

TEST(QkvPackingGeometry, InferChecksEachFormsInputs) {
  const PackedNumbers n = packed_numbers(1, 3, 2, 4, 47);
  // K given next to a packed QKV.
  expect_error(
      [&] {
        run_attention(packed_attrs("BSHD"), {&n.qkv, &n.k, nullptr});
      },
      "node 'attention' (FusedAttention): with qkv_packed = 1 inputs 1 and 2 (K, V) must be "
      "absent");
  // The separate form with V left out.
  expect_error(
      [&] {
        run_attention(separate_attrs("BSHD"), {&n.q, &n.k, nullptr});
      },
      "input 2 (V) is missing");
  // A mask of another dtype than QKV.
  const HostTensor half_mask = to_half(n.mask);
  expect_error(
      [&] {
        run_attention(packed_attrs("BSHD"), {&n.qkv, nullptr, nullptr, &half_mask});
      },
      "input 3 has dtype float16 but QKV has float32");
}

}  // namespace
}  // namespace kiln::passes
