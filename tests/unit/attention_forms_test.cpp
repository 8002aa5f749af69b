// The attention fusion's pattern form by form (passes/attention_fusion.hpp): each graph is fused
// and must compute what it computed unfused (both run node by node on the CPU kernels, the
// FusedAttention CPU kernel being the reference for the CUDA one), with the attributes that
// describe the form; and the near misses stay unfused.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "passes/attention_fusion.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::evaluate;
using testing::expect_close;
using testing::GraphBuilder;
using testing::live_nodes;
using testing::make_tensor_f32;
using testing::make_tensor_i64;
using testing::perm;
using testing::random_inputs;
using testing::to_half;

constexpr int64_t B = 2, H = 3, S = 6, D = 16;
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

HostTensor in_dtype(HostTensor t, DType dtype) {
  return dtype == DType::kFloat16 ? to_half(t) : t;
}

ir::ValueId scalar(GraphBuilder& b, const std::string& name, float value,
                   DType dtype = DType::kFloat32) {
  return b.constant(name, in_dtype(make_tensor_f32({}, {value}), dtype));
}

ir::ValueId ints(GraphBuilder& b, const std::string& name, std::vector<int64_t> values,
                 bool scalar = false) {
  const auto size = static_cast<int64_t>(values.size());
  return b.constant(name, make_tensor_i64(scalar ? Shape{} : Shape{size}, values));
}

// [S, S] causal additive mask: -inf above the diagonal.
HostTensor causal_mask(DType dtype) {
  std::vector<float> values;
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j) values.push_back(j > i ? kMinusInf : 0.0f);
  return in_dtype(make_tensor_f32({S, S}, values), dtype);
}

// Q·Kᵀ·scale of BHSD inputs q, k (Kᵀ as Transpose(0,1,3,2)).
ir::ValueId scaled_scores(GraphBuilder& b, ir::ValueId q, ir::ValueId k,
                          DType dtype = DType::kFloat32) {
  const ir::ValueId key_t = b.node("Transpose", "k_t", {k}, perm({0, 1, 3, 2}));
  const ir::ValueId scores = b.node("MatMul", "scores", {q, key_t});
  return b.node("Mul", "scaled", {scores, scalar(b, "scale", 0.25f, dtype)});
}

struct Fused {
  int count = 0;
  const ir::Node* node = nullptr;
};

// Fuses (CPU rules, or CUDA's with `tensor_cores`), removes dead nodes and compares every output
// with the unfused graph on `inputs`.
Fused fuse_and_compare(GraphBuilder& b, const std::map<std::string, HostTensor>& inputs,
                       float relative, bool tensor_cores = false) {
  const std::vector<HostTensor> before = evaluate(b.graph, inputs);
  Fused fused;
  fused.count = fuse_attention(b.graph, tensor_cores);
  eliminate_dead_code(b.graph);
  b.graph.verify();
  const std::vector<HostTensor> after = evaluate(b.graph, inputs);
  EXPECT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size() && i < after.size(); ++i)
    expect_close(after[i], before[i], relative);
  const auto nodes = live_nodes(b.graph, "FusedAttention");
  if (!nodes.empty()) fused.node = nodes[0];
  if (fused.count > 0) {
    EXPECT_TRUE(live_nodes(b.graph, "Softmax").empty());
    EXPECT_TRUE(live_nodes(b.graph, "MatMul").empty());
  }
  return fused;
}

TEST(AttentionForms, RankOneMaskAndScaleOnTheScores) {
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {B, H, S, D}), k = b.input("k", {B, H, S, D}),
                    v = b.input("v", {B, H, S, D});
  const ir::ValueId mask = b.input("mask", {S});
  const ir::ValueId masked = b.node("Add", "masked", {scaled_scores(b, q, k), mask});
  b.output(b.node("MatMul", "context", {b.node("Softmax", "softmax", {masked}), v}));
  infer_shapes(b.graph);
  const Fused f = fuse_and_compare(b, random_inputs(b.graph, 1), 1e-5f);
  ASSERT_EQ(f.count, 1);
  EXPECT_FLOAT_EQ(f.node->attrs.get_float("scale"), 0.25f);
  EXPECT_EQ(f.node->inputs.at(3), mask);
}

