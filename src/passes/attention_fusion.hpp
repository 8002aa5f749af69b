// Fuses scaled dot-product attention into one FusedAttention node (ops/attention.hpp) by what it
// computes, O = softmax(scale · Q·Kᵀ + mask) · V per (batch, head), whichever way an exporter
// spelled it. The pattern, matched from each Softmax outwards:
//
//   out      := MatMul(probs, V') [→ Casts that keep the dtype, one Transpose that keeps the
//               feature dim innermost]
//   probs    := Softmax(scores', last axis), then in any order: a Cast back to the scores' dtype,
//               the guard Where(IsNaN(P), 0, P) (nan_to_zero), an inference Dropout
//   scores'  := [Cast to float32] scores
//   scores   := an Add tree of one product and any number of masks, each of the product's shape
//               after broadcasting (several masks are summed into one mask input)
//   product  := MatMul(Q', Kᵀ') scaled by Mul/Div by one-element constants
//   Q', Kᵀ', V' := Q, Kᵀ and V seen through Reshape / Transpose / Slice / Split / Gather chains
//               and Casts that keep the dtype (strided_view.hpp), Q' and Kᵀ' also through Mul/Div
//               by one-element constants
//
// Scales multiply into the `scale` attribute wherever they sit (on Q, on Kᵀ, on both as PyTorch's
// decomposition puts sqrt(scale), or on the scores). Masks are whatever the Add tree adds: a float
// mask of any broadcastable shape, a boolean mask already turned additive by Where(mask, 0, -inf)
// or (1 - mask) · large_negative, a causal pattern (constant-folded from Trilu/Where or given as a
// constant): the kernels add it as the mask input, so a causal mask costs a mask read, not a
// special mode. Q, K and V are read in place where the view is a dense permutation of
// (batch, head, sequence, feature), the deepest such tensor preferred (a Reshape to its 4-d
// memory shape is added where needed: a view at run time); when Q, K and V are the three slices
// of one [B, S, 3, H, D] projection (timm's qkv Linear → reshape → permute → unbind), the node
// reads that tensor as qkv_packed. Rank-3 attention ([B·H, S, D] operands) runs with one head per
// batch entry. Values inside the pattern (from the product to the output) must be read only by
// it; Q/K/V's view chains may have other readers and stay for them. Values left unread are
// removed by dead-code elimination afterwards.
//
// ONNX Attention nodes (opset 23) are lowered first (attention_lowering.hpp) into exactly this
// pattern, so they fuse where the shapes fit and run as plain ops elsewhere.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// With `tensor_core_shapes_only`, only attention the CUDA tensor-core kernel runs is fused
// (ops::attention_fits_tensor_cores); the rest keep their (cuBLAS) MatMuls.
// Returns the number of FusedAttention nodes created.
int fuse_attention(ir::Graph& graph, bool tensor_core_shapes_only = false);

}  // namespace kiln::passes
