// ONNX Attention (ops/onnx_attention.hpp): shape inference and named errors, and the builder's
// lowering (passes/attention_lowering.hpp) checked against the op's CPU kernel form by form, then
// fused (passes/attention_fusion.hpp) and checked again. The ONNX backend test cases run from
// Python (tests/python/test_onnx_attention.py).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>

#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "ops/onnx_attention.hpp"
#include "passes/attention_fusion.hpp"
#include "passes/attention_lowering.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::evaluate;
using testing::GraphBuilder;
using testing::live_nodes;
using testing::random_inputs;

// testing::expect_close, with infinities (qk_matmul_output of masked scores) equal to themselves.
void expect_close(const HostTensor& got, const HostTensor& want, float relative) {
  ASSERT_EQ(got.shape, want.shape);
  for (int64_t i = 0; i < want.numel(); ++i) {
    const float w = testing::element(want, i), g = testing::element(got, i);
    if (std::isinf(w) || std::isnan(w)) {
      ASSERT_TRUE(g == w || (std::isnan(w) && std::isnan(g)))
          << "element " << i << ": " << g << " vs " << w;
      continue;
    }
    ASSERT_LE(std::fabs(g - w), relative * std::max(std::fabs(w), 1.0f))
        << "element " << i << ": " << g << " vs " << w;
  }
}

// One Attention node's configuration.
struct Config {
  std::string name;
  int rank = 4;
  int64_t batch = 2, q_heads = 3, kv_heads = 3, q_length = 4, kv_length = 6, head = 8, v_head = 8;
  int64_t past = 0;
  enum { kNoMask, kFloatMask, kBoolMask } mask = kNoMask;
  Shape mask_shape;  // default [q_length, total]
  bool causal = false;
  float softcap = 0.0f;
  std::optional<float> scale;
  int outputs = 1;  // 1, 3 (present_key, present_value) or 4 (+ qk_matmul_output)
  int qk_mode = 0;
  DType dtype = DType::kFloat32;
};

Shape qkv_shape(const Config& c, int64_t heads, int64_t length, int64_t size) {
  return c.rank == 4 ? Shape{c.batch, heads, length, size} : Shape{c.batch, length, heads * size};
}

GraphBuilder attention_graph(const Config& c) {
  GraphBuilder b;
  std::vector<ir::ValueId> inputs = {
      b.input("Q", qkv_shape(c, c.q_heads, c.q_length, c.head), c.dtype),
      b.input("K", qkv_shape(c, c.kv_heads, c.kv_length, c.head), c.dtype),
      b.input("V", qkv_shape(c, c.kv_heads, c.kv_length, c.v_head), c.dtype)};
  const int64_t total = c.past + c.kv_length;
  const Shape mask_shape = c.mask_shape.empty() ? Shape{c.q_length, total} : c.mask_shape;
  if (c.mask == Config::kFloatMask) inputs.push_back(b.input("mask", mask_shape, c.dtype));
  if (c.mask == Config::kBoolMask) {
    HostTensor keep(DType::kBool, mask_shape);
    for (int64_t i = 0; i < keep.numel(); ++i) keep.data<uint8_t>()[i] = (i * 7) % 5 != 0;
    // Row 0 of the mask keeps nothing: the fully-masked-row rule gives zeros there.
    for (int64_t j = 0; j < mask_shape.back(); ++j) keep.data<uint8_t>()[j] = 0;
    inputs.push_back(b.constant("mask", keep));
  }
  if (c.past > 0) {
    while (inputs.size() < 4) inputs.push_back(ir::kNoValue);
    inputs.push_back(b.input("past_key", {c.batch, c.kv_heads, c.past, c.head}, c.dtype));
    inputs.push_back(b.input("past_value", {c.batch, c.kv_heads, c.past, c.v_head}, c.dtype));
  }
  AttributeMap attrs;
  if (c.rank == 3) {
    attrs.set("q_num_heads", Attribute::of_int(c.q_heads));
    attrs.set("kv_num_heads", Attribute::of_int(c.kv_heads));
  }
  if (c.causal) attrs.set("is_causal", Attribute::of_int(1));
  if (c.softcap > 0) attrs.set("softcap", Attribute::of_float(c.softcap));
  if (c.scale) attrs.set("scale", Attribute::of_float(*c.scale));
  if (c.qk_mode != 0) attrs.set("qk_matmul_output_mode", Attribute::of_int(c.qk_mode));
  const std::vector<ir::ValueId> outs =
      b.node_n("Attention", "attention", inputs, static_cast<size_t>(c.outputs), attrs);
  for (ir::ValueId out : outs) b.output(out);
  infer_shapes(b.graph);
  return b;
}

