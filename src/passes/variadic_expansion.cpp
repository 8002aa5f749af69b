#include "passes/variadic_expansion.hpp"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

bool is_variadic(const ir::Node& node) {
  return node.domain.empty() && (node.op_type == "Sum" || node.op_type == "Mean" || node.op_type == "Min" ||
                                 node.op_type == "Max");
}

ir::ValueId add_intermediate(ir::Graph& graph, const ir::Node& node, DType dtype, int step) {
  ir::Value value;
  value.name = unique_value_name(graph, node.name + "/fold" + std::to_string(step));
  value.dtype = dtype;
  return graph.add_value(std::move(value));
}

ir::Node make_node(const ir::Graph& graph, std::string op_type, std::vector<ir::ValueId> inputs,
                   ir::ValueId output) {
  ir::Node node;
  node.name = graph.value(output).name;
  node.op_type = std::move(op_type);
  node.inputs = std::move(inputs);
  node.outputs = {output};
  return node;
}

// The two-input nodes that compute `node`, its output last.
std::vector<ir::Node> expand(ir::Graph& graph, const ir::Node& node) {
  const ir::ValueId output = node.outputs.at(0);
  const DType dtype = graph.value(output).dtype;
  std::vector<ir::Node> chain;
  if (node.inputs.size() == 1) {
    chain.push_back(make_node(graph, "Identity", {node.inputs[0]}, output));
    chain.back().name = node.name;
    return chain;
  }
  const bool mean = node.op_type == "Mean";
  const std::string step_op = node.op_type == "Sum" || mean ? "Add" : node.op_type;
  ir::ValueId accumulated = node.inputs[0];
  for (size_t i = 1; i < node.inputs.size(); ++i) {
    const bool last = i + 1 == node.inputs.size();
    const ir::ValueId into = last && !mean ? output : add_intermediate(graph, node, dtype, static_cast<int>(i));
    chain.push_back(make_node(graph, step_op, {accumulated, node.inputs[i]}, into));
    accumulated = into;
  }
  if (mean) {
    auto count = std::make_shared<HostTensor>(dtype, Shape{});
    count->bytes = scalar_bytes(dtype, static_cast<double>(node.inputs.size()));
    const ir::ValueId divisor = graph.add_constant(unique_value_name(graph, node.name + "/count"), count);
    chain.push_back(make_node(graph, "Div", {accumulated, divisor}, output));
  }
  chain.back().name = node.name;  // the node that writes the original output keeps its name
  return chain;
}

}  // namespace

int expand_variadic_elementwise(ir::Graph& graph) {
  int rewritten = 0;
  std::vector<ir::Node> nodes;
  nodes.reserve(graph.nodes.size());
  for (ir::Node& node : graph.nodes) {
    if (node.removed || !is_variadic(node) || node.inputs.size() == 2 || node.inputs.empty()) {
      nodes.push_back(std::move(node));
      continue;
    }
    for (ir::Node& step : expand(graph, node)) nodes.push_back(std::move(step));
    ++rewritten;
  }
  graph.nodes = std::move(nodes);
  graph.compact();
  return rewritten;
}

}  // namespace kiln::passes