TEST(AttentionForms, CastsAroundSoftmaxAndDropoutInHalfFuseForTensorCores) {
  // What the dynamo exporter writes for fp16 models: the softmax in float32 and back.
  GraphBuilder b;
  const DType half = DType::kFloat16;
  const ir::ValueId q = b.input("q", {B, H, S, D}, half), k = b.input("k", {B, H, S, D}, half),
                    v = b.input("v", {B, H, S, D}, half);
  const ir::ValueId wide =
      b.node("Cast", "to_float", {scaled_scores(b, q, k, half)},
             attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(DType::kFloat32))}}));
  const ir::ValueId probs =
      b.node("Softmax", "softmax", {wide}, attrs_of({{"axis", Attribute::of_int(3)}}));
  const ir::ValueId narrow =
      b.node("Cast", "to_half", {probs},
             attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(half))}}));
  const ir::ValueId dropped = b.node("Dropout", "dropout", {narrow, scalar(b, "ratio", 0.1f)});
  b.output(b.node("MatMul", "context", {dropped, v}));
  infer_shapes(b.graph);
  const Fused f = fuse_and_compare(b, random_inputs(b.graph, 2), 1e-2f, /*tensor_cores=*/true);
  ASSERT_EQ(f.count, 1);
  EXPECT_EQ(live_nodes(b.graph).size(), 1u);
}

TEST(AttentionForms, SeveralMasksAreSummedIntoOne) {
  // A padding mask and a causal pattern, added one after the other (and the scale between them
  // and the product).
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {B, H, S, D}), k = b.input("k", {B, H, S, D}),
                    v = b.input("v", {B, H, S, D});
  const ir::ValueId padding = b.input("padding", {B, 1, 1, S});
  const ir::ValueId causal = b.constant("causal", causal_mask(DType::kFloat32));
  const ir::ValueId padded = b.node("Add", "padded", {padding, scaled_scores(b, q, k)});
  const ir::ValueId masked = b.node("Add", "masked", {padded, causal});
  b.output(b.node("MatMul", "context", {b.node("Softmax", "softmax", {masked}), v}));
  infer_shapes(b.graph);
  const Fused f = fuse_and_compare(b, random_inputs(b.graph, 3), 1e-5f);
  ASSERT_EQ(f.count, 1);
  const ir::ValueId mask = f.node->inputs.at(3);
  EXPECT_EQ(b.graph.value(mask).shape, (Shape{B, 1, S, S}));
  EXPECT_EQ(live_nodes(b.graph, "Add").size(), 1u);  // padding + causal, the fused node's mask
}

// A bool mask made additive, with every key of batch 1 masked; `one_minus` spells it
// (1 - m) · -10000 instead of Where(m, 0, -inf).
GraphBuilder boolean_mask_attention(bool one_minus) {
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {B, H, S, D}), k = b.input("k", {B, H, S, D}),
                    v = b.input("v", {B, H, S, D});
  ir::ValueId additive;
  if (one_minus) {
    const ir::ValueId keep = b.input("keep", {B, 1, 1, S});  // 1 keep, 0 drop
    const ir::ValueId dropped = b.node("Sub", "dropped", {scalar(b, "one", 1.0f), keep});
    additive = b.node("Mul", "additive", {dropped, scalar(b, "large_negative", -10000.0f)});
  } else {
    HostTensor keep(DType::kBool, {B, 1, S, S});
    for (int64_t i = 0; i < keep.numel(); ++i) keep.data<uint8_t>()[i] = i < S * S && (i % 3) != 1;
    additive = b.node(
        "Where", "additive",
        {b.constant("keep", keep), scalar(b, "zero", 0.0f), scalar(b, "minus_inf", kMinusInf)});
  }
  const ir::ValueId probs =
      b.node("Softmax", "softmax", {b.node("Add", "masked", {scaled_scores(b, q, k), additive})});
  const ir::ValueId nan = b.node("IsNaN", "is_nan", {probs});
  const ir::ValueId guarded = b.node("Where", "guard", {nan, scalar(b, "guard_zero", 0.0f), probs});
  b.output(b.node("MatMul", "context", {guarded, v}));
  infer_shapes(b.graph);
  return b;
}

