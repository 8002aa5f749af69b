// FusedAttention: its geometry checks, the CPU kernel, and the attention fusion pass, whose fused
// graphs must compute what the exported MatMul / scale / mask / Softmax / NaN guard / MatMul chain
// computed (both evaluated node by node on the CPU kernels).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "ops/attention.hpp"
#include "passes/attention_fusion.hpp"
#include "passes/dead_code_elimination.hpp"
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
using testing::to_half;

constexpr int64_t kBatch = 2, kHeads = 3, kSeq = 5, kDim = 4;

ir::ValueId scalar(GraphBuilder& b, const std::string& name, float value, DType dtype) {
  HostTensor t = make_tensor_f32({}, {value});
  return b.constant(name, dtype == DType::kFloat16 ? to_half(t) : t);
}

ir::ValueId shape_constant(GraphBuilder& b, const std::string& name, std::vector<int64_t> dims) {
  const auto rank = static_cast<int64_t>(dims.size());
  return b.constant(name, make_tensor_i64({rank}, dims));
}

// The chain torch.onnx exports for BERT's scaled_dot_product_attention: BSHD projections
// transposed to BHSD, both Q and Kᵀ scaled by d^-1/4, Kᵀ built as Reshape/Transpose/Reshape, an
// additive mask, a NaN guard after the softmax and the output transposed back to BSHD.
GraphBuilder exported_attention(DType dtype) {
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {kBatch, kSeq, kHeads, kDim}, dtype);
  const ir::ValueId k = b.input("k", {kBatch, kSeq, kHeads, kDim}, dtype);
  const ir::ValueId v = b.input("v", {kBatch, kSeq, kHeads, kDim}, dtype);
  const ir::ValueId mask = b.input("mask", {kBatch, 1, 1, kSeq}, dtype);
  const ir::ValueId root_scale = scalar(b, "root_scale", 1.0f / std::sqrt(std::sqrt(float(kDim))), dtype);
  const ir::ValueId qt = b.node("Transpose", "q_t", {q}, perm({0, 2, 1, 3}));
  const ir::ValueId kt = b.node("Transpose", "k_t", {k}, perm({0, 2, 1, 3}));
  const ir::ValueId vt = b.node("Transpose", "v_t", {v}, perm({0, 2, 1, 3}));
  const ir::ValueId flat = b.node("Reshape", "k_flat", {kt, shape_constant(b, "flat_shape", {kBatch * kHeads, kSeq, kDim})});
  const ir::ValueId swapped = b.node("Transpose", "k_swap", {flat}, perm({0, 2, 1}));
  const ir::ValueId key_t = b.node("Reshape", "k_back", {swapped, shape_constant(b, "back_shape", {kBatch, kHeads, kDim, kSeq})});
  const ir::ValueId qs = b.node("Mul", "q_scaled", {qt, root_scale});
  const ir::ValueId ks = b.node("Mul", "k_scaled", {key_t, root_scale});
  const ir::ValueId scores = b.node("MatMul", "scores", {qs, ks});
  const ir::ValueId masked = b.node("Add", "masked", {scores, mask});
  const ir::ValueId probs = b.node("Softmax", "softmax", {masked}, attrs_of({{"axis", Attribute::of_int(-1)}}));
  const ir::ValueId nan = b.node("IsNaN", "is_nan", {probs});
  const ir::ValueId guarded = b.node("Where", "guard", {nan, scalar(b, "zero", 0.0f, dtype), probs});
  const ir::ValueId context = b.node("MatMul", "context", {guarded, vt});
  b.output(b.node("Transpose", "context_t", {context}, perm({0, 2, 1, 3})));
  infer_shapes(b.graph);
  return b;
}

// Fuses, removes dead nodes and compares every output with the unfused graph on `inputs`.
int fuse_and_compare(GraphBuilder& b, const std::map<std::string, HostTensor>& inputs, float relative) {
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  const int fused = fuse_attention(b.graph);
  eliminate_dead_code(b.graph);
  b.graph.verify();
  const std::vector<HostTensor> after = evaluate(b.graph, inputs);
  EXPECT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) expect_close(after[i], before[i], relative);
  return fused;
}

