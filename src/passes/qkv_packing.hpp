// Packs the Q, K and V projections of self-attention into one GEMM. Exporters spell BERT-style
// attention as three linear layers on the same hidden state X [B, S, E], each reshaped to heads:
//   Q = Reshape(MatMul(X, Wq, bq), [B, S, H, D]), likewise K and V  →  FusedAttention(Q, K, V,
//   mask)
// (the bias already folded into the MatMul by fuse_matmul_epilogues, the Transposes into "BSHD"
// layouts by fuse_attention). This pass rewrites that to
//   QKV = Reshape(MatMul(X, [Wq | Wk | Wv], [bq | bk | bv]), [0, 0, 3, H, D])
//   FusedAttention(QKV, -, -, mask) with qkv_packed = 1 (ops/attention.hpp),
// one GEMM launch (its bias still in cuBLASLt's epilogue) instead of three, read in place by the
// attention kernel. It applies where Q, K and V are three different MatMuls of the same input with
// constant rank-2 weights of one dtype (and all three with constant biases or none), equal
// attributes, each read only through its Reshape to [B, S, H, D] (the same for all three) by the
// attention node, whose q/k/v layouts are "BSHD" and K is not given transposed. The weights are
// concatenated in their dtype (after precision lowering they may be float16/bfloat16).
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Returns the number of attention nodes packed. The replaced weights, biases and reshape shapes
// are left unread; run dead-code elimination afterwards.
int pack_qkv_projections(ir::Graph& graph);

}  // namespace kiln::passes
