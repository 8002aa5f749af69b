// FusedAttention (kiln extension, made by the builder's attention fusion for CUDA engines):
//   out = P · V,  P = softmax_lastaxis(scale · Q · Kᵀ + mask),  with P's NaNs replaced by 0 when
//   nan_to_zero is set (what an exported `Where(IsNaN(P), 0, P)` guard computes).
// Two forms, chosen by the attribute qkv_packed (int, default 0):
//  - separate (qkv_packed 0): inputs Q, K, V, optional additive mask (input 3, broadcastable to
//    [B, H, Sq, Sk], Q's dtype). Q, K and V are rank 4; attributes say how each is laid out so the
//    fusion can absorb the Transposes around attention:
//      q_layout, k_layout, v_layout: the letters B (batch), H (head), S (sequence; K's and V's is
//        the key index) and D (feature) in memory order, outermost first: "BHSD" (default),
//        "BSHD" (heads interleaved), "SBHD" (sequence first), ... Every kernel reads through
//        strides, so any order works; the CUDA kernel needs D innermost;
//      k_transposed (int, default 0): K is given as [B, H, D, Sk], the older spelling of k_layout
//        "BHDS" (k_layout must then be left "BHSD").
//  - packed (qkv_packed 1, self-attention fed by one QKV projection GEMM): input 0 is QKV, whose
//    five dims B (batch), S (sequence), T (which of q/k/v: 3), H (head) and D (feature) lie in the
//    memory order of attribute qkv_layout (default "BSTHD": [B, S, 3, H, D], timm's; "SBTHD" is
//    nn.MultiheadAttention's [S, B, 3, H, D]); Q, K and V share S and D. Inputs 1 and 2 are absent
//    (ir::kNoValue, -1 in engines) and input 3 is the optional mask, so the node has 1 input, or 4
//    with a mask. q_layout, k_layout, v_layout must be left out and k_transposed must be 0.
// Both forms: out_layout (letters in memory order like q_layout, default "BHSD"; the output's
// shape lists the dims in that order), scale (float, required), nan_to_zero (int, default 0). The
// op's arity is 1..4; the infer function checks which inputs the form needs. The geometry below is
// shared by the infer function and every backend's kernel.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/attributes.hpp"
#include "base/error.hpp"
#include "kiln/types.hpp"

namespace kiln::ops {

struct AttentionGeometry {
  int64_t batch = 0, heads = 0, query_length = 0, key_length = 0, head_dim = 0, value_dim = 0;
  // Packed form: Q, K and V are all read from input 0, starting at element offsets q_offset,
  // k_offset and v_offset (0, and once and twice T's stride). Separate form: from inputs 0, 1, 2,
  // offsets 0.
  bool qkv_packed = false;
  int64_t q_offset = 0, k_offset = 0, v_offset = 0;
  // Element strides along (batch, head, sequence, feature) of each tensor; K's "sequence" is the
  // key index and its "feature" the head dim whatever its layout. Mask strides are along
  // (batch, head, query, key), 0 where the mask broadcasts.
  int64_t q_strides[4] = {}, k_strides[4] = {}, v_strides[4] = {}, out_strides[4] = {};
  int64_t mask_strides[4] = {};
  bool has_mask = false;
  bool nan_to_zero = false;
  float scale = 1.0f;
  Shape out_shape;
};

// Validates shapes and attributes and derives the geometry. `k`, `v` and `mask` are null where
// the node leaves that input out (K and V: the packed form, where `q` is the QKV tensor).
// Throws kiln::Error(kInvalidArgument) "<label>: <problem>" naming the tensor and the expected vs
// actual shape or attribute.
AttentionGeometry resolve_attention(std::string_view label, const AttributeMap& attrs,
                                    const Shape& q, const Shape* k, const Shape* v,
                                    const Shape* mask);
// The separate form's shorthand: K and V present.
AttentionGeometry resolve_attention(std::string_view label, const AttributeMap& attrs,
                                    const Shape& q, const Shape& k, const Shape& v,
                                    const Shape* mask);

// resolve_attention on a kernel's context (cpu::KernelContext or cuda::LaunchContext: `attrs` and
// `inputs` views); inputs past the end or not present() are passed as absent.
template <typename KernelContext>
AttentionGeometry resolve_attention_inputs(std::string_view label, const KernelContext& ctx) {
  const auto shape = [&](size_t i) -> const Shape* {
    return i < ctx.inputs.size() && ctx.inputs[i].present() ? &ctx.inputs[i].shape : nullptr;
  };
  const Shape* q = shape(0);
  if (q == nullptr) fail(ErrorCode::kInvalidArgument, label, ": input 0 (Q or QKV) is missing");
  return resolve_attention(label, ctx.attrs, *q, shape(1), shape(2), shape(3));
}

// Whether CUDA's tensor-core kernel runs `geometry` in `dtype`: float16 or bfloat16, head dims
// multiples of 16 up to 128, the feature dim of Q, K, V and the output contiguous (K not given
// transposed) and their other strides and offsets multiples of 8 elements (16-byte rows), at most
// 65535 batches and heads (grid dims). The builder fuses only such attention.
bool attention_fits_tensor_cores(DType dtype, const AttentionGeometry& geometry);

}  // namespace kiln::ops
