// ai.onnx ops kiln runs as compositions of other ops, most of them ones the ONNX standard defines
// as functions: the importer rewrites each such node into the primitive nodes that compute it, so
// every backend runs it and fusion grouping sees its pointwise parts. The expansions are kiln's
// own, written from each op's documented semantics:
//   RMSNormalization (23): X / sqrt(mean(X^2 over axes axis..-1) + epsilon) * scale, in float32
//     when stash_type = 1 (the default), then cast back to X's type before the scale;
//   Swish (24): X * Sigmoid(alpha * X);
//   Shrink (9): X + bias where X < -lambd, X - bias where X > lambd, else 0;
//   MeanVarianceNormalization (13): (X - mean) / (sqrt(mean(X^2) - mean^2) + 1e-9) over `axes`;
//   NegativeLogLikelihoodLoss (12): loss = -input[n, target, d...] * weight[target] (0 where
//     target == ignore_index), summed, averaged over the weights that count, or per element;
//   SoftmaxCrossEntropyLoss (12): that loss on LogSoftmax(scores, axis 1), whose value is the
//     optional second output (log_prob);
//   Hardmax (13; earlier opsets first coerce to 2-D, as Softmax): 1 at the first maximum along
//     `axis`, 0 elsewhere (ArgMax against each element's index along the axis);
//   LpNormalization: X / ReduceL1 or ReduceL2 of X along `axis` (p = 1 or 2), an all-zero slice
//     staying zero;
//   OneHot (11): values[1] where the class number along the new `axis` equals the index (negative
//     indices counting from depth), values[0] elsewhere (out-of-range indices match no class);
//   CenterCropPad (18): a centred Slice of the axes larger than `shape`, then a centred zero Pad of
//     those smaller (the odd element going after), over `axes` (all by default);
//   HannWindow, HammingWindow, BlackmanWindow (17): sum_k a_k cos(2 pi k n / N), n < size, N = size
//     (periodic) or size - 1, in float32, cast to output_datatype;
//   Upsample (7-9, deprecated since 10): Resize with asymmetric coordinates, mode nearest (floor)
//     or linear, its scales an attribute (7) or input 1 (9).
// And the opset 1-6 forms whose broadcasting later opsets changed: Add/Sub/Mul/Div/Pow with
// broadcast = 1 and `axis` (B's dims aligned with A's from `axis` on) and PRelu (a slope with fewer
// dims than X aligned with X's channel axis 1) become a Reshape of the second input to the
// numpy-broadcast form, then the op.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "frontend/onnx/opset_normalizer.hpp"

namespace kiln::onnx {

// Whether `op_type` in `domain` ("" for ai.onnx) is one of the ops above.
bool is_expanded_function_op(std::string_view op_type, const std::string& domain);

// The nodes computing `node` (whose outputs they write under the node's output names), or the
// node alone when it is not one of the ops above. `fresh_name(suggested)` names intermediate
// values; `add_constant` adds the literals. Throws kiln::Error(kInvalidArgument) naming the node
// for a wrong input or output count or a bad attribute (an unknown reduction, p not 1 or 2).
std::vector<NormalizedNode> expand_function_op(NormalizedNode node,
                                               const std::function<std::string(const std::string&)>& fresh_name,
                                               const AddConstantFn& add_constant);

}  // namespace kiln::onnx
