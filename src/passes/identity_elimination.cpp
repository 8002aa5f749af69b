#include "passes/identity_elimination.hpp"

#include <algorithm>

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

bool is_removable(const ir::Graph& graph, const ir::Node& node) {
  if (node.removed || !is_default_domain(node)) return false;
  if (node.op_type == "Identity") return node.inputs.size() == 1 && node.outputs.size() == 1;
  if (node.op_type == "Dropout") return is_inference_dropout(graph, node);
  return false;
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
