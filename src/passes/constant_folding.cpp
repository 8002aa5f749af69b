#include "passes/constant_folding.hpp"

#include <algorithm>
#include <memory>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/checked_math.hpp"
#include "base/error.hpp"
#include "passes/pass.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

bool is_default_domain(const ir::Node& node) {
  return node.domain.empty() || node.domain == "ai.onnx";
}

void make_constant(ir::Graph& graph, ir::ValueId id, HostTensor tensor) {
  ir::Value& value = graph.value(id);
  value.dtype = tensor.dtype;
  value.shape = tensor.shape;
  value.producer = -1;
  value.constant = std::make_shared<const HostTensor>(std::move(tensor));
}

// Shape(x) with ONNX's start/end slicing needs only the selected dims of x to be static.
bool try_fold_shape(ir::Graph& graph, ir::Node& node) {
  if (node.inputs.size() != 1 || node.outputs.size() != 1 || node.inputs[0] == ir::kNoValue)
    return false;
  const Shape& shape = graph.value(node.inputs[0]).shape;
  const auto rank = static_cast<int64_t>(shape.size());
  auto clamp_axis = [rank](int64_t axis) {
    if (axis < 0) axis += rank;
    return std::clamp<int64_t>(axis, 0, rank);
  };
  const int64_t start = clamp_axis(node.attrs.get_int_or("start", 0));
  const int64_t end = clamp_axis(node.attrs.get_int_or("end", rank));
  const int64_t count = std::max<int64_t>(end - start, 0);
  HostTensor dims(DType::kInt64, {count});
  for (int64_t i = 0; i < count; ++i) {
    const int64_t dim = shape[static_cast<size_t>(start + i)];
    if (dim < 0) return false;
    dims.data<int64_t>()[i] = dim;
  }
  make_constant(graph, node.outputs[0], std::move(dims));
  return true;
}

bool try_fold_size(ir::Graph& graph, ir::Node& node) {
  if (node.inputs.size() != 1 || node.outputs.size() != 1 || node.inputs[0] == ir::kNoValue)
    return false;
  const Shape& shape = graph.value(node.inputs[0]).shape;
  if (!shape_is_static(shape)) return false;
  HostTensor size(DType::kInt64, {});
  size.data<int64_t>()[0] = shape_numel(shape);
  make_constant(graph, node.outputs[0], std::move(size));
  return true;
}

bool outputs_fit(const ir::Graph& graph, const ir::Node& node, uint64_t max_bytes) {
  for (ir::ValueId id : node.outputs) {
    const ir::Value& value = graph.value(id);
    if (!shape_is_static(value.shape)) return false;
    // Inference already refused sizes that overflow; an unrepresentable size is never folded.
    const auto bytes = byte_size_no_overflow(value.shape, value.dtype);
    if (!bytes || static_cast<uint64_t>(*bytes) > max_bytes) return false;
  }
  return true;
}

bool try_fold_with_cpu_kernel(ir::Graph& graph, ir::Node& node, uint64_t max_bytes) {
  std::vector<const HostTensor*> inputs(node.inputs.size(), nullptr);
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const ir::ValueId id = node.inputs[i];
    if (id == ir::kNoValue) continue;
    if (!graph.is_constant(id)) return false;
    inputs[i] = graph.value(id).constant.get();
  }
  if (!cpu::cpu_kernels().find(node.op_type)) return false;
  if (!outputs_fit(graph, node, max_bytes)) return false;
  std::vector<HostTensor> results =
      cpu::run_node_on_cpu(node.name, node.op_type, node.attrs, inputs, node.outputs.size());
  KILN_ASSERT(results.size() == node.outputs.size(), "node ", node.name, " returned ",
              results.size(), " outputs");
  for (size_t i = 0; i < results.size(); ++i)
    make_constant(graph, node.outputs[i], std::move(results[i]));
  return true;
}

bool try_fold(ir::Graph& graph, ir::Node& node, uint64_t max_bytes) {
  if (!is_default_domain(node)) return false;
  if (node.op_type == "Shape" && try_fold_shape(graph, node)) return true;
  if (node.op_type == "Size" && try_fold_size(graph, node)) return true;
  return try_fold_with_cpu_kernel(graph, node, max_bytes);
}

}  // namespace

size_t fold_constants(ir::Graph& graph, const ConstantFoldingOptions& options) {
  size_t folded = 0;
  for (int sweep = 0; sweep < options.max_sweeps; ++sweep) {
    size_t folded_this_sweep = 0;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      ir::Node& node = graph.nodes[i];
      if (node.removed) continue;
      // Upstream folds may have made this node's inputs constant or its shapes static.
      infer_node_outputs(graph, i);
      if (try_fold(graph, node, options.max_output_bytes)) {
        node.removed = true;
        ++folded_this_sweep;
      }
    }
    folded += folded_this_sweep;
    if (folded_this_sweep == 0) break;
  }
  graph.compact();
  return folded;
}

}  // namespace kiln::passes