TEST(AttentionForms, BooleanMaskThroughWhereWithFullyMaskedRows) {
  GraphBuilder b = boolean_mask_attention(false);
  const auto inputs = random_inputs(b.graph, 4);
  const Fused f = fuse_and_compare(b, inputs, 1e-5f);
  ASSERT_EQ(f.count, 1);
  EXPECT_EQ(f.node->attrs.get_int("nan_to_zero"), 1);
  // Batch 1 has no key left: its rows are zeros, as the guard makes them.
  const HostTensor out = evaluate(b.graph, inputs)[0];
  for (int64_t i = out.numel() / 2; i < out.numel(); ++i) ASSERT_EQ(out.data<float>()[i], 0.0f);
}

TEST(AttentionForms, BooleanMaskAsOneMinusMaskTimesLargeNegative) {
  GraphBuilder b = boolean_mask_attention(true);
  auto inputs = random_inputs(b.graph, 5);
  HostTensor& keep = inputs.at("keep");
  for (int64_t i = 0; i < keep.numel(); ++i) keep.data<float>()[i] = (i % 4) == 3 ? 0.0f : 1.0f;
  EXPECT_EQ(fuse_and_compare(b, inputs, 1e-5f).count, 1);
}

// timm: qkv = x [B, S, 3·H·D] → Reshape [B, S, 3, H, D] → Transpose(2,0,3,1,4) → unbind (Gather,
// or Split + Squeeze as the TorchScript exporter writes it) → attention → Transpose(0,2,1,3) →
// Reshape [B, S, H·D].
GraphBuilder timm_attention(bool split, DType dtype) {
  GraphBuilder b;
  const ir::ValueId x = b.input("qkv", {B, S, 3 * H * D}, dtype);
  const ir::ValueId heads =
      b.node("Reshape", "heads", {x, ints(b, "heads_shape", {B, S, 3, H, D})});
  const ir::ValueId permuted = b.node("Transpose", "permuted", {heads}, perm({2, 0, 3, 1, 4}));
  std::vector<ir::ValueId> qkv;
  if (split) {
    const std::vector<ir::ValueId> parts =
        b.node_n("Split", "unbind", {permuted, ints(b, "sizes", {1, 1, 1})}, 3,
                 attrs_of({{"axis", Attribute::of_int(0)}}));
    for (int i = 0; i < 3; ++i)
      qkv.push_back(
          b.node("Squeeze", "squeeze" + std::to_string(i),
                 {parts[static_cast<size_t>(i)], ints(b, "axis" + std::to_string(i), {0})}));
  } else {
    for (int i = 0; i < 3; ++i)
      qkv.push_back(b.node("Gather", "select" + std::to_string(i),
                           {permuted, ints(b, "index" + std::to_string(i), {i}, true)}));
  }
  const ir::ValueId probs = b.node("Softmax", "softmax", {scaled_scores(b, qkv[0], qkv[1], dtype)});
  const ir::ValueId context = b.node("MatMul", "context", {probs, qkv[2]});
  const ir::ValueId merged = b.node("Transpose", "merged", {context}, perm({0, 2, 1, 3}));
  b.output(b.node("Reshape", "y", {merged, ints(b, "y_shape", {B, S, H * D})}));
  infer_shapes(b.graph);
  return b;
}

TEST(AttentionForms, TimmQkvUnbindIsReadPackedInPlace) {
  for (bool split : {false, true}) {
    GraphBuilder b = timm_attention(split, DType::kFloat16);
    const Fused f = fuse_and_compare(b, random_inputs(b.graph, 6), 1e-2f, /*tensor_cores=*/true);
    ASSERT_EQ(f.count, 1) << "split " << split;
    EXPECT_EQ(f.node->attrs.get_int("qkv_packed"), 1);
    EXPECT_EQ(f.node->attrs.get_string("out_layout"), "BSHD");
    EXPECT_EQ(b.graph.value(f.node->inputs[0]).shape, (Shape{B, S, 3, H, D}));
    EXPECT_EQ(f.node->inputs.size(), 1u);  // QKV alone: no K, V or mask input
    EXPECT_TRUE(live_nodes(b.graph, "Transpose").empty()) << "split " << split;
  }
}

