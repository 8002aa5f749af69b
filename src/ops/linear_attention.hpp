// LinearAttention (opset 27): a per-head recurrent state S [d_k, d_v] updated token by token
// (update_rule linear, gated, delta or gated_delta) and read by the queries, heads packed in the
// last dim. The geometry is resolved once for the infer function (dims may be dynamic) and the
// CPU kernel.
//   query [B, T, Hq * d_k], key [B, T, Hkv * d_k], value [B, T, Hkv * d_v],
//   past_state? [B, Hkv, d_k, d_v], decay? [B, T, Hkv] or [B, T, Hkv * d_k],
//   beta? [B, T, Hkv] or [B, T, 1]  ->  output [B, T, Hq * d_v], present_state [B, Hkv, d_k, d_v]
#pragma once

#include <cstdint>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

struct LinearAttentionGeometry {
  int64_t batch = 0;           // B (kDynamicDim when unknown, in inference only)
  int64_t tokens = 0;          // T
  int64_t q_heads = 0;         // Hq, a multiple of kv_heads
  int64_t kv_heads = 0;        // Hkv
  int64_t key_size = 0;        // d_k
  int64_t value_size = 0;      // d_v
  bool gated = false;          // S is multiplied by exp(decay) before each update
  bool delta = false;          // the update writes beta * (v - S^T k) instead of v
  bool decay_per_key = false;  // decay is [B, T, Hkv * d_k]; else [B, T, Hkv]
  bool beta_per_head = false;  // beta is [B, T, Hkv]; else [B, T, 1]
  float scale = 0.0f;  // the output's factor: attribute 'scale', or 1 / sqrt(d_k) when it is 0
  Shape output;        // [B, T, Hq * d_v]
  Shape state;         // [B, Hkv, d_k, d_v]
};

// Needs the shapes of query, key, value and of past_state, decay and beta (nullptr when absent).
// Fails (kInvalidArgument naming the node, the input or attribute, expected and got) for
// q_num_heads or kv_num_heads missing or not positive, q_num_heads not a multiple of kv_num_heads,
// update_rule outside linear/gated/delta/gated_delta, chunk_size < 1, decay absent for a gated
// rule or present for another (beta likewise for the delta rules), query/key/value not 3-D, packed
// dims the head counts do not divide, and shapes that disagree with the header's. Known dims are
// checked; dynamic ones are left to the kernel's call, where every dim is known.
LinearAttentionGeometry resolve_linear_attention(const NodeLabel& node, const AttributeMap& attrs,
                                                 const Shape& query, const Shape& key,
                                                 const Shape& value, const Shape* past_state,
                                                 const Shape* decay, const Shape* beta);

}  // namespace kiln::ops::nn
