#include "passes/transpose_composition.hpp"

#include <vector>

#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

bool is_transpose(const ir::Node& node) {
  return !node.removed && node.op_type == "Transpose" && node.domain.empty() && node.inputs.size() == 1 &&
         node.outputs.size() == 1 && node.inputs[0] >= 0;
}

// The node's permutation, or empty when it has none it can be trusted with (absent: reversal,
// which needs the rank).
std::vector<int64_t> permutation(const ir::Graph& graph, const ir::Node& node) {
  if (node.attrs.has("perm")) return node.attrs.get_ints("perm");
  const size_t rank = graph.value(node.inputs[0]).shape.size();
  std::vector<int64_t> reversed(rank);
  for (size_t i = 0; i < rank; ++i) reversed[i] = static_cast<int64_t>(rank - 1 - i);
  return reversed;
}

bool is_identity(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != static_cast<int64_t>(i)) return false;
  return true;
}

}  // namespace

size_t compose_transposes(ir::Graph& graph) {
  size_t changed = 0;
  for (ir::Node& node : graph.nodes) {
    if (!is_transpose(node)) continue;
    const int32_t producer = graph.value(node.inputs[0]).producer;
    if (producer < 0) continue;
    const ir::Node& first = graph.nodes[static_cast<size_t>(producer)];
    if (!is_transpose(first)) continue;
    const std::vector<int64_t> outer = permutation(graph, node);
    const std::vector<int64_t> inner = permutation(graph, first);
    if (outer.size() != inner.size()) continue;
    // Output dim i of the pair is dim inner[outer[i]] of the first Transpose's input.
    std::vector<int64_t> composed(outer.size());
    bool valid = true;
    for (size_t i = 0; i < outer.size() && valid; ++i) {
      valid = outer[i] >= 0 && outer[i] < static_cast<int64_t>(inner.size());
      if (valid) composed[i] = inner[static_cast<size_t>(outer[i])];
    }
    if (!valid) continue;
    node.inputs[0] = first.inputs[0];
    node.attrs.set("perm", Attribute::of_ints(std::move(composed)));
    ++changed;
  }
  for (ir::Node& node : graph.nodes) {
    if (!is_transpose(node) || !is_identity(permutation(graph, node))) continue;
    if (is_graph_output(graph, node.outputs[0])) continue;
    replace_uses(graph, node.outputs[0], node.inputs[0]);
    node.removed = true;
    ++changed;
  }
  if (changed > 0) graph.compact();
  return changed;
}

}  // namespace kiln::passes