// Masks every key of batch 1 (-inf), so its softmax rows are NaN and the guard zeroes them.
void mask_all_keys_of_second_batch(HostTensor& mask) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < kSeq; ++j) {
    const int64_t i = kSeq + j;
    if (mask.dtype == DType::kFloat16) {
      mask.data<uint16_t>()[i] = float_to_half(minus_inf);
    } else {
      mask.data<float>()[i] = minus_inf;
    }
  }
}

TEST(AttentionFusionPass, ExportedBertAttentionBecomesOneNode) {
  GraphBuilder b = exported_attention(DType::kFloat32);
  auto inputs = random_inputs(b.graph, 7);
  mask_all_keys_of_second_batch(inputs.at("mask"));
  EXPECT_EQ(fuse_and_compare(b, inputs, 1e-5f), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 1u);
  const ir::Node& node = *live[0];
  EXPECT_EQ(node.op_type, "FusedAttention");
  EXPECT_EQ(node.name, "context_t");
  EXPECT_EQ(node.inputs.size(), 4u);
  EXPECT_EQ(node.attrs.get_string("q_layout"), "BSHD");
  EXPECT_EQ(node.attrs.get_string("k_layout"), "BSHD");
  EXPECT_EQ(node.attrs.get_string("v_layout"), "BSHD");
  EXPECT_EQ(node.attrs.get_string("out_layout"), "BSHD");
  EXPECT_EQ(node.attrs.get_int("k_transposed"), 0);
  EXPECT_EQ(node.attrs.get_int("nan_to_zero"), 1);
  EXPECT_NEAR(node.attrs.get_float("scale"), 0.5f, 1e-6f);

  // The fully masked batch came out as zeros, as the guard makes it.
  const std::vector<HostTensor> out = evaluate(b.graph, inputs);
  const int64_t per_batch = kSeq * kHeads * kDim;
  for (int64_t i = per_batch; i < 2 * per_batch; ++i) ASSERT_EQ(out[0].data<float>()[i], 0.0f);
}

TEST(AttentionFusionPass, Float16ChainMatchesUnfusedFloat16) {
  GraphBuilder b = exported_attention(DType::kFloat16);
  auto inputs = random_inputs(b.graph, 11);
  mask_all_keys_of_second_batch(inputs.at("mask"));
  // Both compute in float32 on the CPU; the unfused chain rounds P and the scaled Q/Kᵀ to float16.
  EXPECT_EQ(fuse_and_compare(b, inputs, 1e-2f), 1);
}

TEST(AttentionFusionPass, PlainBhsdWithDivisionAndTransposedKey) {
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {kBatch, kHeads, kSeq, kDim});
  const ir::ValueId k = b.input("k", {kBatch, kHeads, kSeq + 2, kDim});
  const ir::ValueId v = b.input("v", {kBatch, kHeads, kSeq + 2, kDim + 2});
  const ir::ValueId key_t = b.node("Transpose", "k_t", {k}, perm({0, 1, 3, 2}));
  const ir::ValueId scores = b.node("MatMul", "scores", {q, key_t});
  const ir::ValueId scaled = b.node("Div", "scaled", {scores, scalar(b, "root_d", 2.0f, DType::kFloat32)});
  const ir::ValueId probs = b.node("Softmax", "softmax", {scaled}, attrs_of({{"axis", Attribute::of_int(3)}}));
  b.output(b.node("MatMul", "context", {probs, v}));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, random_inputs(b.graph, 3), 1e-5f), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0]->inputs.size(), 3u);  // no mask
  EXPECT_EQ(live[0]->attrs.get_string("q_layout"), "BHSD");
  EXPECT_EQ(live[0]->attrs.get_int("k_transposed"), 0);
  EXPECT_EQ(live[0]->attrs.get_int("nan_to_zero"), 0);
  EXPECT_NEAR(live[0]->attrs.get_float("scale"), 0.5f, 1e-7f);
}

