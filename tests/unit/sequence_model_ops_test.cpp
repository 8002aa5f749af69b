// The ops of recent opsets that LLM and state-space exports use, on the CPU backend (the
// reference): RotaryEmbedding (23), TensorScatter (24), BitCast (26), LinearAttention and
// CausalConvWithState (27), SwiGLU (28). Kernels against hand-computed values or loops written
// from the ONNX definitions, infer functions with dynamic dims, and errors naming the node.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "node_error_expectation.hpp"
#include "ops/op_registry.hpp"

namespace kiln::cpu {
namespace {

constexpr int64_t kDyn = kDynamicDim;

HostTensor floats(Shape shape, std::vector<float> values) {
  HostTensor t(DType::kFloat32, std::move(shape));
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(float));
  return t;
}

HostTensor ramp(Shape shape, float start, float step) {
  HostTensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + step * static_cast<float>(i);
  return t;
}

HostTensor int64s(Shape shape, std::vector<int64_t> values) {
  HostTensor t(DType::kInt64, std::move(shape));
  std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

std::vector<HostTensor> run(const std::string& op, const AttributeMap& attrs,
                            std::vector<const HostTensor*> inputs, size_t outputs = 1) {
  return run_node_on_cpu("test_node", op, attrs, inputs, outputs);
}

using unit_test::expect_node_error;

std::vector<ops::ValueInfo> infer(const std::string& op, const AttributeMap& attrs,
                                  std::vector<ops::ValueInfo> inputs, size_t outputs = 1) {
  std::vector<ops::ValueInfo> out(outputs);
  ops::infer_node(*ops::find_op(op), "test_node", attrs, inputs, out);
  return out;
}

ops::ValueInfo info(DType dtype, Shape shape) {
  return ops::ValueInfo{dtype, std::move(shape)};
}

// ---- RotaryEmbedding ---------------------------------------------------------------------------

// The ONNX definition over X [B, S, H, D] (the layout the kernel's 3-D form reads).
std::vector<float> rotary_reference(const std::vector<float>& x, int64_t batch, int64_t seq,
                                    int64_t heads, int64_t dim, int64_t rotary,
                                    const std::vector<float>& cos_rows,
                                    const std::vector<float>& sin_rows,
                                    const std::vector<int64_t>& rows, bool interleaved) {
  std::vector<float> y = x;
  const int64_t half = rotary / 2;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s)
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t base = ((b * seq + s) * heads + h) * dim;
        const int64_t row = rows[static_cast<size_t>(b * seq + s)];
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = interleaved ? base + 2 * i : base + i;
          const int64_t c = interleaved ? a + 1 : a + half;
          const float cs = cos_rows[static_cast<size_t>(row * half + i)];
          const float sn = sin_rows[static_cast<size_t>(row * half + i)];
          y[static_cast<size_t>(a)] =
              cs * x[static_cast<size_t>(a)] - sn * x[static_cast<size_t>(c)];
          y[static_cast<size_t>(c)] =
              sn * x[static_cast<size_t>(a)] + cs * x[static_cast<size_t>(c)];
        }
      }
  return y;
}

TEST(SequenceModelOps, RotaryEmbedding3dPartialInterleavedFollowsTheDefinition) {
  const int64_t batch = 2, seq = 3, heads = 2, dim = 6, rotary = 4, positions = 5;
  const HostTensor x = ramp({batch, seq, heads * dim}, -1.0f, 0.03f);
  HostTensor cos_cache = ramp({positions, rotary / 2}, 0.9f, -0.07f);
  HostTensor sin_cache = ramp({positions, rotary / 2}, 0.1f, 0.05f);
  const std::vector<int64_t> rows{4, 0, 2, 1, 1, 3};
  const HostTensor pos = int64s({batch, seq}, rows);
  for (const bool interleaved : {false, true}) {
    AttributeMap attrs;
    attrs.set("num_heads", Attribute::of_int(heads));
    attrs.set("rotary_embedding_dim", Attribute::of_int(rotary));
    attrs.set("interleaved", Attribute::of_int(interleaved ? 1 : 0));
    const HostTensor y = run("RotaryEmbedding", attrs, {&x, &cos_cache, &sin_cache, &pos}).at(0);
    ASSERT_EQ(y.shape, x.shape);
    const std::vector<float> xs(x.data<float>(), x.data<float>() + x.numel());
    const std::vector<float> cs(cos_cache.data<float>(),
                                cos_cache.data<float>() + cos_cache.numel());
    const std::vector<float> sn(sin_cache.data<float>(),
                                sin_cache.data<float>() + sin_cache.numel());
    const std::vector<float> want =
        rotary_reference(xs, batch, seq, heads, dim, rotary, cs, sn, rows, interleaved);
    for (int64_t i = 0; i < y.numel(); ++i) {
      EXPECT_FLOAT_EQ(y.data<float>()[i], want[static_cast<size_t>(i)]) << "element " << i;
    }
  }
}

