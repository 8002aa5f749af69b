// ONNX Attention (ai.onnx opset 23), scaled dot-product attention as one node:
//   inputs  Q, K, V, attn_mask?, past_key?, past_value?
//   outputs Y, present_key?, present_value?, qk_matmul_output?
//   attributes is_causal (0), kv_num_heads, q_num_heads, qk_matmul_output_mode (0), scale
//   (1/sqrt(head_size)), softcap (0: off), softmax_precision.
// Per (batch, q head h, query i), with kv head h / (q_heads / kv_heads) (grouped-query attention)
// and T = past_length + kv_length keys (past_key then K):
//   s_j    = scale · q_i · k_j                       qk_matmul_output in mode 0
//   s_j    = softcap · tanh(s_j / softcap)           (softcap > 0)       mode 1
//   s_j   += bias_j: the float mask, or 0 / -inf for a bool mask's true / false, plus -inf where
//            is_causal and j > i + offset (bottom-right alignment), where the sliding window
//            excludes j (left_window_size >= 0 and j < i + offset - left, right_window_size >= 0
//            and j > i + offset + right) and, with nonpad_kv_seqlen, where j >= nonpad[b]  mode 2
//            offset: nonpad[b] - Sq with nonpad_kv_seqlen (opset 24), else past_length
//   p      = softmax(s), or 0 where every bias_j of the row is -inf        mode 3
//   Y_i    = Σ_j p_j v_j
// Q, K, V are rank 4 ([B, heads, S, head_size]) or rank 3 ([B, S, heads · head_size], with the
// q_num_heads and kv_num_heads attributes); Y has Q's rank, present_* are [B, kv_heads, T, ·],
// qk_matmul_output [B, q_heads, Sq, T]. softmax_precision is accepted for the floating types and
// ignored: kiln computes the softmax in float32 or wider. The attn_mask (bool, or Q's dtype)
// broadcasts to [B, q_heads, Sq, T].
// Not supported (kUnsupported naming the node): float64 tensors, V/past of another dtype than Q,
// integer masks. nonpad_kv_seqlen (int64 [B]) cannot come with past_key/past_value. Shared by the
// infer function, the CPU kernel (the reference) and the builder's lowering
// (passes/attention_lowering.hpp; it refuses the sliding window and nonpad_kv_seqlen for now).
#pragma once

#include <cstdint>
#include <string_view>

#include "base/attributes.hpp"
#include "kiln/types.hpp"

namespace kiln::ops {

// What one Attention node computes, from its attributes and input shapes. Dims may be
// kDynamicDim (build time); the kernel's are all known.
struct OnnxAttentionGeometry {
  bool rank3 = false;
  int64_t batch = kDynamicDim, q_heads = kDynamicDim, kv_heads = kDynamicDim;
  int64_t q_length = kDynamicDim, kv_length = kDynamicDim, past_length = 0;
  int64_t total_length = kDynamicDim;  // past_length + kv_length
  int64_t head_size = kDynamicDim, v_head_size = kDynamicDim;
  bool has_mask = false, mask_is_bool = false, has_past = false, causal = false;
  bool has_nonpad = false;  // input 6, nonpad_kv_seqlen
  int64_t left_window = -1, right_window = -1;  // -1: that side unbounded
  // Mask element strides along (batch, q head, query, key), 0 where it broadcasts; set when the
  // mask's shape is static.
  int64_t mask_strides[4] = {};
  // Keys the mask covers: its last dim may be shorter than total_length (then the keys past it
  // are masked, as the spec pads it with -inf); kDynamicDim when it covers them all (or
  // broadcasts) or is unknown.
  int64_t mask_keys = kDynamicDim;
  float scale = 0.0f;  // resolved: the attribute, else 1/sqrt(head_size) (0 while unknown)
  float softcap = 0.0f;
  int qk_output_mode = 0;
  Shape y_shape, present_key_shape, present_value_shape, qk_shape;
};

// Input shapes and dtypes of one node; `present` false for inputs it leaves out.
struct OnnxAttentionInput {
  bool present = false;
  DType dtype = DType::kFloat32;
  Shape shape;
};

// Validates attributes, dtypes and shapes (known dims only) and resolves the geometry. `inputs`
// holds up to 7 entries in the op's input order. Throws kiln::Error with "<label>: <problem>":
// kInvalidArgument for inconsistent shapes or attributes (naming the tensor or attribute, expected
// vs got), kUnsupported for the forms listed above.
OnnxAttentionGeometry resolve_onnx_attention(std::string_view label, const AttributeMap& attrs,
                                             const OnnxAttentionInput* inputs, size_t count);

}  // namespace kiln::ops
