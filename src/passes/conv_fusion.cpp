#include "passes/conv_fusion.hpp"

#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

// The single live reader of `value`, or -1 when there are several, none, or it is a graph output.
int32_t sole_reader(const ir::Graph& graph, ir::ValueId value) {
  if (is_graph_output(graph, value)) return -1;
  const std::vector<int32_t> readers = consumers_of(graph, value);
  if (readers.size() != 1) return -1;
  const ir::Node& reader = graph.nodes[static_cast<size_t>(readers[0])];
  int reads = 0;
  for (ir::ValueId in : reader.inputs) reads += in == value;
  return reads == 1 ? readers[0] : -1;
}

// Moves the Conv at `conv` to position `at` (replacing the node there) with `outputs`.
void absorb_into(ir::Graph& graph, size_t conv, size_t at) {
  ir::Node fused = std::move(graph.nodes[conv]);
  graph.nodes[conv] = ir::Node{};
  graph.nodes[conv].removed = true;
  fused.outputs = graph.nodes[at].outputs;
  graph.nodes[at] = std::move(fused);
  for (ir::ValueId out : graph.nodes[at].outputs) graph.value(out).producer = static_cast<int32_t>(at);
}

}  // namespace

int fuse_conv_epilogues(ir::Graph& graph) {
  int fusions = 0;
  for (size_t index = 0; index < graph.nodes.size(); ++index) {
    size_t conv = index;
    if (graph.nodes[conv].removed || graph.nodes[conv].op_type != "Conv") continue;
    if (graph.nodes[conv].attrs.has("kiln_activation") || graph.nodes[conv].inputs.size() > 3) continue;

    // Residual Add: the Conv's output plus a tensor of the same shape and dtype.
    int32_t reader = sole_reader(graph, graph.nodes[conv].outputs[0]);
    if (reader >= 0 && graph.nodes[static_cast<size_t>(reader)].op_type == "Add") {
      const ir::Node& add = graph.nodes[static_cast<size_t>(reader)];
      const ir::ValueId conv_out = graph.nodes[conv].outputs[0];
      const ir::ValueId other = add.inputs[0] == conv_out ? add.inputs[1] : add.inputs[0];
      const ir::Value& o = graph.value(other);
      const ir::Value& c = graph.value(conv_out);
      if (other != conv_out && o.shape == c.shape && o.dtype == c.dtype && shape_is_static(c.shape)) {
        ir::Node& node = graph.nodes[conv];
        node.inputs.resize(3, ir::kNoValue);
        node.inputs.push_back(other);
        absorb_into(graph, conv, static_cast<size_t>(reader));
        conv = static_cast<size_t>(reader);
        ++fusions;
      }
    }
    // Relu.
    reader = sole_reader(graph, graph.nodes[conv].outputs[0]);
    if (reader >= 0 && graph.nodes[static_cast<size_t>(reader)].op_type == "Relu") {
      graph.nodes[conv].attrs.set("kiln_activation", Attribute::of_string("Relu"));
      absorb_into(graph, conv, static_cast<size_t>(reader));
      ++fusions;
    }
  }
  if (fusions) graph.compact();
  return fusions;
}

}  // namespace kiln::passes
