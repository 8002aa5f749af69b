// FusedAttention (kiln extension, made by the builder's attention fusion for CUDA engines):
//   out = P · V,  P = softmax_lastaxis(scale · Q · Kᵀ + mask),  with P's NaNs replaced by 0 when
//   nan_to_zero is set (what an exported `Where(IsNaN(P), 0, P)` guard computes).
// Inputs: Q, K, V, optional additive mask (input 3, broadcastable to [B, H, Sq, Sk], Q's dtype).
// Every tensor is rank 4; attributes say how each is laid out so the fusion can absorb the
// Transposes around attention:
//   q_layout, k_layout, v_layout, out_layout: "BHSD" (default) or "BSHD";
//   k_transposed (int, default 0): K is given as [B, H, D, Sk] (k_layout must then be "BHSD");
//   scale (float, required), nan_to_zero (int, default 0).
// The geometry below is shared by the infer function and every backend's kernel.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/attributes.hpp"
#include "kiln/types.hpp"

namespace kiln::ops {

struct AttentionGeometry {
  int64_t batch = 0, heads = 0, query_length = 0, key_length = 0, head_dim = 0, value_dim = 0;
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

// Validates shapes and attributes and derives the geometry. `mask` is null without a mask.
// Throws kiln::Error(kInvalidArgument) "<label>: <problem>" naming the tensor and the expected vs
// actual shape or attribute.
AttentionGeometry resolve_attention(std::string_view label, const AttributeMap& attrs, const Shape& q,
                                    const Shape& k, const Shape& v, const Shape* mask);

// Whether CUDA's tensor-core kernel runs `geometry` in `dtype`: float16 or bfloat16, head dims
// multiples of 16 up to 128, each tensor's feature dim contiguous (K not given transposed) and its
// other strides multiples of 8 elements (16-byte rows). The builder fuses only such attention.
bool attention_fits_tensor_cores(DType dtype, const AttentionGeometry& geometry);

}  // namespace kiln::ops