TEST(SequenceModelOps, RotaryEmbedding4dWithoutPositionIdsReadsPerTokenCaches) {
  // X [B=1, H=2, S=2, D=2]: one pair per head; token s rotates by its own cos/sin row.
  const HostTensor x = floats({1, 2, 2, 2}, {1, 0, 0, 1, 2, 0, 0, 2});
  const HostTensor cos_cache = floats({1, 2, 1}, {0.0f, -1.0f});
  const HostTensor sin_cache = floats({1, 2, 1}, {1.0f, 0.0f});
  const HostTensor y = run("RotaryEmbedding", {}, {&x, &cos_cache, &sin_cache}).at(0);
  // Token 0 turns by 90 degrees ((a, b) -> (-b, a)), token 1 by 180 ((a, b) -> (-a, -b)).
  const std::vector<float> want{0, 1, 0, -1, 0, 2, 0, -2};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(y.data<float>()[i], want[i]) << i;
}

TEST(SequenceModelOps, RotaryEmbeddingErrorsNameTheNode) {
  const HostTensor x3 = ramp({1, 2, 8}, 0.0f, 1.0f);
  const HostTensor x4 = ramp({1, 2, 2, 4}, 0.0f, 1.0f);
  const HostTensor cache = ramp({4, 2}, 0.0f, 0.1f);
  const HostTensor pos = int64s({1, 2}, {0, 4});
  expect_node_error([&] { run("RotaryEmbedding", {}, {&x3, &cache, &cache, &pos}); },
               ErrorCode::kInvalidArgument, "needs attribute 'num_heads' > 0");
  AttributeMap odd;
  odd.set("rotary_embedding_dim", Attribute::of_int(3));
  expect_node_error([&] { run("RotaryEmbedding", odd, {&x4, &cache, &cache, &pos}); },
               ErrorCode::kInvalidArgument, "'rotary_embedding_dim' must be even");
  expect_node_error([&] { run("RotaryEmbedding", {}, {&x4, &cache, &cache, &pos}); },
               ErrorCode::kInvalidArgument, "position_ids) holds 4 at [0, 1]");
  const HostTensor short_cache = ramp({4, 1}, 0.0f, 0.1f);
  expect_node_error([&] { run("RotaryEmbedding", {}, {&x4, &short_cache, &short_cache, &pos}); },
               ErrorCode::kInvalidArgument, "input 1 (cos_cache) must be [max_position_id_plus_1");
  // Without position_ids the caches are per token.
  expect_node_error([&] { run("RotaryEmbedding", {}, {&x4, &cache, &cache}); },
               ErrorCode::kInvalidArgument, "must be [batch, sequence, rotary_dim / 2]");
}

TEST(SequenceModelOps, RotaryEmbeddingInferKeepsDynamicDims) {
  AttributeMap attrs;
  attrs.set("num_heads", Attribute::of_int(4));
  const auto out = infer("RotaryEmbedding", attrs,
                         {info(DType::kFloat16, {kDyn, kDyn, 64}), info(DType::kFloat16, {kDyn, 8}),
                          info(DType::kFloat16, {kDyn, 8}), info(DType::kInt64, {kDyn, kDyn})});
  EXPECT_EQ(out[0].dtype, DType::kFloat16);
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn, 64}));
  expect_node_error(
      [&] {
        infer("RotaryEmbedding", attrs,
              {info(DType::kFloat32, {1, 2, 64}), info(DType::kFloat16, {4, 8}),
               info(DType::kFloat16, {4, 8}), info(DType::kInt64, {1, 2})});
      },
      ErrorCode::kInvalidArgument, "input 1 (cos_cache) has dtype float16 but X has float32");
}

