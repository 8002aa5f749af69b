// Lowers ONNX Attention (opset 23; ops/onnx_attention.hpp) to ops every backend runs, spelled as
// the pattern attention_fusion.hpp recognises, so that CUDA engines fuse it into FusedAttention
// where the tensor-core kernel runs it and run it as MatMul / Softmax / ... elsewhere:
//   [rank 3: Reshape(X, [0, 0, heads, -1]) → Transpose(0, 2, 1, 3)]
//   [past: Concat(past, K or V, axis 2)]  [GQA: K and V heads repeated by Reshape/Expand/Reshape]
//   MatMul(Q · sqrt(scale), Transpose(K, 0, 1, 3, 2) · sqrt(scale))
//   [softcap: Tanh(x / c) · c]  [+ mask: a float mask, a bool mask as Where(m, 0, -inf), the
//   causal pattern as a constant (static lengths) or Trilu-based (dynamic), offset by the past]
//   → Softmax(-1) [→ Where(IsNaN(P), 0, P) when a mask can mask a whole row] → MatMul(P, V)
//   [rank 3: Transpose(0, 2, 1, 3) → Reshape(·, [0, 0, -1])]
// present_key / present_value / qk_matmul_output (modes 0-3) are the matching intermediate
// values. The CPU target keeps the node (its CPU kernel is the reference for this lowering), and so
// does this pass where a node has what the lowering does not spell yet (a mask shorter than the
// keys, opset 24's nonpad_kv_seqlen, opset 25's sliding window): a CUDA engine runs such a node
// as a host layer.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Rewrites every ONNX Attention node (shapes must be inferred; the new nodes' shapes are).
// Returns the number rewritten (kept nodes are not counted). Throws kUnsupported naming the node for what kiln cannot lower
// (see ops/onnx_attention.hpp: what the op itself rejects, plus a causal mask or default scale
// that needs a dynamic head size).
int lower_attention(ir::Graph& graph);

}  // namespace kiln::passes
