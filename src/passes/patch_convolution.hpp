// Rewrites patch-embedding convolutions (kernel == stride, no padding: ViT's 16x16/16 "patchify")
// into one GEMM. cuDNN runs such an NCHW conv with 3 input channels far from tensor-core speed,
// while the same work as a [N*(H/p)*(W/q), C*p*q] x [C*p*q, M] GEMM with the bias in cuBLASLt's
// epilogue is an order of magnitude faster. The rewrite of
//   Y = Conv(X [N, C, H, W], W [M, C, p, q], B [M])
// is
//   X -> Reshape [N, C, H/p, p, W/q, q] -> Transpose [0, 2, 4, 1, 3, 5]
//     -> Reshape [N*(H/p)*(W/q), C*p*q] -> MatMul(., W' [C*p*q, M], B) -> Reshape [N, H/p, W/q, M]
//     -> Transpose [0, 3, 1, 2] -> Y [N, M, H/p, W/q]
// where W' is W viewed as [M, C*p*q] and transposed at build time (same dtype as W), and the
// MatMul uses kiln's fused form (input 2: a bias of length M, see ops/gemm_ops.cpp).
//
// A Conv is rewritten when it is 2-D in NCHW (no kiln_layout or kiln_layout = "NCHW"), its kernel
// p x q equals its strides with p > 1 and q > 1, pads are all 0 (auto_pad NOTSET or VALID; SAME_*
// too, which pads nothing when the input divides), dilations are 1, group is 1, W is a constant,
// X's shape [N, C, H, W] has static non-zero C, H, W (N may be dynamic: the Reshapes copy or infer
// it) with H % p == 0 and W % q == 0, and it has no fused residual (kiln's input 3). A fused
// kiln_activation ("Relu") moves onto the MatMul: it is elementwise, so it commutes with the
// Reshape/Transpose that follow.
//
// When Y is only read by ViT's token flattening, Reshape [N, M, (H/p)*(W/q)] -> Transpose
// [0, 2, 1] (each output read once, Y not a graph output), the GEMM's rows already are the tokens:
// the tail becomes one Reshape of the MatMul's output to [N, (H/p)*(W/q), M] writing the
// Transpose's output value, and the conv's Transpose to NCHW and both tail nodes go.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// The other kind it rewrites: a 1x1 convolution of a 1x1 feature map (squeeze-excitation's), in
// NCHW or NHWC alike (both are X [N, C] and W [M, C] in memory there): X -> Reshape [N, C] ->
// MatMul(., W' [C, M], B) -> Reshape to Y's shape, two views around one GEMM (cuDNN took ~0.27 ms
// for each such conv on H100 at batch 32). The builder rewrites these after choosing layouts, so
// the convs still join NHWC regions.
enum class PatchKind {
  kPatchEmbedding,  // kernel == stride > 1, NCHW
  kOnePixel,        // 1x1 kernel on a 1x1 map, any layout
};

// Returns the number of convolutions of `kind` rewritten. Requires inferred shapes; infers the new
// nodes' outputs (the conv's output value, or the token tail's, keeps its id, name and shape). The
// replaced weights (and, with a token tail, the conv's output value) are left unread; run
// dead-code elimination afterwards.
int convert_patch_convolutions_to_matmul(ir::Graph& graph, PatchKind kind = PatchKind::kPatchEmbedding);

}  // namespace kiln::passes