std::vector<Config> configs() {
  std::vector<Config> list;
  const auto add = [&](std::string name, auto&& edit) {
    Config c;
    c.name = std::move(name);
    edit(c);
    list.push_back(c);
  };
  add("plain_4d", [](Config&) {});
  add("plain_3d", [](Config& c) { c.rank = 3; });
  add("scaled", [](Config& c) { c.scale = 0.05f; });
  add("value_head_differs", [](Config& c) { c.v_head = 5; });
  add("float_mask_4d", [](Config& c) {
    c.mask = Config::kFloatMask;
    c.mask_shape = {2, 1, 4, 6};
  });
  add("bool_mask", [](Config& c) { c.mask = Config::kBoolMask; });
  add("causal", [](Config& c) { c.causal = true; });
  add("causal_3d_bool_mask", [](Config& c) {
    c.rank = 3;
    c.causal = true;
    c.mask = Config::kBoolMask;
  });
  add("gqa", [](Config& c) {
    c.q_heads = 6;
    c.kv_heads = 2;
  });
  add("gqa_3d_causal", [](Config& c) {
    c.rank = 3;
    c.q_heads = 4;
    c.kv_heads = 1;
    c.causal = true;
  });
  add("past_and_present", [](Config& c) {
    c.past = 3;
    c.outputs = 3;
    c.causal = true;
    c.mask = Config::kFloatMask;
  });
  add("softcap", [](Config& c) { c.softcap = 1.5f; });
  for (int mode = 0; mode < 4; ++mode) {
    add(std::string("qk_mode_").append(1, static_cast<char>('0' + mode)), [&](Config& c) {
      c.outputs = 4;
      c.qk_mode = mode;
      c.softcap = 2.0f;
      c.mask = Config::kBoolMask;
    });
  }
  add("half", [](Config& c) {
    c.dtype = DType::kFloat16;
    c.mask = Config::kFloatMask;
    c.causal = true;
  });
  return list;
}

TEST(OnnxAttention, LoweringComputesWhatTheCpuKernelComputes) {
  for (const Config& c : configs()) {
    SCOPED_TRACE(c.name);
    GraphBuilder b = attention_graph(c);
    const auto inputs = random_inputs(b.graph, 11);
    const std::vector<HostTensor> want = evaluate(b.graph, inputs);
    ASSERT_EQ(lower_attention(b.graph), 1);
    EXPECT_TRUE(live_nodes(b.graph, "Attention").empty());
    b.graph.verify();
    const float tolerance = c.dtype == DType::kFloat16 ? 1e-2f : 2e-5f;
    const std::vector<HostTensor> lowered = evaluate(b.graph, inputs);
    ASSERT_EQ(lowered.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) expect_close(lowered[i], want[i], tolerance);
    // Fused by the CPU's rules: the same numbers again, as one node unless an intermediate is an
    // output of its own (qk_matmul_output) or softcap's Tanh sits in the scores.
    const int fused = fuse_attention(b.graph);
    eliminate_dead_code(b.graph);
    EXPECT_EQ(fused, c.outputs == 4 || c.softcap > 0 ? 0 : 1);
    const std::vector<HostTensor> after = evaluate(b.graph, inputs);
    for (size_t i = 0; i < want.size(); ++i) expect_close(after[i], want[i], tolerance);
  }
}

TEST(OnnxAttention, FullyMaskedRowsAreZeros) {
  Config c;
  c.mask = Config::kBoolMask;
  GraphBuilder b = attention_graph(c);
  const auto inputs = random_inputs(b.graph, 12);
  for (bool lowered : {false, true}) {
    if (lowered) lower_attention(b.graph);
    const HostTensor y = evaluate(b.graph, inputs)[0];
    for (int64_t bh = 0; bh < c.batch * c.q_heads; ++bh) {  // query row 0 of every head
      for (int64_t d = 0; d < c.v_head; ++d)
        ASSERT_EQ(y.data<float>()[bh * c.q_length * c.v_head + d], 0.0f) << "lowered " << lowered;
    }
  }
}