// ---- LinearAttention ---------------------------------------------------------------------------

TEST(SequenceModelOps, LinearAttentionLinearRuleAccumulatesOuterProducts) {
  // One head, d_k = 2, d_v = 1, two tokens, scale 1: S_1 = k_1 v_1, S_2 = S_1 + k_2 v_2.
  const HostTensor q = floats({1, 2, 2}, {1, 0, 1, 1});
  const HostTensor k = floats({1, 2, 2}, {1, 2, 3, 4});
  const HostTensor v = floats({1, 2, 1}, {10, 100});
  AttributeMap attrs;
  attrs.set("q_num_heads", Attribute::of_int(1));
  attrs.set("kv_num_heads", Attribute::of_int(1));
  attrs.set("update_rule", Attribute::of_string("linear"));
  attrs.set("scale", Attribute::of_float(1.0f));
  const auto out = run("LinearAttention", attrs, {&q, &k, &v}, 2);
  // S_1 = [10, 20]; o_1 = q_1 . S_1 = 10. S_2 = [310, 420]; o_2 = 730.
  EXPECT_FLOAT_EQ(out[0].data<float>()[0], 10.0f);
  EXPECT_FLOAT_EQ(out[0].data<float>()[1], 730.0f);
  ASSERT_EQ(out[1].shape, (Shape{1, 1, 2, 1}));
  EXPECT_FLOAT_EQ(out[1].data<float>()[0], 310.0f);
  EXPECT_FLOAT_EQ(out[1].data<float>()[1], 420.0f);
}

TEST(SequenceModelOps, LinearAttentionGatedDeltaWithGroupedHeadsMatchesTheRecurrence) {
  // Hq = 2 query heads share Hkv = 1 state; per-head decay and beta; a past state.
  const int64_t dk = 2, dv = 2;
  const HostTensor q = ramp({1, 1, 2 * dk}, 0.5f, 0.25f);  // head 0 (0.5, 0.75), head 1 (1, 1.25)
  const HostTensor k = floats({1, 1, dk}, {0.6f, 0.8f});
  const HostTensor v = floats({1, 1, dv}, {1.0f, -2.0f});
  const HostTensor past = floats({1, 1, dk, dv}, {1.0f, 2.0f, 3.0f, 4.0f});
  const HostTensor decay = floats({1, 1, 1}, {std::log(0.5f)});
  const HostTensor beta = floats({1, 1, 1}, {0.25f});
  AttributeMap attrs;
  attrs.set("q_num_heads", Attribute::of_int(2));
  attrs.set("kv_num_heads", Attribute::of_int(1));
  const auto out = run("LinearAttention", attrs, {&q, &k, &v, &past, &decay, &beta}, 2);
  // S' = 0.5 S = [[0.5, 1], [1.5, 2]]; S'^T k = (0.5*0.6 + 1.5*0.8, 1*0.6 + 2*0.8) = (1.5, 2.2);
  // u = 0.25 * (v - S'^T k) = (-0.125, -1.05); S = S' + k u^T.
  const float s[4] = {0.5f + 0.6f * -0.125f, 1.0f + 0.6f * -1.05f, 1.5f + 0.8f * -0.125f,
                      2.0f + 0.8f * -1.05f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[1].data<float>()[i], s[i], 1e-6f) << i;
  const float scale = 1.0f / std::sqrt(2.0f);
  const float qs[2][2] = {{0.5f, 0.75f}, {1.0f, 1.25f}};
  for (int h = 0; h < 2; ++h)
    for (int m = 0; m < 2; ++m) {
      const float want = scale * (qs[h][0] * s[m] + qs[h][1] * s[2 + m]);
      EXPECT_NEAR(out[0].data<float>()[h * 2 + m], want, 1e-6f) << h << "," << m;
    }
}

