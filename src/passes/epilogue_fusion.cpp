#include "passes/epilogue_fusion.hpp"

#include <algorithm>

#include "passes/pass.hpp"

namespace kiln::passes {

void absorb_into(ir::Graph& graph, size_t from, size_t at) {
  ir::Node fused = std::move(graph.nodes[from]);
  graph.nodes[from] = ir::Node{};
  graph.nodes[from].removed = true;
  fused.outputs = graph.nodes[at].outputs;
  graph.nodes[at] = std::move(fused);
  for (ir::ValueId out : graph.nodes[at].outputs) graph.value(out).producer = static_cast<int32_t>(at);
}

int32_t sole_reader(const ir::Graph& graph, ir::ValueId value) {
  if (is_graph_output(graph, value)) return -1;
  const std::vector<int32_t> readers = consumers_of(graph, value);
  if (readers.size() != 1) return -1;
  const ir::Node& reader = graph.nodes[static_cast<size_t>(readers[0])];
  return std::count(reader.inputs.begin(), reader.inputs.end(), value) == 1 ? readers[0] : -1;
}

int32_t blocked_reader(const ir::Graph& graph, ir::ValueId value, const std::string& op, std::string* reason) {
  if (sole_reader(graph, value) >= 0) return -1;
  const std::vector<int32_t> readers = consumers_of(graph, value);
  for (int32_t index : readers) {
    const ir::Node& reader = graph.nodes[static_cast<size_t>(index)];
    if (reader.op_type != op) continue;
    const std::string& name = graph.value(value).name;
    if (is_graph_output(graph, value)) {
      *reason = "its output '" + name + "' is a graph output, so it must be written before the " + op;
    } else if (readers.size() > 1) {
      *reason = "its output '" + name + "' has " + std::to_string(readers.size()) +
                " readers; an epilogue must be the only one";
    } else {
      *reason = "the " + op + " reads its output '" + name + "' twice";
    }
    return index;
  }
  return -1;
}

std::string residual_mismatch(const ir::Graph& graph, ir::ValueId output, ir::ValueId other) {
  const ir::Value& o = graph.value(other);
  const ir::Value& c = graph.value(output);
  const std::string what = "Add's other input '" + o.name + "'";
  if (o.dtype != c.dtype) {
    return what + " is " + std::string(dtype_name(o.dtype)) + ", the output " + std::string(dtype_name(c.dtype));
  }
  if (graph.same_shape(output, other)) return "";
  const std::string dims = what + " has dims " + graph.describe_dims(other) + " vs " + graph.describe_dims(output);
  if (o.shape.size() != c.shape.size()) return dims + ": the Add broadcasts";
  for (size_t d = 0; d < c.shape.size(); ++d) {
    if (o.shape[d] != kDynamicDim && c.shape[d] != kDynamicDim && o.shape[d] != c.shape[d]) {
      return dims + ": the Add broadcasts";
    }
  }
  return dims + ": cannot prove equal";
}

}  // namespace kiln::passes
