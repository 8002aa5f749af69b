// LinearAttention (opset 27): see linear_attention.hpp. present_state has past_state's dtype, or
// the query's when past_state is absent (as ONNX's reference does).
//   LinearAttention(query, key, value, past_state?, decay?, beta?) -> output, present_state?
#include "ops/linear_attention.hpp"

#include <cmath>
#include <string>

#include "ops/op_families.hpp"

namespace kiln::ops {
namespace nn {
namespace {

int64_t times(int64_t a, int64_t b) {
  return known(a) && known(b) ? a * b : kDynamicDim;
}

// dims / heads when known; fails unless heads divides dims.
int64_t per_head(const NodeLabel& node, size_t index, const char* what, int64_t dims, int64_t heads,
                 const char* heads_name) {
  if (!known(dims)) return kDynamicDim;
  if (dims % heads != 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input ", index, " (", what, ") last dim ", dims,
            " is not a multiple of ", heads_name, " ", heads);
  }
  return dims / heads;
}

void require_tokens(const NodeLabel& node, size_t index, const char* what, const Shape& shape,
                    const Shape& query, const std::string& last) {
  if (shape.size() != 3 || !agree(shape[0], query[0]) || !agree(shape[1], query[1])) {
    fail_at(node, ErrorCode::kInvalidArgument, "input ", index, " (", what,
            ") must be [batch, tokens, ", last, "] with query's batch and tokens ",
            shape_to_string({query[0], query[1]}), ", got ", shape_to_string(shape));
  }
}

}  // namespace

LinearAttentionGeometry resolve_linear_attention(const NodeLabel& node, const AttributeMap& attrs,
                                                 const Shape& query, const Shape& key,
                                                 const Shape& value, const Shape* past_state,
                                                 const Shape* decay, const Shape* beta) {
  LinearAttentionGeometry g;
  if (!attrs.has("q_num_heads") || !attrs.has("kv_num_heads")) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attributes 'q_num_heads' and 'kv_num_heads' are required");
  }
  g.q_heads = attrs.get_int("q_num_heads");
  g.kv_heads = attrs.get_int("kv_num_heads");
  if (g.q_heads <= 0 || g.kv_heads <= 0 || g.q_heads % g.kv_heads != 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'q_num_heads' (", g.q_heads,
            ") must be a positive multiple of 'kv_num_heads' (", g.kv_heads, ")");
  }
  const std::string rule = attrs.get_string_or("update_rule", "gated_delta");
  if (rule != "linear" && rule != "gated" && rule != "delta" && rule != "gated_delta") {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'update_rule' must be linear, gated, ",
            "delta or gated_delta, got '", rule, "'");
  }
  const int64_t chunk_size = attrs.get_int_or("chunk_size", 64);
  if (chunk_size < 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'chunk_size' must be >= 1, got ",
            chunk_size);
  }
  g.gated = rule == "gated" || rule == "gated_delta";
  g.delta = rule == "delta" || rule == "gated_delta";
  if (g.gated != (decay != nullptr)) {
    fail_at(node, ErrorCode::kInvalidArgument, "update_rule '", rule, "' ",
            g.gated ? "needs input 4 (decay)" : "takes no input 4 (decay)");
  }
  if (g.delta != (beta != nullptr)) {
    fail_at(node, ErrorCode::kInvalidArgument, "update_rule '", rule, "' ",
            g.delta ? "needs input 5 (beta)" : "takes no input 5 (beta)");
  }
  if (query.size() != 3) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 0 (query) must be 3-D [batch, tokens, q_num_heads * d_k], got ",
            shape_to_string(query));
  }
  g.batch = query[0];
  g.tokens = query[1];
  g.key_size = per_head(node, 0, "query", query[2], g.q_heads, "q_num_heads");
  require_tokens(node, 1, "key", key, query, "kv_num_heads * d_k");
  require_tokens(node, 2, "value", value, query, "kv_num_heads * d_v");
  if (!agree(key[2], times(g.kv_heads, g.key_size))) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 1 (key) last dim must be kv_num_heads * d_k = ", times(g.kv_heads, g.key_size),
            " (d_k from query), got ", key[2]);
  }
  if (!known(g.key_size)) g.key_size = per_head(node, 1, "key", key[2], g.kv_heads, "kv_num_heads");
  g.value_size = per_head(node, 2, "value", value[2], g.kv_heads, "kv_num_heads");
  g.output = {g.batch, g.tokens, times(g.q_heads, g.value_size)};
  g.state = {g.batch, g.kv_heads, g.key_size, g.value_size};
  if (past_state) {
    const Shape& s = *past_state;
    bool fits = s.size() == 4;
    for (size_t i = 0; fits && i < 4; ++i) fits = agree(s[i], g.state[i]);
    if (!fits) {
      fail_at(node, ErrorCode::kInvalidArgument,
              "input 3 (past_state) must be [batch, kv_num_heads, d_k, d_v] = ",
              shape_to_string(g.state), ", got ", shape_to_string(s));
    }
  }
  if (decay) {
    require_tokens(node, 4, "decay", *decay, query, "kv_num_heads or kv_num_heads * d_k");
    const int64_t last = (*decay)[2];
    // With d_k = 1 both forms have the same values.
    g.decay_per_key = known(last) && last != g.kv_heads;
    if (known(last) && last != g.kv_heads && !agree(last, times(g.kv_heads, g.key_size))) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 4 (decay) last dim must be kv_num_heads (",
              g.kv_heads, ") or kv_num_heads * d_k (", times(g.kv_heads, g.key_size), "), got ",
              last);
    }
  }
  if (beta) {
    require_tokens(node, 5, "beta", *beta, query, "kv_num_heads or 1");
    const int64_t last = (*beta)[2];
    if (known(last) && last != g.kv_heads && last != 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 5 (beta) last dim must be kv_num_heads (",
              g.kv_heads, ") or 1, got ", last);
    }
    g.beta_per_head = last == g.kv_heads;
  }
  const float scale = attrs.get_float_or("scale", 0.0f);
  if (!std::isfinite(scale)) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'scale' must be finite, got ", scale);
  }
  g.scale = scale != 0.0f || !known(g.key_size)
                ? scale
                : static_cast<float>(1.0 / std::sqrt(static_cast<double>(g.key_size)));
  return g;
}

}  // namespace nn

