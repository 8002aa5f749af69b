#include "passes/conv_fusion.hpp"

#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

void note_miss(const ir::Graph& graph, std::vector<EpilogueMiss>* misses, size_t conv, int32_t reader,
               std::string reason) {
  if (!misses) return;
  const ir::Node& node = graph.nodes[conv];
  const ir::Node& r = graph.nodes[static_cast<size_t>(reader)];
  misses->push_back(EpilogueMiss{node.name, node.op_type, r.name, r.op_type, std::move(reason)});
}

// The Relu after `conv` (which may already hold a residual), or a miss when one reads it but not as
// its only reader.
void fuse_relu(ir::Graph& graph, size_t conv, std::vector<EpilogueMiss>* misses, int& fusions) {
  const ir::ValueId out = graph.nodes[conv].outputs[0];
  const int32_t reader = sole_reader(graph, out);
  if (reader >= 0 && graph.nodes[static_cast<size_t>(reader)].op_type == "Relu") {
    graph.nodes[conv].attrs.set("kiln_activation", Attribute::of_string("Relu"));
    absorb_into(graph, conv, static_cast<size_t>(reader));
    ++fusions;
    return;
  }
  std::string reason;
  const int32_t blocked = blocked_reader(graph, out, "Relu", &reason);
  if (blocked >= 0) note_miss(graph, misses, conv, blocked, std::move(reason));
}

}  // namespace

int fuse_conv_epilogues(ir::Graph& graph, std::vector<EpilogueMiss>* misses) {
  int fusions = 0;
  for (size_t index = 0; index < graph.nodes.size(); ++index) {
    size_t conv = index;
    if (graph.nodes[conv].removed || graph.nodes[conv].op_type != "Conv") continue;
    if (graph.nodes[conv].attrs.has("kiln_activation") || graph.nodes[conv].inputs.size() > 3) continue;

    // Residual Add: the Conv's output plus a tensor of the same shape and dtype.
    const ir::ValueId conv_out = graph.nodes[conv].outputs[0];
    const int32_t reader = sole_reader(graph, conv_out);
    if (reader >= 0 && graph.nodes[static_cast<size_t>(reader)].op_type == "Add") {
      const ir::Node& add = graph.nodes[static_cast<size_t>(reader)];
      const ir::ValueId other = add.inputs[0] == conv_out ? add.inputs[1] : add.inputs[0];
      const std::string mismatch = residual_mismatch(graph, conv_out, other);
      if (mismatch.empty()) {
        ir::Node& node = graph.nodes[conv];
        node.inputs.resize(3, ir::kNoValue);
        node.inputs.push_back(other);
        absorb_into(graph, conv, static_cast<size_t>(reader));
        conv = static_cast<size_t>(reader);
        ++fusions;
      } else {
        note_miss(graph, misses, conv, reader, mismatch);
        continue;  // a Relu after the Add is not the Conv's
      }
    } else {
      std::string reason;
      const int32_t blocked = blocked_reader(graph, conv_out, "Add", &reason);
      if (blocked >= 0) note_miss(graph, misses, conv, blocked, std::move(reason));
    }
    fuse_relu(graph, conv, misses, fusions);
  }
  if (fusions) graph.compact();
  return fusions;
}

}  // namespace kiln::passes
