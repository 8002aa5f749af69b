#include "passes/batch_norm_folding.hpp"

#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

bool is_default_domain(const ir::Node& node) {
  return node.domain.empty() || node.domain == "ai.onnx";
}

// The constant float32 tensor behind `id`, or null.
const HostTensor* float_constant(const ir::Graph& graph, ir::ValueId id) {
  if (id == ir::kNoValue || !graph.is_constant(id)) return nullptr;
  const HostTensor* t = graph.value(id).constant.get();
  return t->dtype == DType::kFloat32 ? t : nullptr;
}

// BatchNormalization as y = x * scale[c] + shift[c] per channel c.
struct ChannelAffine {
  std::vector<double> scale;
  std::vector<double> shift;
};

std::optional<ChannelAffine> batch_norm_affine(const ir::Graph& graph, const ir::Node& bn) {
  if (bn.inputs.size() != 5 || bn.outputs.empty()) return std::nullopt;
  if (bn.attrs.get_int_or("training_mode", 0) != 0) return std::nullopt;
  for (size_t i = 1; i < bn.outputs.size(); ++i)
    if (graph.use_count(bn.outputs[i]) != 0) return std::nullopt;
  const HostTensor* gamma = float_constant(graph, bn.inputs[1]);
  const HostTensor* beta = float_constant(graph, bn.inputs[2]);
  const HostTensor* mean = float_constant(graph, bn.inputs[3]);
  const HostTensor* var = float_constant(graph, bn.inputs[4]);
  if (!gamma || !beta || !mean || !var || gamma->shape.size() != 1) return std::nullopt;
  const int64_t channels = gamma->shape[0];
  for (const HostTensor* t : {beta, mean, var})
    if (t->shape != gamma->shape) return std::nullopt;
  const double epsilon = bn.attrs.get_float_or("epsilon", 1e-5f);
  ChannelAffine affine;
  affine.scale.resize(static_cast<size_t>(channels));
  affine.shift.resize(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const double s =
        gamma->data<float>()[c] / std::sqrt(static_cast<double>(var->data<float>()[c]) + epsilon);
    affine.scale[static_cast<size_t>(c)] = s;
    affine.shift[static_cast<size_t>(c)] = beta->data<float>()[c] - mean->data<float>()[c] * s;
  }
  return affine;
}

// Bias values for `channels` channels from an optional constant of shape [], [1], [C] or [1, C];
// nullopt for any other shape.
std::optional<std::vector<double>> channel_bias(const HostTensor* bias, int64_t channels) {
  std::vector<double> values(static_cast<size_t>(channels), 0.0);
  if (!bias) return values;
  const int64_t n = bias->numel();
  const bool per_channel = n == channels && (bias->shape.size() == 1 ||
                                             (bias->shape.size() == 2 && bias->shape[0] == 1));
  const bool scalar = n == 1 && bias->shape.size() <= 2;
  if (!per_channel && !scalar) return std::nullopt;
  for (int64_t c = 0; c < channels; ++c)
    values[static_cast<size_t>(c)] = bias->data<float>()[per_channel ? c : 0];
  return values;
}

ir::ValueId add_float_constant(ir::Graph& graph, const std::string& base_name, Shape shape,
                               const std::vector<double>& values) {
  auto tensor = std::make_shared<HostTensor>(DType::kFloat32, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i)
    tensor->data<float>()[i] = static_cast<float>(values[i]);
  return graph.add_constant(unique_value_name(graph, base_name), std::move(tensor));
}