TEST(OnnxAttention, HalfLoweringFusesForTensorCores) {
  Config c;
  c.dtype = DType::kFloat16;
  c.head = c.v_head = 16;
  c.rank = 3;
  c.mask = Config::kBoolMask;
  c.causal = true;
  GraphBuilder b = attention_graph(c);
  const auto inputs = random_inputs(b.graph, 13);
  const std::vector<HostTensor> want = evaluate(b.graph, inputs);
  EXPECT_EQ(fuse_attention(b.graph, /*tensor_core_shapes_only=*/true), 1);  // lowers first
  eliminate_dead_code(b.graph);
  const auto fused = live_nodes(b.graph, "FusedAttention");
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0]->attrs.get_string("q_layout"), "BSHD");  // the rank-3 input read in place
  EXPECT_EQ(fused[0]->attrs.get_string("out_layout"), "BSHD");
  EXPECT_EQ(fused[0]->attrs.get_int("nan_to_zero"), 1);
  EXPECT_NEAR(fused[0]->attrs.get_float("scale"), 0.25f, 1e-3f);
  expect_close(evaluate(b.graph, inputs)[0], want[0], 1e-2f);
}

TEST(OnnxAttention, DynamicLengthsLowerTheCausalMaskAsOps) {
  GraphBuilder b;
  const ir::ValueId q = b.input("Q", {kDynamicDim, 2, kDynamicDim, 8});
  const ir::ValueId k = b.input("K", {kDynamicDim, 2, kDynamicDim, 8});
  const ir::ValueId v = b.input("V", {kDynamicDim, 2, kDynamicDim, 8});
  b.output(
      b.node("Attention", "attention", {q, k, v}, attrs_of({{"is_causal", Attribute::of_int(1)}})));
  infer_shapes(b.graph);
  GraphBuilder reference = b;
  ASSERT_EQ(lower_attention(b.graph), 1);
  EXPECT_EQ(live_nodes(b.graph, "Trilu").size(), 1u);
  for (const Shape& shape : {Shape{1, 2, 3, 8}, Shape{3, 2, 7, 8}}) {
    std::mt19937 rng(14);
    std::map<std::string, HostTensor> inputs;
    Shape keys = shape;
    keys[2] += 2;  // cross-attention lengths: the causal frontier is top-left aligned
    inputs["Q"] = testing::random_tensor_f32(shape, rng);
    for (const char* name : {"K", "V"}) inputs[name] = testing::random_tensor_f32(keys, rng);
    expect_close(evaluate(b.graph, inputs)[0], evaluate(reference.graph, inputs)[0], 2e-5f);
  }
}

TEST(OnnxAttention, InfersOutputShapes) {
  Config c;
  c.rank = 3;
  c.q_heads = 6;
  c.kv_heads = 2;
  c.v_head = 5;
  c.past = 2;
  c.outputs = 4;
  GraphBuilder b = attention_graph(c);
  const auto& outs = b.graph.outputs;
  EXPECT_EQ(b.graph.value(outs[0]).shape, (Shape{2, 4, 6 * 5}));
  EXPECT_EQ(b.graph.value(outs[1]).shape, (Shape{2, 2, 8, 8}));
  EXPECT_EQ(b.graph.value(outs[2]).shape, (Shape{2, 2, 8, 5}));
  EXPECT_EQ(b.graph.value(outs[3]).shape, (Shape{2, 6, 4, 8}));
}

