#include "passes/precision_lowering.hpp"

#include <algorithm>
#include <unordered_map>

#include "base/error.hpp"
#include "base/half.hpp"
#include "ops/op_registry.hpp"
#include "passes/pass.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

std::shared_ptr<const HostTensor> convert_tensor(const HostTensor& source, DType precision) {
  auto out = std::make_shared<HostTensor>(precision, source.shape);
  const float* in = source.data<float>();
  auto* bits = out->data<uint16_t>();
  const int64_t n = source.numel();
  for (int64_t i = 0; i < n; ++i) {
    bits[i] = precision == DType::kFloat16 ? float_to_half(in[i]) : float_to_bfloat16(in[i]);
  }
  return out;
}

bool is_value_input(const ir::Node& node, size_t position) {
  const ops::OpDef* def = ops::find_op(node.op_type);
  if (!def) return false;
  return std::find(def->value_inputs.begin(), def->value_inputs.end(), static_cast<int>(position)) !=
         def->value_inputs.end();
}

ir::ValueId add_cast(ir::Graph& graph, ir::ValueId source, DType to, const std::string& name, size_t insert_at) {
  ir::Value out;
  out.name = unique_value_name(graph, name);
  out.dtype = to;
  out.shape = graph.value(source).shape;
  const ir::ValueId id = graph.add_value(std::move(out));
  ir::Node cast;
  cast.name = graph.value(id).name;
  cast.op_type = "Cast";
  cast.inputs = {source};
  cast.outputs = {id};
  cast.attrs.set("to", Attribute::of_int(static_cast<int64_t>(to)));
  graph.nodes.insert(graph.nodes.begin() + static_cast<std::ptrdiff_t>(insert_at), std::move(cast));
  return id;
}

}  // namespace

void lower_precision(ir::Graph& graph, DType precision) {
  KILN_ASSERT(precision == DType::kFloat16 || precision == DType::kBFloat16, "precision ", dtype_name(precision));
  std::vector<DType> output_dtypes;
  for (ir::ValueId output : graph.outputs) output_dtypes.push_back(graph.value(output).dtype);
  // 1. float32 constants read as data become `precision` (one converted copy each).
  std::unordered_map<ir::ValueId, ir::ValueId> converted;
  for (ir::Node& node : graph.nodes) {
    if (node.removed) continue;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const ir::ValueId in = node.inputs[i];
      if (in < 0 || !graph.is_constant(in) || graph.value(in).dtype != DType::kFloat32) continue;
      if (is_value_input(node, i)) continue;
      auto [it, inserted] = converted.try_emplace(in, ir::kNoValue);
      if (inserted) {
        const std::string name = graph.value(in).name + "/" + std::string(dtype_name(precision));
        it->second = graph.add_constant(unique_value_name(graph, name), convert_tensor(*graph.value(in).constant, precision));
      }
      node.inputs[i] = it->second;
    }
    // 2. Ops that create float32 from attributes produce `precision` instead.
    if (node.op_type == "Cast" && node.attrs.get_int_or("to", 0) == static_cast<int64_t>(DType::kFloat32)) {
      node.attrs.set("to", Attribute::of_int(static_cast<int64_t>(precision)));
    }
    if (node.op_type == "ConstantOfShape" && node.attrs.has("value")) {
      const auto& value = node.attrs.get_tensor("value");
      if (value && value->dtype == DType::kFloat32) node.attrs.set("value", Attribute::of_tensor(convert_tensor(*value, precision)));
    }
  }
  // 3. float32 graph inputs are cast to `precision` where they enter.
  for (ir::ValueId input : graph.inputs) {
    if (graph.value(input).dtype != DType::kFloat32) continue;
    const std::vector<int32_t> readers = consumers_of(graph, input);
    bool read_as_data = false;
    for (int32_t n : readers) {
      const ir::Node& node = graph.nodes[static_cast<size_t>(n)];
      for (size_t i = 0; i < node.inputs.size(); ++i) read_as_data |= node.inputs[i] == input && !is_value_input(node, i);
    }
    if (!read_as_data) continue;
    const ir::ValueId lowered = add_cast(graph, input, precision, graph.value(input).name + "/" + std::string(dtype_name(precision)), 0);
    for (ir::Node& node : graph.nodes) {
      if (node.removed || (node.outputs.size() == 1 && node.outputs[0] == lowered)) continue;
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        if (node.inputs[i] == input && !is_value_input(node, i)) node.inputs[i] = lowered;
      }
    }
  }
  graph.compact();
  infer_shapes(graph);
  // 4. Outputs keep their float32 dtype: the last node writes a lowered value that a Cast converts.
  for (size_t o = 0; o < graph.outputs.size(); ++o) {
    ir::ValueId& output = graph.outputs[o];
    if (output_dtypes[o] != DType::kFloat32 || graph.value(output).dtype != precision) continue;
    if (graph.value(output).producer < 0) continue;
    // The lowered tensor takes a new name; the Cast's output keeps the binding's name.
    const std::string binding = graph.value(output).name;
    graph.value(output).name = unique_value_name(graph, binding + "/" + std::string(dtype_name(precision)));
    ir::Value out;
    out.name = binding;
    out.dtype = DType::kFloat32;
    out.shape = graph.value(output).shape;
    const ir::ValueId id = graph.add_value(std::move(out));
    ir::Node cast;
    cast.name = binding + "/cast";
    cast.op_type = "Cast";
    cast.inputs = {output};
    cast.outputs = {id};
    cast.attrs.set("to", Attribute::of_int(static_cast<int64_t>(DType::kFloat32)));
    graph.add_node(std::move(cast));
    output = id;
  }
  infer_shapes(graph);
  graph.verify();
}

}  // namespace kiln::passes