TEST(AttentionFusionPass, KeyGivenTransposedIsReadAsIs) {
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {kBatch, kHeads, kSeq, kDim});
  const ir::ValueId key_t = b.input("key_t", {kBatch, kHeads, kDim, kSeq});
  const ir::ValueId v = b.input("v", {kBatch, kHeads, kSeq, kDim});
  const ir::ValueId mask = b.input("mask", {kSeq, kSeq});
  const ir::ValueId scores = b.node("MatMul", "scores", {q, key_t});
  const ir::ValueId masked = b.node("Add", "masked", {mask, scores});  // mask on the left
  const ir::ValueId probs = b.node("Softmax", "softmax", {masked});
  b.output(b.node("MatMul", "context", {probs, v}));
  infer_shapes(b.graph);
  EXPECT_EQ(fuse_and_compare(b, random_inputs(b.graph, 5), 1e-5f), 1);
  const auto live = live_nodes(b.graph);
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0]->attrs.get_int("k_transposed"), 1);
  EXPECT_EQ(live[0]->inputs[3], mask);
}

// nn.MultiheadAttention's exported chain: seq-first projections [S, B, H*D] viewed as
// [S, B*H, D] and transposed to [B*H, S, D] (rank 3), Q and V reshaped to [B, H, S, D], Kᵀ as
// Reshape(Transpose(0,2,1)) of the rank-3 K, both scaled by d^-1/4.
GraphBuilder multihead_attention(DType dtype, int64_t dim) {
  GraphBuilder b;
  const ir::ValueId root_scale = scalar(b, "root_scale", 1.0f / std::sqrt(std::sqrt(float(dim))), dtype);
  const auto heads = [&](const std::string& name) {
    const ir::ValueId x = b.input(name, {kSeq, kBatch, kHeads * dim}, dtype);
    const ir::ValueId split =
        b.node("Reshape", name + "_split", {x, shape_constant(b, name + "_split_shape", {kSeq, kBatch * kHeads, dim})});
    return b.node("Transpose", name + "_bh_first", {split}, perm({1, 0, 2}));
  };
  const auto as_bhsd = [&](ir::ValueId flat, const std::string& name) {
    return b.node("Reshape", name + "_bhsd", {flat, shape_constant(b, name + "_bhsd_shape", {kBatch, kHeads, kSeq, dim})});
  };
  const ir::ValueId q = b.node("Mul", "q_scaled", {as_bhsd(heads("q"), "q"), root_scale});
  const ir::ValueId k_swapped = b.node("Transpose", "k_swap", {heads("k")}, perm({0, 2, 1}));
  const ir::ValueId key_t =
      b.node("Reshape", "k_back", {k_swapped, shape_constant(b, "k_back_shape", {kBatch, kHeads, dim, kSeq})});
  const ir::ValueId k = b.node("Mul", "k_scaled", {key_t, root_scale});
  const ir::ValueId probs = b.node("Softmax", "softmax", {b.node("MatMul", "scores", {q, k})});
  b.output(b.node("MatMul", "context", {probs, as_bhsd(heads("v"), "v")}));
  infer_shapes(b.graph);
  return b;
}

TEST(AttentionFusionPass, MultiheadAttentionRankThreeKeyIsReadAsAView) {
  GraphBuilder b = multihead_attention(DType::kFloat32, kDim);
  EXPECT_EQ(fuse_and_compare(b, random_inputs(b.graph, 13), 1e-5f), 1);
  const ir::Node* fused = nullptr;
  for (const ir::Node* node : live_nodes(b.graph)) {
    EXPECT_NE(node->op_type, "Softmax");
    if (node->op_type == "FusedAttention") fused = node;
  }
  ASSERT_NE(fused, nullptr);
  EXPECT_EQ(fused->attrs.get_int("k_transposed"), 0);
  EXPECT_NEAR(fused->attrs.get_float("scale"), 0.5f, 1e-6f);
  // Q, K and V are the sequence-first projections read in place as [S, B, H, D]: none of the
  // transposes to [B*H, S, D] (or of K) is left.
  EXPECT_EQ(b.graph.value(fused->inputs[1]).shape, (Shape{kSeq, kBatch, kHeads, kDim}));
  for (const char* layout : {"q_layout", "k_layout", "v_layout"})
    EXPECT_EQ(fused->attrs.get_string(layout), "SBHD") << layout;
  EXPECT_EQ(live_nodes(b.graph, "Transpose").size(), 0u);
}