TEST(SequenceModelOps, LinearAttentionStateDtypeAndErrors) {
  AttributeMap attrs;
  attrs.set("q_num_heads", Attribute::of_int(4));
  attrs.set("kv_num_heads", Attribute::of_int(2));
  attrs.set("update_rule", Attribute::of_string("gated"));
  // present_state takes past_state's dtype; dims stay dynamic where the inputs' are.
  const auto out =
      infer("LinearAttention", attrs,
            {info(DType::kFloat16, {kDyn, kDyn, 32}), info(DType::kFloat16, {kDyn, kDyn, 16}),
             info(DType::kFloat16, {kDyn, kDyn, 12}), info(DType::kFloat32, {kDyn, 2, 8, 6}),
             info(DType::kFloat16, {kDyn, kDyn, 2})},
            2);
  EXPECT_EQ(out[0].dtype, DType::kFloat16);
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn, 24}));
  EXPECT_EQ(out[1].dtype, DType::kFloat32);
  EXPECT_EQ(out[1].shape, (Shape{kDyn, 2, 8, 6}));

  const auto shapes = [](Shape qs, Shape ks, Shape vs) {
    return std::vector<ops::ValueInfo>{info(DType::kFloat32, std::move(qs)),
                                       info(DType::kFloat32, std::move(ks)),
                                       info(DType::kFloat32, std::move(vs))};
  };
  expect_node_error([&] { infer("LinearAttention", attrs, shapes({1, 2, 32}, {1, 2, 16}, {1, 2, 12})); },
               ErrorCode::kInvalidArgument, "update_rule 'gated' needs input 4 (decay)");
  AttributeMap linear = attrs;
  linear.set("update_rule", Attribute::of_string("linear"));
  expect_node_error(
      [&] { infer("LinearAttention", linear, shapes({1, 2, 32}, {1, 2, 12}, {1, 2, 12})); },
      ErrorCode::kInvalidArgument, "input 1 (key) last dim must be kv_num_heads * d_k = 16");
  AttributeMap bad_heads = linear;
  bad_heads.set("q_num_heads", Attribute::of_int(3));
  expect_node_error(
      [&] { infer("LinearAttention", bad_heads, shapes({1, 2, 24}, {1, 2, 16}, {1, 2, 12})); },
      ErrorCode::kInvalidArgument, "must be a positive multiple of 'kv_num_heads'");
  AttributeMap bad_rule = linear;
  bad_rule.set("update_rule", Attribute::of_string("softmax"));
  expect_node_error(
      [&] { infer("LinearAttention", bad_rule, shapes({1, 2, 32}, {1, 2, 16}, {1, 2, 12})); },
      ErrorCode::kInvalidArgument, "got 'softmax'");
}

// ---- CausalConvWithState -----------------------------------------------------------------------

TEST(SequenceModelOps, CausalConvWithStateReadsThePastStateAndCarriesTheTail) {
  // One channel, k = 3: y_l = w0 * p_l + w1 * p_{l+1} + w2 * p_{l+2} + bias over
  // p = [past (2 values), input].
  const HostTensor x = floats({1, 1, 2}, {5, 7});
  const HostTensor w = floats({1, 1, 3}, {1, 10, 100});
  const HostTensor bias = floats({1}, {0.5f});
  const HostTensor past = floats({1, 1, 2}, {2, 3});
  const auto out = run("CausalConvWithState", {}, {&x, &w, &bias, &past}, 2);
  EXPECT_FLOAT_EQ(out[0].data<float>()[0], 2 + 30 + 500 + 0.5f);
  EXPECT_FLOAT_EQ(out[0].data<float>()[1], 3 + 50 + 700 + 0.5f);
  ASSERT_EQ(out[1].shape, (Shape{1, 1, 2}));
  EXPECT_FLOAT_EQ(out[1].data<float>()[0], 5);
  EXPECT_FLOAT_EQ(out[1].data<float>()[1], 7);

  // An input shorter than k - 1 keeps part of the past state; no past state means zeros.
  const HostTensor one = floats({1, 1, 1}, {4});
  const HostTensor w4 = floats({1, 1, 4}, {1, 1, 1, 1});
  const HostTensor past3 = floats({1, 1, 3}, {1, 2, 3});
  const auto short_out = run("CausalConvWithState", {}, {&one, &w4, nullptr, &past3}, 2);
  EXPECT_FLOAT_EQ(short_out[0].data<float>()[0], 10);
  EXPECT_EQ(std::vector<float>(short_out[1].data<float>(), short_out[1].data<float>() + 3),
            (std::vector<float>{2, 3, 4}));
  const auto zero_out = run("CausalConvWithState", {}, {&one, &w4}, 2);
  EXPECT_FLOAT_EQ(zero_out[0].data<float>()[0], 4);
  EXPECT_EQ(std::vector<float>(zero_out[1].data<float>(), zero_out[1].data<float>() + 3),
            (std::vector<float>{0, 0, 4}));
}

