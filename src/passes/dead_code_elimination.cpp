#include "passes/dead_code_elimination.hpp"

#include <vector>

namespace kiln::passes {
namespace {

size_t remove_dead_nodes(ir::Graph& graph) {
  std::vector<bool> needed(graph.values.size(), false);
  for (ir::ValueId id : graph.outputs) needed[static_cast<size_t>(id)] = true;
  size_t removed = 0;
  for (size_t i = graph.nodes.size(); i-- > 0;) {
    ir::Node& node = graph.nodes[i];
    if (node.removed) continue;
    bool live = false;
    for (ir::ValueId out : node.outputs) live = live || needed[static_cast<size_t>(out)];
    if (!live) {
      node.removed = true;
      ++removed;
      continue;
    }
    for (ir::ValueId in : node.inputs)
      if (in != ir::kNoValue) needed[static_cast<size_t>(in)] = true;
  }
  graph.compact();
  return removed;
}

size_t remove_unreferenced_values(ir::Graph& graph) {
  std::vector<bool> referenced(graph.values.size(), false);
  auto mark = [&](ir::ValueId id) {
    if (id != ir::kNoValue) referenced[static_cast<size_t>(id)] = true;
  };
  for (ir::ValueId id : graph.inputs) mark(id);
  for (ir::ValueId id : graph.outputs) mark(id);
  for (const ir::Node& node : graph.nodes) {
    for (ir::ValueId id : node.inputs) mark(id);
    for (ir::ValueId id : node.outputs) mark(id);
  }
  std::vector<ir::ValueId> new_id(graph.values.size(), ir::kNoValue);
  std::vector<ir::Value> kept;
  kept.reserve(graph.values.size());
  for (size_t i = 0; i < graph.values.size(); ++i) {
    if (!referenced[i]) continue;
    new_id[i] = static_cast<ir::ValueId>(kept.size());
    kept.push_back(std::move(graph.values[i]));
  }
  const size_t removed = graph.values.size() - kept.size();
  graph.values = std::move(kept);
  auto remap = [&](std::vector<ir::ValueId>& ids) {
    for (ir::ValueId& id : ids)
      if (id != ir::kNoValue) id = new_id[static_cast<size_t>(id)];
  };
  remap(graph.inputs);
  remap(graph.outputs);
  for (ir::Node& node : graph.nodes) {
    remap(node.inputs);
    remap(node.outputs);
  }
  graph.compact();  // recomputes producers under the new ids
  return removed;
}

}  // namespace

DeadCodeResult eliminate_dead_code(ir::Graph& graph) {
  DeadCodeResult result;
  result.nodes_removed = remove_dead_nodes(graph);
  result.values_removed = remove_unreferenced_values(graph);
  return result;
}

}  // namespace kiln::passes