TEST(AttentionFusionPass, MultiheadAttentionFusesForTensorCoresInHalf) {
  GraphBuilder b = multihead_attention(DType::kFloat16, 16);
  EXPECT_EQ(fuse_attention(b.graph, /*tensor_core_shapes_only=*/true), 1);
  eliminate_dead_code(b.graph);
  b.graph.verify();
  GraphBuilder reference = multihead_attention(DType::kFloat16, 16);
  const auto inputs = random_inputs(reference.graph, 17);
  const std::vector<HostTensor> want = evaluate(reference.graph, inputs);
  const std::vector<HostTensor> got = evaluate(b.graph, inputs);
  ASSERT_EQ(got.size(), 1u);
  expect_close(got[0], want[0], 1e-2f);
}

TEST(AttentionFusionPass, LeavesChainsWithOutsideReadersAlone) {
  for (int variant = 0; variant < 3; ++variant) {
    GraphBuilder b;
    const ir::ValueId q = b.input("q", {kBatch, kHeads, kSeq, kDim});
    const ir::ValueId key_t = b.input("key_t", {kBatch, kHeads, kDim, kSeq});
    const ir::ValueId v = b.input("v", {kBatch, kHeads, kSeq, kDim});
    const ir::ValueId scores = b.node("MatMul", "scores", {q, key_t});
    const int64_t axis = variant == 2 ? 2 : -1;
    const ir::ValueId probs = b.node("Softmax", "softmax", {scores}, attrs_of({{"axis", Attribute::of_int(axis)}}));
    b.output(b.node("MatMul", "context", {probs, v}));
    if (variant == 0) b.output(probs);   // the probabilities are wanted too
    if (variant == 1) b.output(scores);  // so are the scores
    infer_shapes(b.graph);
    EXPECT_EQ(fuse_attention(b.graph), 0) << "variant " << variant;
  }
}

// A plain fp16 chain with head dim `dim`, K given either as a transpose of K or already transposed.
GraphBuilder half_attention(int64_t dim, bool key_given_transposed) {
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {kBatch, kHeads, kSeq, dim}, DType::kFloat16);
  const ir::ValueId v = b.input("v", {kBatch, kHeads, kSeq, dim}, DType::kFloat16);
  ir::ValueId key_t;
  if (key_given_transposed) {
    key_t = b.input("key_t", {kBatch, kHeads, dim, kSeq}, DType::kFloat16);
  } else {
    const ir::ValueId k = b.input("k", {kBatch, kHeads, kSeq, dim}, DType::kFloat16);
    key_t = b.node("Transpose", "k_t", {k}, perm({0, 1, 3, 2}));
  }
  const ir::ValueId probs = b.node("Softmax", "softmax", {b.node("MatMul", "scores", {q, key_t})});
  b.output(b.node("MatMul", "context", {probs, v}));
  infer_shapes(b.graph);
  return b;
}

TEST(AttentionFusionPass, TensorCoreOnlyFusesWhatTheCudaKernelRuns) {
  GraphBuilder fits = half_attention(16, false);
  EXPECT_EQ(fuse_attention(fits.graph, /*tensor_core_shapes_only=*/true), 1);
  GraphBuilder odd_dim = half_attention(8, false);
  EXPECT_EQ(fuse_attention(odd_dim.graph, true), 0);
  GraphBuilder transposed_key = half_attention(16, true);
  EXPECT_EQ(fuse_attention(transposed_key.graph, true), 0);
  GraphBuilder float32 = exported_attention(DType::kFloat32);
  EXPECT_EQ(fuse_attention(float32.graph, true), 0);
  // Without the restriction (the CPU reference) each of them fuses.
  EXPECT_EQ(fuse_attention(odd_dim.graph, false), 1);
  EXPECT_EQ(fuse_attention(transposed_key.graph, false), 1);
}