TEST(SequenceModelOps, CausalConvWithStateSiluAndErrors) {
  const HostTensor x = floats({1, 2, 1}, {1, -2});
  const HostTensor w = floats({2, 1, 1}, {1, 1});
  AttributeMap silu;
  silu.set("activation", Attribute::of_string("swish"));
  const auto out = run("CausalConvWithState", silu, {&x, &w}, 2);
  EXPECT_NEAR(out[0].data<float>()[0], 1.0f / (1.0f + std::exp(-1.0f)), 1e-7f);
  EXPECT_NEAR(out[0].data<float>()[1], -2.0f / (1.0f + std::exp(2.0f)), 1e-7f);
  EXPECT_EQ(out[1].shape, (Shape{1, 2, 0}));

  AttributeMap gelu;
  gelu.set("activation", Attribute::of_string("gelu"));
  expect_node_error([&] { run("CausalConvWithState", gelu, {&x, &w}); }, ErrorCode::kInvalidArgument,
               "'activation' must be none, silu or swish, got 'gelu'");
  const HostTensor w3 = floats({3, 1, 1}, {1, 1, 1});
  expect_node_error([&] { run("CausalConvWithState", {}, {&x, &w3}); }, ErrorCode::kInvalidArgument,
               "input 1 (weight) must be [channels = 2, 1, kernel_size >= 1], got [3, 1, 1]");
  const HostTensor past = floats({1, 2, 2}, {0, 0, 0, 0});
  expect_node_error([&] { run("CausalConvWithState", {}, {&x, &w, nullptr, &past}); },
               ErrorCode::kInvalidArgument, "input 3 (past_state) must be [batch, channels");
  const auto dyn =
      infer("CausalConvWithState", {},
            {info(DType::kBFloat16, {kDyn, 4, kDyn}), info(DType::kBFloat16, {4, 1, 3})}, 2);
  EXPECT_EQ(dyn[0].shape, (Shape{kDyn, 4, kDyn}));
  EXPECT_EQ(dyn[1].shape, (Shape{kDyn, 4, 2}));
  EXPECT_EQ(dyn[1].dtype, DType::kBFloat16);
}

// ---- SwiGLU ------------------------------------------------------------------------------------

TEST(SequenceModelOps, SwiGLUGatesTheValueInFloat32AndFloat64) {
  const HostTensor a = floats({3}, {-1, 0, 2});
  const HostTensor b = floats({3}, {3, 5, -0.5f});
  AttributeMap attrs;
  attrs.set("alpha", Attribute::of_float(1.5f));
  const HostTensor y = run("SwiGLU", attrs, {&a, &b}).at(0);
  for (int i = 0; i < 3; ++i) {
    const float av = a.data<float>()[i];
    EXPECT_NEAR(y.data<float>()[i], av / (1 + std::exp(-1.5f * av)) * b.data<float>()[i], 1e-6f);
  }
  HostTensor a64(DType::kFloat64, {1}), b64(DType::kFloat64, {1});
  a64.data<double>()[0] = 0.1;
  b64.data<double>()[0] = 3.0;
  const HostTensor y64 = run("SwiGLU", {}, {&a64, &b64}).at(0);
  EXPECT_DOUBLE_EQ(y64.data<double>()[0], 0.1 / (1 + std::exp(-0.1)) * 3.0);
  const HostTensor b2 = floats({1, 3}, {1, 1, 1});
  expect_node_error([&] { run("SwiGLU", {}, {&a, &b2}); }, ErrorCode::kInvalidArgument,
               "must have the same shape (SwiGLU does not broadcast)");
}