// Conv(x, W, b) -> BN  ==>  Conv(x, W * s[oc], (b - mean) * s + beta).
bool fold_into_conv(ir::Graph& graph, ir::Node& conv, const ChannelAffine& affine) {
  const HostTensor* weight =
      float_constant(graph, conv.inputs.size() > 1 ? conv.inputs[1] : ir::kNoValue);
  if (!weight || weight->shape.size() < 3) return false;
  const int64_t channels = weight->shape[0];
  if (channels != static_cast<int64_t>(affine.scale.size())) return false;
  const ir::ValueId bias_id = conv.inputs.size() > 2 ? conv.inputs[2] : ir::kNoValue;
  const HostTensor* bias = float_constant(graph, bias_id);
  if (bias_id != ir::kNoValue && (!bias || bias->shape != Shape{channels})) return false;
  const std::optional<std::vector<double>> bias_values = channel_bias(bias, channels);
  if (!bias_values) return false;

  const int64_t per_channel = weight->numel() / std::max<int64_t>(channels, 1);
  std::vector<double> new_weight(static_cast<size_t>(weight->numel()));
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < per_channel; ++i) {
      const int64_t k = c * per_channel + i;
      new_weight[static_cast<size_t>(k)] =
          weight->data<float>()[k] * affine.scale[static_cast<size_t>(c)];
    }
  std::vector<double> new_bias(static_cast<size_t>(channels));
  for (size_t c = 0; c < new_bias.size(); ++c)
    new_bias[c] = (*bias_values)[c] * affine.scale[c] + affine.shift[c];

  const std::string weight_name = graph.value(conv.inputs[1]).name;
  const Shape weight_shape = weight->shape;
  const ir::ValueId w =
      add_float_constant(graph, weight_name + "/bn_folded", weight_shape, new_weight);
  const ir::ValueId b =
      add_float_constant(graph, conv.name + "/bn_folded_bias", {channels}, new_bias);
  conv.inputs.resize(3, ir::kNoValue);
  conv.inputs[1] = w;
  conv.inputs[2] = b;
  return true;
}

// Gemm(A, B, C) -> BN over the last dim  ==>  Gemm(A, B * s[n], beta * C * s + shift) with beta 1.
bool fold_into_gemm(ir::Graph& graph, ir::Node& gemm, const ChannelAffine& affine) {
  const HostTensor* weight =
      float_constant(graph, gemm.inputs.size() > 1 ? gemm.inputs[1] : ir::kNoValue);
  if (!weight || weight->shape.size() != 2) return false;
  const bool trans_b = gemm.attrs.get_int_or("transB", 0) != 0;
  const int64_t rows = weight->shape[0], cols = weight->shape[1];
  const int64_t channels = trans_b ? rows : cols;
  if (channels != static_cast<int64_t>(affine.scale.size())) return false;
  const ir::ValueId bias_id = gemm.inputs.size() > 2 ? gemm.inputs[2] : ir::kNoValue;
  const HostTensor* bias = float_constant(graph, bias_id);
  if (bias_id != ir::kNoValue && !bias) return false;
  const std::optional<std::vector<double>> bias_values = channel_bias(bias, channels);
  if (!bias_values) return false;
  const double beta = gemm.attrs.get_float_or("beta", 1.0f);

  std::vector<double> new_weight(static_cast<size_t>(weight->numel()));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t k = r * cols + c;
      new_weight[static_cast<size_t>(k)] =
          weight->data<float>()[k] * affine.scale[static_cast<size_t>(trans_b ? r : c)];
    }
  std::vector<double> new_bias(static_cast<size_t>(channels));
  for (size_t c = 0; c < new_bias.size(); ++c)
    new_bias[c] = beta * (*bias_values)[c] * affine.scale[c] + affine.shift[c];

  const std::string weight_name = graph.value(gemm.inputs[1]).name;
  const Shape weight_shape = weight->shape;
  const ir::ValueId w =
      add_float_constant(graph, weight_name + "/bn_folded", weight_shape, new_weight);
  const ir::ValueId b =
      add_float_constant(graph, gemm.name + "/bn_folded_bias", {channels}, new_bias);
  gemm.inputs.resize(3, ir::kNoValue);
  gemm.inputs[1] = w;
  gemm.inputs[2] = b;
  gemm.attrs.set("beta", Attribute::of_float(1.0f));
  return true;
}