TEST(AttentionForms, RankThreeBatchedMatMulsWithARankThreeMask) {
  // torch.bmm attention over [B·H, S, D]: one head per batch entry; the mask [B·H, S, S] is read
  // as [B·H, 1, S, S] and the [B·H, 1, S, D] result reshaped back.
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {B * H, S, D}), k = b.input("k", {B * H, S, D}),
                    v = b.input("v", {B * H, S, 8});
  const ir::ValueId mask = b.input("mask", {B * H, S, S});
  const ir::ValueId key_t = b.node("Transpose", "k_t", {k}, perm({0, 2, 1}));
  const ir::ValueId scores =
      b.node("Div", "scaled", {b.node("MatMul", "scores", {q, key_t}), scalar(b, "root", 4.0f)});
  const ir::ValueId probs = b.node("Softmax", "softmax", {b.node("Add", "masked", {scores, mask})},
                                   attrs_of({{"axis", Attribute::of_int(2)}}));
  b.output(b.node("MatMul", "context", {probs, v}));
  infer_shapes(b.graph);
  const Fused f = fuse_and_compare(b, random_inputs(b.graph, 7), 1e-5f);
  ASSERT_EQ(f.count, 1);
  EXPECT_FLOAT_EQ(f.node->attrs.get_float("scale"), 0.25f);
  EXPECT_EQ(b.graph.value(f.node->inputs[1]).shape, (Shape{B * H, 1, S, D}));
  EXPECT_EQ(b.graph.value(f.node->inputs[3]).shape, (Shape{B * H, 1, S, S}));
  EXPECT_EQ(b.graph.value(b.graph.outputs[0]).shape, (Shape{B * H, S, 8}));
}

// PyTorch's math SDPA (kiln.compile's export): Where(all(x == -inf, -1), zeros, softmax(x)); in
// half (`widened`) with the softmax and the row test on the scores cast to float32.
GraphBuilder safe_softmax_attention(bool widened) {
  GraphBuilder b;
  const DType dtype = widened ? DType::kFloat16 : DType::kFloat32;
  const ir::ValueId q = b.input("q", {B, H, S, D}, dtype), k = b.input("k", {B, H, S, D}, dtype),
                    v = b.input("v", {B, H, S, D}, dtype);
  const ir::ValueId mask = b.input("mask", {B, 1, 1, S}, dtype);
  ir::ValueId x = b.node("Add", "masked", {scaled_scores(b, q, k, dtype), mask});
  const auto cast = [&](ir::ValueId value, const std::string& name, DType to) {
    return b.node("Cast", name, {value},
                  attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(to))}}));
  };
  if (widened) x = cast(x, "widened", DType::kFloat32);
  ir::ValueId probs = b.node("Softmax", "softmax", {x});
  const ir::ValueId eq = b.node("Equal", "eq", {x, scalar(b, "minus_inf", kMinusInf)});
  const ir::ValueId kept = b.node("Not", "kept", {eq});
  const ir::ValueId any =
      b.node("ReduceMax", "any", {cast(kept, "as_number", DType::kFloat32), ints(b, "last", {-1})},
             attrs_of({{"keepdims", Attribute::of_int(1)}}));
  const ir::ValueId none = b.node("Not", "none", {cast(any, "any_bool", DType::kBool)});
  const ir::ValueId zeros =
      b.constant("zeros", make_tensor_f32({B, H, S, S}, std::vector<float>(B * H * S * S, 0.0f)));
  probs = b.node("Where", "safe", {none, zeros, probs});
  if (widened) probs = cast(probs, "narrowed", dtype);
  b.output(b.node("MatMul", "context", {probs, v}));
  infer_shapes(b.graph);
  return b;
}