namespace {

void infer_linear_attention(InferContext& ctx) {
  static constexpr const char* kNames[] = {"query", "key", "value", "past_state", "decay", "beta"};
  nn::require_float_input(ctx, 0, "query");
  for (size_t i : {1, 2, 4, 5}) {
    if (ctx.has_input(i) && ctx.input(i).dtype != ctx.input(0).dtype) {
      ctx.fail("input ", i, " (", kNames[i], ") has dtype ", dtype_name(ctx.input(i).dtype),
               " but query has ", dtype_name(ctx.input(0).dtype));
    }
  }
  if (ctx.has_input(3)) nn::require_float_input(ctx, 3, "past_state");
  auto shape_of = [&](size_t i) { return ctx.has_input(i) ? &ctx.input(i).shape : nullptr; };
  const nn::LinearAttentionGeometry g = nn::resolve_linear_attention(
      nn::label_of(ctx), ctx.attrs(), ctx.input(0).shape, ctx.input(1).shape, ctx.input(2).shape,
      shape_of(3), shape_of(4), shape_of(5));
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = g.output;
  if (ctx.num_outputs() > 1) {
    ctx.output(1).dtype = ctx.has_input(3) ? ctx.input(3).dtype : ctx.input(0).dtype;
    ctx.output(1).shape = g.state;
  }
}

}  // namespace

void register_linear_attention_ops(OpRegistry& registry) {
  registry.add(OpDef{
      "LinearAttention", 3, 6, 1, 2, {}, &nn::infer_with_node_errors<infer_linear_attention>});
}

}  // namespace kiln::ops