TEST(AttentionGeometry, RejectsMismatchedShapesAndLayouts) {
  const AttributeMap scale = attrs_of({{"scale", Attribute::of_float(0.5f)}});
  const Shape q{2, 3, 5, 4};
  const Shape mask_bad{2, 2, 5, 5};
  const auto expect_error = [](const auto& call, const std::string& fragment) {
    try {
      call();
      ADD_FAILURE() << "expected an error containing '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error([&] { ops::resolve_attention("n", scale, q, {2, 3, 5, 8}, q, nullptr); }, "K [2, 3, 5, 8]");
  expect_error([&] { ops::resolve_attention("n", scale, q, q, {2, 3, 6, 4}, nullptr); }, "V [2, 3, 6, 4]");
  expect_error([&] { ops::resolve_attention("n", scale, q, q, q, &mask_bad); }, "does not broadcast");
  expect_error([&] { ops::resolve_attention("n", AttributeMap{}, q, q, q, nullptr); }, "'scale' is required");
  AttributeMap bad_layout = scale;
  bad_layout.set("q_layout", Attribute::of_string("BSSD"));
  expect_error([&] { ops::resolve_attention("n", bad_layout, q, q, q, nullptr); }, "q_layout");
  const ops::AttentionGeometry g = ops::resolve_attention("n", scale, q, q, {2, 3, 5, 7}, nullptr);
  EXPECT_EQ(g.out_shape, (Shape{2, 3, 5, 7}));
  EXPECT_EQ(g.value_dim, 7);
}

TEST(AttentionGeometry, PackedQkvTakesItsLayoutFromQkvLayout) {
  AttributeMap attrs = attrs_of({{"scale", Attribute::of_float(0.5f)}, {"qkv_packed", Attribute::of_int(1)}});
  // Default [B, S, 3, H, D] = [2, 5, 3, 4, 8]: a position holds q, k and v of every head.
  const ops::AttentionGeometry timm = ops::resolve_attention("n", attrs, {2, 5, 3, 4, 8}, nullptr, nullptr, nullptr);
  EXPECT_EQ(timm.batch, 2);
  EXPECT_EQ(timm.query_length, 5);
  EXPECT_EQ(timm.heads, 4);
  EXPECT_EQ((std::vector<int64_t>(timm.q_strides, timm.q_strides + 4)), (std::vector<int64_t>{480, 8, 96, 1}));
  EXPECT_EQ(timm.k_offset, 32);
  EXPECT_EQ(timm.v_offset, 64);
  // nn.MultiheadAttention's [S, B, 3, H, D] = [5, 2, 3, 4, 8].
  attrs.set("qkv_layout", Attribute::of_string("SBTHD"));
  const ops::AttentionGeometry mha = ops::resolve_attention("n", attrs, {5, 2, 3, 4, 8}, nullptr, nullptr, nullptr);
  EXPECT_EQ(mha.batch, 2);
  EXPECT_EQ(mha.query_length, 5);
  EXPECT_EQ((std::vector<int64_t>(mha.q_strides, mha.q_strides + 4)), (std::vector<int64_t>{96, 8, 192, 1}));
  EXPECT_EQ(mha.k_offset, 32);
  EXPECT_EQ(mha.v_offset, 64);
  // T last: q, k and v of one feature are adjacent.
  attrs.set("qkv_layout", Attribute::of_string("BHSDT"));
  const ops::AttentionGeometry t_last = ops::resolve_attention("n", attrs, {2, 4, 5, 8, 3}, nullptr, nullptr, nullptr);
  EXPECT_EQ((std::vector<int64_t>(t_last.q_strides, t_last.q_strides + 4)), (std::vector<int64_t>{480, 120, 24, 3}));
  EXPECT_EQ(t_last.k_offset, 1);
  EXPECT_FALSE(ops::attention_fits_tensor_cores(DType::kFloat16, t_last));  // D must be innermost there
  const auto expect_refused = [&](const char* layout, const Shape& qkv, const std::string& fragment) {
    attrs.set("qkv_layout", Attribute::of_string(layout));
    try {
      ops::resolve_attention("n", attrs, qkv, nullptr, nullptr, nullptr);
      ADD_FAILURE() << layout << " " << shape_to_string(qkv) << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  for (const char* bad : {"BSTH", "BSTHH", "BSXHD"}) expect_refused(bad, {2, 5, 3, 4, 8}, "qkv_layout");
  expect_refused("SBTHD", {5, 3, 2, 4, 8}, "3 along T");  // T is dim 2, of 2
}

}  // namespace
}  // namespace kiln::passes
