#include "passes/pass.hpp"

#include <algorithm>
#include <unordered_set>

namespace kiln::passes {

bool is_graph_input(const ir::Graph& graph, ir::ValueId id) {
  return std::find(graph.inputs.begin(), graph.inputs.end(), id) != graph.inputs.end();
}

bool is_graph_output(const ir::Graph& graph, ir::ValueId id) {
  return std::find(graph.outputs.begin(), graph.outputs.end(), id) != graph.outputs.end();
}

std::vector<int32_t> consumers_of(const ir::Graph& graph, ir::ValueId id) {
  std::vector<int32_t> consumers;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const ir::Node& node = graph.nodes[i];
    if (node.removed) continue;
    if (std::find(node.inputs.begin(), node.inputs.end(), id) != node.inputs.end()) {
      consumers.push_back(static_cast<int32_t>(i));
    }
  }
  return consumers;
}

void replace_uses(ir::Graph& graph, ir::ValueId from, ir::ValueId to) {
  for (ir::Node& node : graph.nodes) {
    if (node.removed) continue;
    std::replace(node.inputs.begin(), node.inputs.end(), from, to);
  }
}

std::string unique_value_name(const ir::Graph& graph, const std::string& base) {
  std::unordered_set<std::string_view> taken;
  taken.reserve(graph.values.size());
  for (const ir::Value& v : graph.values) taken.insert(v.name);
  if (!taken.count(base)) return base;
  for (size_t suffix = 1;; ++suffix) {
    std::string candidate = base + "_" + std::to_string(suffix);
    if (!taken.count(candidate)) return candidate;
  }
}

std::string describe_node(const ir::Node& node) {
  return "node '" + node.name + "' (" + node.op_type + ")";
}

}  // namespace kiln::passes