TEST(OnnxAttention, ErrorsNameTheNodeAndTheProblem) {
  const auto expect_error = [](const std::function<void(Config&, GraphBuilder&)>& edit,
                               ErrorCode code, const std::string& fragment) {
    Config c;
    try {
      GraphBuilder b;
      edit(c, b);
      if (b.graph.nodes.empty()) b = attention_graph(c);
      infer_shapes(b.graph);
      lower_attention(b.graph);
      ADD_FAILURE() << "expected an error containing '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find("node 'attention' (Attention)"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  const auto raw_node = [](std::vector<std::pair<Shape, DType>> inputs, AttributeMap attrs = {}) {
    return [=](Config&, GraphBuilder& b) {
      std::vector<ir::ValueId> ids;
      int i = 0;
      for (const auto& [shape, dtype] : inputs) {
        ids.push_back(b.input(std::string(1, static_cast<char>('a' + i)), shape, dtype));
        ++i;
      }
      b.output(b.node("Attention", "attention", ids, attrs));
    };
  };
  const DType f32 = DType::kFloat32;
  expect_error(raw_node({{{2, 4, 24}, f32}, {{2, 6, 24}, f32}, {{2, 6, 24}, f32}}),
               ErrorCode::kInvalidArgument, "q_num_heads and kv_num_heads");
  expect_error(raw_node({{{2, 4, 4, 8}, f32}, {{2, 3, 6, 8}, f32}, {{2, 3, 6, 8}, f32}}),
               ErrorCode::kInvalidArgument, "multiple of kv heads");
  expect_error(raw_node({{{2, 3, 4, 8}, f32}, {{2, 3, 6, 7}, f32}, {{2, 3, 6, 8}, f32}}),
               ErrorCode::kInvalidArgument, "head sizes differ");
  expect_error(
      raw_node({{{2, 3, 4, 8}, f32}, {{2, 3, 6, 8}, f32}, {{2, 3, 6, 8}, f32}, {{4, 7}, f32}}),
      ErrorCode::kInvalidArgument, "does not broadcast");  // more keys than there are (fewer: padded)
  expect_error(
      raw_node({{{2, 3, 4, 8}, f32}, {{2, 3, 6, 8}, f32}, {{2, 3, 6, 8}, f32}, {{3, 5}, f32}}),
      ErrorCode::kInvalidArgument, "does not broadcast");
  expect_error(
      raw_node(
          {{{2, 3, 4, 8}, f32}, {{2, 3, 6, 8}, f32}, {{2, 3, 6, 8}, f32}, {{4, 6}, DType::kInt32}}),
      ErrorCode::kUnsupported, "attn_mask has dtype int32");
  expect_error(raw_node({{{2, 3, 4, 8}, DType::kFloat64},
                         {{2, 3, 6, 8}, DType::kFloat64},
                         {{2, 3, 6, 8}, DType::kFloat64}}),
               ErrorCode::kUnsupported, "float64");
  expect_error(
      raw_node({{{2, 3, 4, 8}, f32}, {{2, 3, 6, 8}, f32}, {{2, 3, 6, 8}, DType::kFloat16}}),
      ErrorCode::kUnsupported, "V has dtype float16");
  expect_error(raw_node({{{2, 3, 4, 8}, f32}, {{2, 3, 6, 8}, f32}, {{2, 3, 6, 8}, f32}},
                        attrs_of({{"qk_matmul_output_mode", Attribute::of_int(4)}})),
               ErrorCode::kInvalidArgument, "qk_matmul_output_mode");
  expect_error(raw_node({{{2, 3, 4, 8}, f32}, {{2, 3, 6, 8}, f32}, {{2, 3, 6, 8}, f32}},
                        attrs_of({{"softmax_precision", Attribute::of_int(7)}})),
               ErrorCode::kUnsupported, "softmax_precision");
  expect_error(raw_node({{{2, 3, 4, 8}, f32},
                         {{2, 3, 6, 8}, f32},
                         {{2, 3, 6, 8}, f32},
                         {{4, 6}, f32},
                         {{2, 3, 2, 8}, f32}}),
               ErrorCode::kInvalidArgument, "past_key and past_value must be given together");
  expect_error(raw_node({{{2, 3, 4, 8}, f32},
                         {{2, 3, 6, 8}, f32},
                         {{2, 3, 6, 8}, f32},
                         {{4, 6}, f32},
                         {{2, 3, 2, 8}, f32},
                         {{2, 3, 2, 8}, f32},
                         {{2}, DType::kInt64}}),
               ErrorCode::kInvalidArgument, "nonpad_kv_seqlen) cannot be combined with past_key");
  expect_error(
      raw_node({{{2, 3, 4, kDynamicDim}, f32}, {{2, 3, 6, kDynamicDim}, f32}, {{2, 3, 6, 8}, f32}}),
      ErrorCode::kUnsupported, "static head size");
}

}  // namespace
}  // namespace kiln::passes
