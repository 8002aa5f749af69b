// Fuses scaled dot-product attention, as exporters spell it out, into one FusedAttention node
// (ops/attention.hpp):
//   MatMul(Q·s1, Kᵀ·s2) [· or / scalar]* [+ mask] → Softmax(last axis) [→ Where(IsNaN(P), 0, P)] → MatMul(P, V)
// Kᵀ is recognised as Transpose(K, perm [0,1,3,2]), as the Reshape / Transpose(0,2,1) / Reshape
// sequence exporters emit for it, or else read as given (k_transposed). Transposes (0,2,1,3) in
// front of Q, K, V and behind the output are absorbed as BSHD layouts. Every value inside the
// matched chain must be read only by the chain; the tensors must be rank 4 with static shapes and
// one floating dtype. Values left unread are removed by dead-code elimination afterwards.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// With `tensor_core_shapes_only`, only chains the CUDA tensor-core kernel runs are fused
// (ops::attention_fits_tensor_cores); the rest keep their (cuBLAS) MatMuls.
// Returns the number of FusedAttention nodes created.
int fuse_attention(ir::Graph& graph, bool tensor_core_shapes_only = false);

}  // namespace kiln::passes