TEST(AttentionForms, SafeSoftmaxGuardBecomesNanToZero) {
  for (bool widened : {false, true}) {
    GraphBuilder b = safe_softmax_attention(widened);
    auto inputs = random_inputs(b.graph, 8);
    HostTensor& mask = inputs.at("mask");
    for (int64_t j = 0; j < S; ++j) {  // every key of batch 1 masked
      if (widened) {
        mask.data<uint16_t>()[S + j] = float_to_half(kMinusInf);
      } else {
        mask.data<float>()[S + j] = kMinusInf;
      }
    }
    const Fused f = fuse_and_compare(b, inputs, widened ? 1e-2f : 1e-5f, /*tensor_cores=*/widened);
    ASSERT_EQ(f.count, 1) << "widened " << widened;
    EXPECT_EQ(f.node->attrs.get_int("nan_to_zero"), 1);
    EXPECT_EQ(live_nodes(b.graph).size(), 1u);
  }
}

TEST(AttentionForms, SequenceFirstOutputTransposeIsWrittenInPlace) {
  // nn.MultiheadAttention (sequence first) transposes the context to [S, B, H, D].
  GraphBuilder b;
  const ir::ValueId q = b.input("q", {B, H, S, D}), k = b.input("k", {B, H, S, D}),
                    v = b.input("v", {B, H, S, D});
  const ir::ValueId context =
      b.node("MatMul", "context", {b.node("Softmax", "softmax", {scaled_scores(b, q, k)}), v});
  b.output(b.node("Transpose", "seq_first", {context}, perm({2, 0, 1, 3})));
  infer_shapes(b.graph);
  const Fused f = fuse_and_compare(b, random_inputs(b.graph, 9), 1e-5f, false);
  ASSERT_EQ(f.count, 1);
  EXPECT_EQ(f.node->attrs.get_string("out_layout"), "SBHD");
  EXPECT_EQ(live_nodes(b.graph).size(), 1u);
}

TEST(AttentionForms, NearMissesStayUnfused) {
  const auto chain = [](int variant) {
    GraphBuilder b;
    const ir::ValueId q = b.input("q", {B, H, S, D}), k = b.input("k", {B, H, S, D}),
                      v = b.input("v", {B, H, S, D});
    const ir::ValueId key_t = b.node("Transpose", "k_t", {k}, perm({0, 1, 3, 2}));
    ir::ValueId scores = b.node("MatMul", "scores", {q, key_t});
    if (variant == 0)
      scores = b.node("Mul", "scaled", {scores, b.input("runtime_scale", {})});  // not a constant
    if (variant == 1)
      scores =
          b.node("Add", "masked", {scores, b.input("mask", {1, B, H, S, S})});  // widens the scores
    if (variant == 2)
      scores = b.node(
          "Mul", "scaled",
          {scores, b.constant("per_key", make_tensor_f32({S}, std::vector<float>(S, 0.5f)))});
    ir::ValueId probs = b.node("Softmax", "softmax", {scores});
    if (variant == 3) {  // a guard whose "zero" is not zero
      const ir::ValueId nan = b.node("IsNaN", "is_nan", {probs});
      probs = b.node("Where", "guard", {nan, scalar(b, "one", 1.0f), probs});
    }
    if (variant == 4) probs = b.node("Relu", "relu", {probs});
    b.output(b.node("MatMul", "context", {probs, variant == 5 ? q : v}));
    if (variant == 5) b.output(key_t);  // fine: Kᵀ may have other readers ...
    infer_shapes(b.graph);
    return b;
  };
  for (int variant = 0; variant < 5; ++variant) {
    GraphBuilder b = chain(variant);
    EXPECT_EQ(fuse_attention(b.graph), 0) << "variant " << variant;
  }
  GraphBuilder shared_key = chain(5);  // ... as may V (here Q itself)
  EXPECT_EQ(fuse_and_compare(shared_key, random_inputs(shared_key.graph, 10), 1e-5f).count, 1);
}

}  // namespace
}  // namespace kiln::passes
