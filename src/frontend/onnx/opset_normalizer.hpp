// Opset policy and normalisation: which ai.onnx opsets kiln accepts, and the rewriting of older
// op forms into the (opset 21) form src/ops/op_registry.hpp expects.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/attributes.hpp"
#include "base/host_tensor.hpp"
#include "frontend/onnx/onnx_importer.hpp"

namespace kiln::onnx {

// The ai.onnx opsets kiln accepts. Past 21 the ops kiln implements keep their semantics except
// where a new attribute or input says otherwise, and each of those is checked where the op reads
// its attributes: Attention's nonpad_kv_seqlen (24) and sliding window (25), SpaceToDepth's mode
// (28), Range's stash_type (27), Cast's round_mode (24, float8e8m0 only).
// The other changes up to 28 widen type lists or add ops.
inline constexpr int64_t kMinOpset = 6;
inline constexpr int64_t kMaxDocumentedOpset = 28;
inline constexpr int64_t kMaxAcceptedOpset = 28;

// Throws kiln::Error(kUnsupported) "<source>: <where>opset N is not supported (kiln supports
// 6-28)" when `version` is outside the accepted range. `where` prefixes the message ("" for
// the model, "function 'f': " for a function).
void check_ai_onnx_opset(int64_t version, const ImportOptions& options, const std::string& where);

// A node on its way into the IR: inputs by name, attributes already converted.
struct NormalizedNode {
  std::string name;
  std::string op_type;
  std::string domain;
  int64_t opset = 0;
  std::vector<std::string> inputs;  // "" for an absent optional input
  std::vector<std::string> outputs;
  AttributeMap attrs;
};

// Adds a constant (an attribute moved to an input) and returns the value name to use for it.
using AddConstantFn =
    std::function<std::string(const std::string& suggested_name, std::shared_ptr<HostTensor>)>;

// Rewrites `node` in place to the registry's form:
//   ReduceMean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare `axes` attribute (opset < 18) and
//   ReduceSum/Squeeze/Unsqueeze `axes` attribute (opset < 13) -> int64 input 1;
//   Split `split` attribute -> int64 input 1; Clip `min`/`max` attributes -> float inputs 1, 2;
//   before opset 10 Slice's starts/ends/axes and TopK's k attributes, before 11 Pad's pads and
//   value attributes -> inputs; Dropout's ratio attribute (before 12) and BatchNormalization's
//   spatial = 1 (before 9) dropped, spatial = 0 and Resize before opset 11 refused (kUnsupported);
//   attributes equal to their default and irrelevant to inference are dropped.
// Throws kiln::Error(kInvalidArgument) naming the node when an attribute has the wrong kind, and
// kUnsupported for an Attention node in a model importing ai.onnx opset < 23 (the op's first).
void normalize_node(NormalizedNode& node, const AddConstantFn& add_constant);

// Ops kiln knows under a newer name, which normalize_node gives them: Scatter (opsets 9-10), now
// ScatterElements.
bool is_renamed_legacy_op(std::string_view op_type, const std::string& domain);

// Nodes of opsets before 13 whose semantics differ from opset 13's in a way one node cannot say:
// Softmax, LogSoftmax and Hardmax (which worked on the input coerced to 2-D) become Flatten, the op over
// the last axis, Shape and Reshape (writing the node's output). Other nodes come back alone.
// `fresh_name(suggested)` names the new intermediate values. Runs before normalize_node.
std::vector<NormalizedNode> expand_pre_opset13_node(
    NormalizedNode node, const std::function<std::string(const std::string&)>& fresh_name);

}  // namespace kiln::onnx
