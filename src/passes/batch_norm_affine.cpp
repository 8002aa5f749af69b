#include "passes/batch_norm_affine.hpp"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "base/half.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

// The parameter as float32 values when it is a constant [C] of float32, else empty.
std::vector<double> channel_values(const ir::Graph& graph, ir::ValueId id, int64_t channels) {
  if (id < 0 || !graph.is_constant(id)) return {};
  const HostTensor& t = *graph.value(id).constant;
  if (t.dtype != DType::kFloat32 || t.shape != Shape{channels}) return {};
  std::vector<double> values(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) values[static_cast<size_t>(c)] = t.data<float>()[c];
  return values;
}

ir::ValueId channel_constant(ir::Graph& graph, const std::string& name, const std::vector<double>& values,
                             size_t rank, DType dtype) {
  Shape shape(rank - 1, 1);
  shape[0] = static_cast<int64_t>(values.size());
  auto tensor = std::make_shared<HostTensor>(dtype, shape);
  for (size_t c = 0; c < values.size(); ++c) {
    const float v = static_cast<float>(values[c]);
    if (dtype == DType::kFloat32) {
      tensor->data<float>()[c] = v;
    } else if (dtype == DType::kFloat16) {
      tensor->data<uint16_t>()[c] = float_to_half(v);
    } else {
      tensor->data<uint16_t>()[c] = float_to_bfloat16(v);
    }
  }
  return graph.add_constant(unique_value_name(graph, name), std::move(tensor));
}

}  // namespace

size_t convert_batch_norm_to_affine(ir::Graph& graph) {
  size_t rewritten = 0;
  std::vector<ir::Node> nodes;
  nodes.reserve(graph.nodes.size());
  for (ir::Node& node : graph.nodes) {
    const bool candidate = !node.removed && node.op_type == "BatchNormalization" && node.domain.empty() &&
                           node.outputs.size() == 1 && node.inputs.size() == 5 && node.inputs[0] >= 0 &&
                           node.attrs.get_int_or("training_mode", 0) == 0;
    const ir::Value* x = candidate ? &graph.value(node.inputs[0]) : nullptr;
    const DType dtype = x ? x->dtype : DType::kFloat32;
    if (!x || x->shape.size() < 2 || x->shape[1] <= 0 ||
        (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16)) {
      nodes.push_back(std::move(node));
      continue;
    }
    const int64_t channels = x->shape[1];
    const std::vector<double> scale = channel_values(graph, node.inputs[1], channels);
    const std::vector<double> bias = channel_values(graph, node.inputs[2], channels);
    const std::vector<double> mean = channel_values(graph, node.inputs[3], channels);
    const std::vector<double> var = channel_values(graph, node.inputs[4], channels);
    if (scale.empty() || bias.empty() || mean.empty() || var.empty()) {
      nodes.push_back(std::move(node));
      continue;
    }
    const double epsilon = node.attrs.get_float_or("epsilon", 1e-5f);
    std::vector<double> m(scale.size()), b(scale.size());
    for (size_t c = 0; c < scale.size(); ++c) {
      m[c] = scale[c] / std::sqrt(var[c] + epsilon);
      b[c] = bias[c] - mean[c] * m[c];
    }
    const size_t rank = x->shape.size();
    const ir::ValueId multiplier = channel_constant(graph, node.name + "/scale", m, rank, dtype);
    const ir::ValueId shift = channel_constant(graph, node.name + "/shift", b, rank, dtype);
    ir::Value scaled_value;
    scaled_value.name = unique_value_name(graph, node.name + "/scaled");
    scaled_value.dtype = dtype;
    scaled_value.shape = x->shape;
    const ir::ValueId scaled = graph.add_value(std::move(scaled_value));
    ir::Node mul;
    mul.name = node.name + "/scale";
    mul.op_type = "Mul";
    mul.inputs = {node.inputs[0], multiplier};
    mul.outputs = {scaled};
    ir::Node add;
    add.name = node.name;
    add.op_type = "Add";
    add.inputs = {scaled, shift};
    add.outputs = node.outputs;
    nodes.push_back(std::move(mul));
    nodes.push_back(std::move(add));
    ++rewritten;
  }
  graph.nodes = std::move(nodes);  // every node was moved, rewritten or not
  if (rewritten > 0) graph.compact();
  return rewritten;
}

}  // namespace kiln::passes
