#include "passes/cpu_activation_fusion.hpp"

#include <cmath>
#include <optional>

#include "passes/epilogue_fusion.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

// The live readers of `value` (none when it is a graph output), each reading it once.
std::vector<int32_t> readers_once(const ir::Graph& graph, ir::ValueId value) {
  if (is_graph_output(graph, value)) return {};
  std::vector<int32_t> readers = consumers_of(graph, value);
  for (int32_t r : readers) {
    int reads = 0;
    for (ir::ValueId in : graph.nodes[static_cast<size_t>(r)].inputs) reads += in == value;
    if (reads != 1) return {};
  }
  return readers;
}

// A constant float32 scalar input (one element), or nothing.
std::optional<float> scalar_constant(const ir::Graph& graph, ir::ValueId id) {
  if (!graph.is_constant(id)) return std::nullopt;
  const HostTensor& t = *graph.value(id).constant;
  if (t.dtype != DType::kFloat32 || shape_numel(t.shape) != 1) return std::nullopt;
  return t.data<float>()[0];
}

void remove(ir::Graph& graph, size_t index) {
  graph.nodes[index] = ir::Node{};
  graph.nodes[index].removed = true;
}

}  // namespace

int fuse_cpu_conv_activations(ir::Graph& graph) {
  int fusions = 0;
  for (size_t conv = 0; conv < graph.nodes.size(); ++conv) {
    ir::Node& node = graph.nodes[conv];
    if (node.removed || node.op_type != "Conv" || !node.domain.empty() || node.attrs.has("kiln_activation")) continue;
    const ir::ValueId out = node.outputs[0];
    if (graph.value(out).dtype != DType::kFloat32) continue;
    const std::vector<int32_t> readers = readers_once(graph, out);
    if (readers.size() == 1) {
      const auto at = static_cast<size_t>(readers[0]);
      const ir::Node& reader = graph.nodes[at];
      if (!reader.domain.empty()) continue;
      if (reader.op_type == "Sigmoid" || reader.op_type == "Tanh" || reader.op_type == "HardSwish") {
        graph.nodes[conv].attrs.set("kiln_activation", Attribute::of_string(reader.op_type));
      } else if (reader.op_type == "Clip") {
        std::optional<float> low, high;
        const auto bound = [&](size_t i, std::optional<float>& into) {
          if (i >= reader.inputs.size() || reader.inputs[i] < 0) return true;
          into = scalar_constant(graph, reader.inputs[i]);
          return into.has_value() && !std::isnan(*into);
        };
        if (reader.inputs[0] != out || !bound(1, low) || !bound(2, high)) continue;
        ir::Node& fused = graph.nodes[conv];
        fused.attrs.set("kiln_activation", Attribute::of_string("Clip"));
        if (low) fused.attrs.set("kiln_clip_min", Attribute::of_float(*low));
        if (high) fused.attrs.set("kiln_clip_max", Attribute::of_float(*high));
      } else {
        continue;
      }
      absorb_into(graph, conv, at);
      ++fusions;
      continue;
    }
    if (readers.size() != 2) continue;
    // SiLU: Sigmoid(out) and Mul(out, sigmoid) in either operand order.
    size_t sigmoid = graph.nodes.size(), mul = graph.nodes.size();
    for (int32_t r : readers) {
      const ir::Node& reader = graph.nodes[static_cast<size_t>(r)];
      if (!reader.domain.empty()) continue;
      if (reader.op_type == "Sigmoid") sigmoid = static_cast<size_t>(r);
      if (reader.op_type == "Mul") mul = static_cast<size_t>(r);
    }
    if (sigmoid == graph.nodes.size() || mul == graph.nodes.size()) continue;
    const ir::ValueId gate = graph.nodes[sigmoid].outputs[0];
    const std::vector<int32_t> gate_readers = readers_once(graph, gate);
    const ir::Node& product = graph.nodes[mul];
    const bool operands = (product.inputs[0] == out && product.inputs[1] == gate) ||
                          (product.inputs[0] == gate && product.inputs[1] == out);
    if (gate_readers.size() != 1 || static_cast<size_t>(gate_readers[0]) != mul || !operands) continue;
    if (graph.value(product.outputs[0]).shape != graph.value(out).shape) continue;
    graph.nodes[conv].attrs.set("kiln_activation", Attribute::of_string("Silu"));
    // The Mul comes after the Sigmoid (it reads it), so the fused Conv takes its place.
    remove(graph, sigmoid);
    absorb_into(graph, conv, mul);
    ++fusions;
  }
  if (fusions) graph.compact();
  return fusions;
}

}  // namespace kiln::passes
