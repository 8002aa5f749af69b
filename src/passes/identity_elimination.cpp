#include "passes/identity_elimination.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

bool is_default_domain(const ir::Node& node) {
  return node.domain.empty() || node.domain == "ai.onnx";
}

// Dropout is the identity when training_mode is absent or a constant false, and its mask output
// is absent or unused.
bool is_inference_dropout(const ir::Graph& graph, const ir::Node& node) {
  if (node.inputs.empty() || node.outputs.empty() || node.outputs.size() > 2) return false;
  if (node.inputs.size() > 2 && node.inputs[2] != ir::kNoValue) {
    const ir::ValueId training_mode = node.inputs[2];
    if (!graph.is_constant(training_mode)) return false;
    const HostTensor& flag = *graph.value(training_mode).constant;
    if (flag.dtype != DType::kBool || flag.bytes.size() != 1 || flag.bytes[0] != 0) return false;
  }
  return node.outputs.size() < 2 || graph.use_count(node.outputs[1]) == 0;
}

// The integers of constant input `i` of `node`, or nullopt when it is absent or not constant.
std::optional<std::vector<int64_t>> constant_input(const ir::Graph& graph, const ir::Node& node, size_t i) {
  return constant_ints(graph, i < node.inputs.size() ? node.inputs[i] : ir::kNoValue);
}

bool all_equal(const std::optional<std::vector<int64_t>>& values, int64_t want) {
  return values && std::all_of(values->begin(), values->end(), [&](int64_t v) { return v == want; });
}

// Ops whose parameters, known at build time, make them copy their input unchanged: Pad by
// nothing, Slice of everything in order, Expand and Tile to the same shape, Cast to the same
// dtype, Concat of one input. Each would otherwise run a copy kernel (exports write them for
// shape-dependent amounts that fold to zero, e.g. a window attention's padding).
bool is_no_op(const ir::Graph& graph, const ir::Node& node) {
  if (node.inputs.empty() || node.inputs[0] == ir::kNoValue || node.outputs.size() != 1) return false;
  const ir::Value& in = graph.value(node.inputs[0]);
  const ir::Value& out = graph.value(node.outputs[0]);
  if (in.dtype != out.dtype) return false;
  const std::string& op = node.op_type;
  if (op == "Pad") return node.inputs.size() >= 2 && all_equal(constant_input(graph, node, 1), 0);
  if (op == "Cast") return true;
  // Slice and Expand copy only when the shape provably stays the same: static dims equal, dynamic
  // ones of one symbol (which a Slice gives a dim it leaves whole, an Expand one it broadcasts to 1).
  if (!graph.same_shape(node.inputs[0], node.outputs[0])) return false;
  if (op == "Slice") {
    // Every dim keeps its length, so with unit steps the slice starts at 0 and keeps all.
    return node.inputs.size() >= 3 && (node.inputs.size() < 5 || node.inputs[4] == ir::kNoValue ||
                                       all_equal(constant_input(graph, node, 4), 1));
  }
  if (op == "Expand") return true;
  if (op == "Tile") return all_equal(constant_input(graph, node, 1), 1);
  if (op == "Concat") return node.inputs.size() == 1;
  return false;
}

bool is_removable(const ir::Graph& graph, const ir::Node& node) {
  if (node.removed || !is_default_domain(node)) return false;
  if (node.op_type == "Identity") return node.inputs.size() == 1 && node.outputs.size() == 1;
  if (node.op_type == "Dropout") return is_inference_dropout(graph, node);
  return is_no_op(graph, node);
}

}  // namespace

size_t eliminate_identities(ir::Graph& graph) {
  size_t removed = 0;
  for (ir::Node& node : graph.nodes) {
    if (!is_removable(graph, node)) continue;
    const ir::ValueId source = node.inputs[0];
    const ir::ValueId result = node.outputs[0];
    if (source == ir::kNoValue) continue;
    if (is_graph_output(graph, result)) {
      // The output binding must keep its name: hand it to the source, unless the source is
      // itself bound or constant (emission then needs a copy, which this node already is).
      if (is_graph_input(graph, source) || graph.is_constant(source) ||
          is_graph_output(graph, source))
        continue;
      std::string output_name = graph.value(result).name;
      graph.value(result).name = unique_value_name(graph, output_name + "/eliminated");
      graph.value(source).name = std::move(output_name);
      std::replace(graph.outputs.begin(), graph.outputs.end(), result, source);
    }
    replace_uses(graph, result, source);
    node.removed = true;
    ++removed;
  }
  graph.compact();
  return removed;
}

}  // namespace kiln::passes
