#include "passes/shape_inference.hpp"

#include "base/error.hpp"
#include "ops/op_registry.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {

void infer_node_outputs(ir::Graph& graph, size_t node_index) {
  ir::Node& node = graph.nodes.at(node_index);
  const bool default_domain = node.domain.empty() || node.domain == "ai.onnx";
  const ops::OpDef* def = default_domain ? ops::find_op(node.op_type) : nullptr;
  if (!def) {
    fail(ErrorCode::kUnsupported, describe_node(node), ": op '", node.op_type, "'",
         default_domain ? "" : " of domain '" + node.domain + "'", " is not supported by kiln");
  }
  std::vector<ops::ValueInfo> inputs(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const ir::ValueId id = node.inputs[i];
    if (id == ir::kNoValue) {
      inputs[i].present = false;
      continue;
    }
    const ir::Value& value = graph.value(id);
    inputs[i].dtype = value.dtype;
    inputs[i].shape = value.shape;
    inputs[i].value = value.constant.get();
  }
  std::vector<ops::ValueInfo> outputs(node.outputs.size());
  std::vector<std::string_view> output_names(node.outputs.size());
  for (size_t i = 0; i < node.outputs.size(); ++i) output_names[i] = graph.value(node.outputs[i]).name;
  ops::infer_node(*def, node.name, node.attrs, inputs, outputs, output_names);
  for (size_t i = 0; i < node.outputs.size(); ++i) {
    ir::Value& value = graph.value(node.outputs[i]);
    value.dtype = outputs[i].dtype;
    value.shape = std::move(outputs[i].shape);
  }
}

void infer_shapes(ir::Graph& graph) {
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!graph.nodes[i].removed) infer_node_outputs(graph, i);
  }
}

}  // namespace kiln::passes