// MatMul(A[M, K], W[K, N]) [-> Add(bias)] -> BN  ==>  Gemm(A, W * s[n], bias * s + shift): the
// MatMul node becomes that Gemm and the Add is removed. A must be rank 2, where BN's channel dim
// is MatMul's last dim. `producer_index` is the node feeding the BN (the MatMul or the Add).
// Returns the index of the node that now computes the BN's input, or -1.
int32_t fold_into_matmul(ir::Graph& graph, int32_t producer_index, const ChannelAffine& affine) {
  ir::Node& producer = graph.nodes[static_cast<size_t>(producer_index)];
  int32_t matmul_index = producer_index;
  ir::ValueId bias = ir::kNoValue;
  if (producer.op_type == "Add") {
    if (producer.inputs.size() != 2) return -1;
    const int operand = float_constant(graph, producer.inputs[1]) ? 0 : 1;
    bias = producer.inputs[1 - operand];
    const ir::ValueId product = producer.inputs[operand];
    if (!float_constant(graph, bias) || product == ir::kNoValue || graph.use_count(product) != 1)
      return -1;
    matmul_index = graph.value(product).producer;
    if (matmul_index < 0 || graph.nodes[static_cast<size_t>(matmul_index)].removed) return -1;
  }
  const ir::Node& matmul = graph.nodes[static_cast<size_t>(matmul_index)];
  if (matmul.op_type != "MatMul" || !is_default_domain(matmul) || matmul.inputs.size() != 2 ||
      matmul.outputs.size() != 1 || matmul.inputs[0] == ir::kNoValue ||
      graph.value(matmul.inputs[0]).shape.size() != 2) {
    return -1;
  }
  ir::Node gemm = matmul;
  gemm.op_type = "Gemm";
  gemm.attrs = AttributeMap{};
  gemm.inputs.push_back(bias);
  if (!fold_into_gemm(graph, gemm, affine)) return -1;
  graph.nodes[static_cast<size_t>(matmul_index)] = std::move(gemm);
  if (matmul_index != producer_index)
    graph.nodes[static_cast<size_t>(producer_index)].removed = true;
  return matmul_index;
}

}  // namespace

size_t fold_batch_norm(ir::Graph& graph) {
  size_t folded = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    // Indexing (not references) because folding appends values, never nodes.
    if (graph.nodes[i].removed || graph.nodes[i].op_type != "BatchNormalization" ||
        !is_default_domain(graph.nodes[i]) || graph.nodes[i].inputs.empty()) {
      continue;
    }
    const ir::ValueId x = graph.nodes[i].inputs[0];
    if (x == ir::kNoValue || graph.use_count(x) != 1) continue;
    const int32_t producer_index = graph.value(x).producer;
    if (producer_index < 0 || graph.nodes[static_cast<size_t>(producer_index)].removed) continue;
    ir::Node& producer = graph.nodes[static_cast<size_t>(producer_index)];
    if (!is_default_domain(producer) || producer.outputs.size() != 1 || producer.inputs.empty())
      continue;
    if (graph.value(x).dtype != DType::kFloat32) continue;
    const std::optional<ChannelAffine> affine = batch_norm_affine(graph, graph.nodes[i]);
    if (!affine) continue;
    int32_t folded_into = -1;
    if (producer.op_type == "Conv") {
      if (fold_into_conv(graph, producer, *affine)) folded_into = producer_index;
    } else if (producer.op_type == "Gemm") {
      if (fold_into_gemm(graph, producer, *affine)) folded_into = producer_index;
    } else if (producer.op_type == "MatMul" || producer.op_type == "Add") {
      folded_into = fold_into_matmul(graph, producer_index, *affine);
    }
    if (folded_into < 0) continue;
    // The folded node now writes the BatchNormalization's output.
    const ir::ValueId y = graph.nodes[i].outputs[0];
    graph.nodes[static_cast<size_t>(folded_into)].outputs[0] = y;
    graph.value(y).producer = folded_into;
    graph.nodes[i].removed = true;
    ++folded;
  }
  graph.compact();
  return folded;
}

}  // namespace kiln::passes
