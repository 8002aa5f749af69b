// FlexAttention (ai.onnx.preview, opset 1), expanded while importing into ops every backend runs:
//   scores = (Q * sqrt(scale)) @ (K * sqrt(scale))^T   in Q's type (K, V repeated per query-head
//                                                      group when q_num_heads != kv_num_heads)
//   scores = score_mod(Cast(scores, softmax type))     the graph attribute's body, inlined
//   probs  = prob_mod(Softmax(scores, axis -1))        likewise
//   Y      = Cast(probs @ Cast(V, softmax type), V's type)
// The softmax type is softmax_precision when given, else float32 for 16-bit inputs and the input
// type otherwise. Because the modifier bodies become ordinary nodes (their Shape/Range index
// arithmetic folds at build time for static shapes), any body kiln can import runs.
#pragma once

#include <string>

#include "frontend/onnx/build_time_control_flow.hpp"
#include "frontend/onnx/function_inliner.hpp"

namespace kiln::onnx {

inline constexpr std::string_view kPreviewDomain = "ai.onnx.preview";

// True for FlexAttention of ai.onnx.preview (canonical domain), the one op of that domain kiln
// runs.
bool is_flex_attention(const std::string& op_type, const std::string& domain);

// Adds the nodes computing `node` (a FlexAttention whose inputs and captured outer values are
// defined) to `host`, writing its output under the node's output name. Throws kiln::Error naming
// the node: kUnsupported when the domain is not imported at opset 1, for an unknown attribute, a
// softmax_precision other than FLOAT/FLOAT16/BFLOAT16/DOUBLE, inputs that are not rank-4 floating
// tensors, head counts unknown at build time, or (without `scale`) a head size unknown at build
// time; kInvalidArgument for mismatched Q/K/V dims; kCorruptFile for a wrong input/output count
// or a modifier body without exactly one input and one output.
void expand_flex_attention(const FlatNode& node, ImportGraphHost& host);

}  // namespace kiln::onnx