// ---- TensorScatter -----------------------------------------------------------------------------

TEST(SequenceModelOps, TensorScatterWritesLinearAndCircular) {
  // Cache [B=2, S=4, D=1], update [2, 2, 1]; row 0 writes at 1, row 1 at 3.
  HostTensor cache(DType::kInt32, {2, 4, 1});
  for (int i = 0; i < 8; ++i) cache.data<int32_t>()[i] = -1;
  HostTensor update(DType::kInt32, {2, 2, 1});
  for (int i = 0; i < 4; ++i) update.data<int32_t>()[i] = 10 + i;
  const HostTensor starts = int64s({2}, {1, 3});
  AttributeMap circular;
  circular.set("mode", Attribute::of_string("circular"));
  const HostTensor y = run("TensorScatter", circular, {&cache, &update, &starts}).at(0);
  EXPECT_EQ(std::vector<int32_t>(y.data<int32_t>(), y.data<int32_t>() + 8),
            (std::vector<int32_t>{-1, 10, 11, -1, 13, -1, -1, 12}));
  expect_node_error([&] { run("TensorScatter", {}, {&cache, &update, &starts}); },
               ErrorCode::kInvalidArgument, "holds 3 for batch row 1: mode 'linear' needs");
  // Without write_indices every row writes at 0.
  const HostTensor y0 = run("TensorScatter", {}, {&cache, &update}).at(0);
  EXPECT_EQ(std::vector<int32_t>(y0.data<int32_t>(), y0.data<int32_t>() + 8),
            (std::vector<int32_t>{10, 11, -1, -1, 12, 13, -1, -1}));
  AttributeMap batch_axis;
  batch_axis.set("axis", Attribute::of_int(0));
  expect_node_error([&] { run("TensorScatter", batch_axis, {&cache, &update}); },
               ErrorCode::kInvalidArgument, "must not name the batch axis 0");
  const HostTensor float_cache = ramp({2, 4, 1}, 0, 1);
  const HostTensor long_update = ramp({2, 5, 1}, 0, 1);
  expect_node_error([&] { run("TensorScatter", {}, {&float_cache, &long_update}); },
               ErrorCode::kInvalidArgument, "where it may be shorter");
}

// ---- BitCast -----------------------------------------------------------------------------------

TEST(SequenceModelOps, BitCastKeepsTheBytes) {
  const HostTensor x = floats({2}, {1.0f, -2.0f});
  AttributeMap to_int;
  to_int.set("to", Attribute::of_int(static_cast<int64_t>(DType::kInt32)));
  const HostTensor y = run("BitCast", to_int, {&x}).at(0);
  EXPECT_EQ(y.dtype, DType::kInt32);
  EXPECT_EQ(static_cast<uint32_t>(y.data<int32_t>()[0]), 0x3f800000u);
  EXPECT_EQ(static_cast<uint32_t>(y.data<int32_t>()[1]), 0xc0000000u);
  AttributeMap to_half;
  to_half.set("to", Attribute::of_int(static_cast<int64_t>(DType::kFloat16)));
  expect_node_error([&] { run("BitCast", to_half, {&x}); }, ErrorCode::kInvalidArgument,
               "(float16, 16 bits) must have the width of input 0 (float32, 32 bits)");
  AttributeMap to_string;
  to_string.set("to", Attribute::of_int(8));
  expect_node_error([&] { run("BitCast", to_string, {&x}); }, ErrorCode::kUnsupported,
               "attribute 'to' must be the ONNX number of a dtype kiln has, got 8");
}

}  // namespace
}  // namespace kiln::cpu
