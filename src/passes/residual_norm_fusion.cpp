#include "passes/residual_norm_fusion.hpp"

#include "passes/pass.hpp"

namespace kiln::passes {

int fuse_residual_into_layer_norm(ir::Graph& graph) {
  int folds = 0;
  for (ir::Node& norm : graph.nodes) {
    if (norm.removed || norm.op_type != "LayerNormalization" || norm.inputs.size() > 3) continue;
    const ir::ValueId sum = norm.inputs[0];
    const int32_t producer = graph.value(sum).producer;
    if (producer < 0 || is_graph_output(graph, sum) || graph.use_count(sum) != 1) continue;
    ir::Node& add = graph.nodes[static_cast<size_t>(producer)];
    if (add.removed || add.op_type != "Add" || add.inputs.size() != 2) continue;
    const ir::Value& a = graph.value(add.inputs[0]);
    const ir::Value& b = graph.value(add.inputs[1]);
    const ir::Value& out = graph.value(sum);
    if (a.shape != out.shape || b.shape != out.shape || a.dtype != out.dtype || b.dtype != out.dtype) continue;
    norm.inputs[0] = add.inputs[0];
    norm.inputs.resize(3, ir::kNoValue);  // B stays absent when it was
    norm.inputs.push_back(add.inputs[1]);
    add.removed = true;
    ++folds;
  }
  if (folds > 0) graph.compact();
  return folds;
}

}  // namespace kiln::passes
