#include "passes/pass.hpp"

#include <algorithm>
#include <unordered_set>

#include "base/host_tensor.hpp"

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

std::string take_node_name(std::unordered_set<std::string>& taken, const std::string& base) {
  std::string name = base;
  for (int suffix = 1; taken.count(name) != 0; ++suffix) name = base + "_" + std::to_string(suffix);
  taken.insert(name);
  return name;
}

ir::ValueId append_node(ir::Graph& graph, std::vector<ir::Node>& out, ir::Node node, ir::ValueId output,
                        DType dtype) {
  if (output == ir::kNoValue) {
    ir::Value value;
    value.name = unique_value_name(graph, node.name);
    value.dtype = dtype;
    output = graph.add_value(std::move(value));
  }
  node.outputs = {output};
  out.push_back(std::move(node));
  return output;
}

std::optional<std::vector<int64_t>> constant_ints(const ir::Graph& graph, ir::ValueId id) {
  if (id == ir::kNoValue || !graph.is_constant(id)) return std::nullopt;
  const HostTensor& tensor = *graph.value(id).constant;
  if (tensor.dtype != DType::kInt64 && tensor.dtype != DType::kInt32) return std::nullopt;
  return read_indices(view_of(tensor));
}

}  // namespace kiln::passes
