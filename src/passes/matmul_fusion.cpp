#include "passes/matmul_fusion.hpp"

#include <algorithm>

#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

// The single live reader of `value` (read once), or -1.
int32_t sole_reader(const ir::Graph& graph, ir::ValueId value) {
  if (is_graph_output(graph, value)) return -1;
  const std::vector<int32_t> readers = consumers_of(graph, value);
  if (readers.size() != 1) return -1;
  const ir::Node& reader = graph.nodes[static_cast<size_t>(readers[0])];
  return std::count(reader.inputs.begin(), reader.inputs.end(), value) == 1 ? readers[0] : -1;
}

// Moves node `from` into position `at`, taking the outputs of the node there.
void absorb_into(ir::Graph& graph, size_t from, size_t at) {
  ir::Node fused = std::move(graph.nodes[from]);
  graph.nodes[from] = ir::Node{};
  graph.nodes[from].removed = true;
  fused.outputs = graph.nodes[at].outputs;
  graph.nodes[at] = std::move(fused);
}

// A constant that adds the same vector of N values to every row: shape [..., N] with all leading
// dims 1. Returns the id of a 1-D [N] constant holding it (a new value when the shape differs).
ir::ValueId row_bias(ir::Graph& graph, ir::ValueId candidate, int64_t n, DType dtype) {
  if (!graph.is_constant(candidate)) return ir::kNoValue;
  const ir::Value& value = graph.value(candidate);
  if (value.dtype != dtype || value.shape.empty() || value.shape.back() != n || shape_numel(value.shape) != n) {
    return ir::kNoValue;
  }
  if (value.shape.size() == 1) return candidate;
  auto reshaped = std::make_shared<HostTensor>(*value.constant);
  reshaped->shape = {n};
  return graph.add_constant(unique_value_name(graph, value.name + "/row"), std::move(reshaped));
}

}  // namespace

int fuse_matmul_epilogues(ir::Graph& graph) {
  int fusions = 0;
  for (size_t index = 0; index < graph.nodes.size(); ++index) {
    size_t node = index;
    const std::string op = graph.nodes[node].op_type;
    if (graph.nodes[node].removed || (op != "MatMul" && op != "Gemm")) continue;
    if (graph.nodes[node].attrs.has("kiln_activation")) continue;

    if (op == "MatMul" && graph.nodes[node].inputs.size() == 2) {
      const ir::ValueId out = graph.nodes[node].outputs[0];
      const ir::Value& b = graph.value(graph.nodes[node].inputs[1]);
      const int32_t reader = sole_reader(graph, out);
      if (reader >= 0 && b.shape.size() >= 2 && b.shape.back() != kDynamicDim &&
          graph.nodes[static_cast<size_t>(reader)].op_type == "Add") {
        const ir::Node& add = graph.nodes[static_cast<size_t>(reader)];
        const ir::ValueId other = add.inputs[0] == out ? add.inputs[1] : add.inputs[0];
        const ir::ValueId bias = row_bias(graph, other, b.shape.back(), graph.value(out).dtype);
        // The Add must not broadcast the product to a larger shape.
        if (bias != ir::kNoValue && graph.value(other).shape.size() <= graph.value(out).shape.size()) {
          graph.nodes[node].inputs.push_back(bias);
          absorb_into(graph, node, static_cast<size_t>(reader));
          node = static_cast<size_t>(reader);
          ++fusions;
        }
      }
    }
    const int32_t reader = sole_reader(graph, graph.nodes[node].outputs[0]);
    if (reader >= 0 && graph.nodes[static_cast<size_t>(reader)].op_type == "Relu") {
      graph.nodes[node].attrs.set("kiln_activation", Attribute::of_string("Relu"));
      absorb_into(graph, node, static_cast<size_t>(reader));
      ++fusions;
    }
  }
  if (fusions) graph.compact();
  return fusions;
}

}  // namespace kiln::passes
