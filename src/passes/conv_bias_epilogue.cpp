#include "passes/conv_bias_epilogue.hpp"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "codegen/group_plan.hpp"
#include "passes/layout_nhwc.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

// Whether every reader of `id` is an op that fusion grouping takes (at least one, and `id` not a
// graph output). SiLU, as exporters write it, reads the conv's output twice (Sigmoid and Mul).
bool read_only_by_groupable_ops(const ir::Graph& graph, ir::ValueId id) {
  if (is_graph_output(graph, id)) return false;
  const std::vector<int32_t> readers = consumers_of(graph, id);
  if (readers.empty()) return false;
  for (const int32_t index : readers) {
    const ir::Node& reader = graph.nodes[static_cast<size_t>(index)];
    if (!codegen::is_groupable_op(reader.op_type, reader.attrs)) return false;
  }
  return true;
}

bool is_nhwc(const ir::Node& conv) { return conv.attrs.get_string_or("kiln_layout", "NCHW") == "NHWC"; }

// Whether the conv's bias (input 2) is a constant [C] of the output's dtype.
bool has_channel_bias(const ir::Graph& graph, const ir::Node& conv) {
  if (conv.inputs.size() < 3 || conv.inputs[2] < 0 || !graph.is_constant(conv.inputs[2])) return false;
  const ir::Value& y = graph.value(conv.outputs[0]);
  const HostTensor& bias = *graph.value(conv.inputs[2]).constant;
  return y.shape.size() >= 3 && bias.shape.size() == 1 && bias.dtype == y.dtype &&
         bias.shape[0] == (is_nhwc(conv) ? y.shape.back() : y.shape[1]);
}

bool has_residual(const ir::Node& conv) { return conv.inputs.size() >= 4 && conv.inputs[3] >= 0; }

bool takes_epilogue_out(const ir::Graph& graph, const ir::Node& node) {
  if (node.removed || node.op_type != "Conv" || !node.domain.empty() || node.outputs.size() != 1 ||
      node.inputs.size() > 4) {
    return false;
  }
  if (!node.attrs.get_string_or("kiln_activation", "").empty() || is_depthwise_conv(graph, node)) return false;
  const bool bias = has_channel_bias(graph, node);
  if (node.inputs.size() >= 3 && node.inputs[2] >= 0 && !bias) return false;  // a bias this pass cannot move
  if (has_residual(node)) return true;
  return bias && read_only_by_groupable_ops(graph, node.outputs[0]);
}

// Appends `Add(a, b)` named `name` writing `out`.
void append_add(std::vector<ir::Node>& nodes, std::string name, ir::ValueId a, ir::ValueId b, ir::ValueId out) {
  ir::Node add;
  add.name = std::move(name);
  add.op_type = "Add";
  add.inputs = {a, b};
  add.outputs = {out};
  nodes.push_back(std::move(add));
}

ir::ValueId new_value_like(ir::Graph& graph, ir::ValueId like, const std::string& name) {
  ir::Value value;
  value.name = unique_value_name(graph, name);
  value.dtype = graph.value(like).dtype;
  value.shape = graph.value(like).shape;
  return graph.add_value(std::move(value));
}

}  // namespace

size_t move_conv_bias_into_pointwise_readers(ir::Graph& graph) {
  // Decided on the whole graph first: the loop below moves the nodes out.
  std::vector<bool> rewrite(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) rewrite[i] = takes_epilogue_out(graph, graph.nodes[i]);
  size_t rewritten = 0;
  std::vector<ir::Node> nodes;
  nodes.reserve(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!rewrite[i]) {
      nodes.push_back(std::move(graph.nodes[i]));
      continue;
    }
    ir::Node conv = std::move(graph.nodes[i]);
    const ir::ValueId y = conv.outputs[0];
    const ir::ValueId residual = has_residual(conv) ? conv.inputs[3] : ir::kNoValue;
    const ir::ValueId bias = has_channel_bias(graph, conv) ? conv.inputs[2] : ir::kNoValue;
    const std::string y_name = graph.value(y).name;
    conv.inputs.resize(2);
    conv.outputs = {new_value_like(graph, y, y_name + "/conv")};
    ir::ValueId last = conv.outputs[0];
    const std::string conv_name = conv.name;
    nodes.push_back(std::move(conv));
    if (bias != ir::kNoValue) {
      // The bias as a constant that broadcasts over the channel axis of Y: [C] when channels are
      // last, [C, 1, ..., 1] otherwise.
      auto channel_bias = std::make_shared<HostTensor>(*graph.value(bias).constant);
      if (!is_nhwc(nodes.back())) channel_bias->shape.resize(graph.value(y).shape.size() - 1, 1);
      const ir::ValueId broadcast_bias =
          graph.add_constant(unique_value_name(graph, conv_name + "/bias"), std::move(channel_bias));
      const ir::ValueId biased = residual != ir::kNoValue ? new_value_like(graph, y, y_name + "/biased") : y;
      append_add(nodes, conv_name + "/bias", last, broadcast_bias, biased);
      last = biased;
    }
    if (residual != ir::kNoValue) append_add(nodes, conv_name + "/residual", last, residual, y);
    ++rewritten;
  }
  graph.nodes = std::move(nodes);
  if (rewritten > 0) graph.compact();
  return rewritten;
}

}  // namespace kiln::passes
