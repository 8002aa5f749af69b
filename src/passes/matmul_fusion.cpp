#include "passes/matmul_fusion.hpp"

#include <algorithm>

#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

void note_miss(const ir::Graph& graph, std::vector<EpilogueMiss>* misses, size_t node, int32_t reader,
               std::string reason) {
  if (!misses) return;
  const ir::Node& n = graph.nodes[node];
  const ir::Node& r = graph.nodes[static_cast<size_t>(reader)];
  misses->push_back(EpilogueMiss{n.name, n.op_type, r.name, r.op_type, std::move(reason)});
}

// Why `candidate` cannot be the bias of a product whose last dim is `n`: "" when it is a constant
// of dtype `dtype` with shape [..., N] and every leading dim 1 (one vector of N values added to
// every row).
std::string why_not_row_bias(const ir::Graph& graph, ir::ValueId candidate, int64_t n, DType dtype) {
  const ir::Value& value = graph.value(candidate);
  const std::string what = "Add's other input '" + value.name + "'";
  if (!graph.is_constant(candidate)) return what + " is not a constant (a bias must be)";
  if (value.dtype != dtype) {
    return what + " is " + std::string(dtype_name(value.dtype)) + ", the product " + std::string(dtype_name(dtype));
  }
  if (value.shape.empty() || value.shape.back() != n || shape_numel(value.shape) != n) {
    return what + " of shape " + shape_to_string(value.shape) + " is not one row of " + std::to_string(n) +
           " values";
  }
  return "";
}

// The id of a 1-D [N] constant holding row bias `candidate` (a new value when its shape differs).
ir::ValueId as_row_bias(ir::Graph& graph, ir::ValueId candidate, int64_t n) {
  const ir::Value& value = graph.value(candidate);
  if (value.shape.size() == 1) return candidate;
  auto reshaped = std::make_shared<HostTensor>(*value.constant);
  reshaped->shape = {n};
  return graph.add_constant(unique_value_name(graph, value.name + "/row"), std::move(reshaped));
}

}  // namespace

int fuse_matmul_epilogues(ir::Graph& graph, std::vector<EpilogueMiss>* misses) {
  int fusions = 0;
  for (size_t index = 0; index < graph.nodes.size(); ++index) {
    size_t node = index;
    const std::string op = graph.nodes[node].op_type;
    if (graph.nodes[node].removed || (op != "MatMul" && op != "Gemm")) continue;
    if (graph.nodes[node].attrs.has("kiln_activation")) continue;

    const ir::ValueId out = graph.nodes[node].outputs[0];
    if (op == "MatMul" && graph.nodes[node].inputs.size() == 2) {
      const ir::Value& b = graph.value(graph.nodes[node].inputs[1]);
      const int32_t reader = sole_reader(graph, out);
      if (reader >= 0 && graph.nodes[static_cast<size_t>(reader)].op_type == "Add") {
        const ir::Node& add = graph.nodes[static_cast<size_t>(reader)];
        const ir::ValueId other = add.inputs[0] == out ? add.inputs[1] : add.inputs[0];
        std::string reason;
        if (b.shape.size() < 2) {
          reason = "B is a vector, so the product has no rows for a bias";
        } else if (b.shape.back() == kDynamicDim) {
          reason = "B's last dim (N) is dynamic, and a bias needs its length";
        } else if (graph.value(other).shape.size() > graph.value(out).shape.size()) {
          // The Add must not broadcast the product to a larger shape.
          reason = "Add's other input '" + graph.value(other).name + "' has dims " + graph.describe_dims(other) +
                   ", more than the product's " + graph.describe_dims(out) + ": the Add broadcasts";
        } else {
          reason = why_not_row_bias(graph, other, b.shape.back(), graph.value(out).dtype);
        }
        if (reason.empty()) {
          const ir::ValueId bias = as_row_bias(graph, other, b.shape.back());
          graph.nodes[node].inputs.push_back(bias);
          absorb_into(graph, node, static_cast<size_t>(reader));
          node = static_cast<size_t>(reader);
          ++fusions;
        } else {
          note_miss(graph, misses, node, reader, std::move(reason));
          continue;  // a Relu after the Add is not the MatMul's
        }
      } else {
        std::string reason;
        const int32_t blocked = blocked_reader(graph, out, "Add", &reason);
        if (blocked >= 0) note_miss(graph, misses, node, blocked, std::move(reason));
      }
    }
    const ir::ValueId product = graph.nodes[node].outputs[0];
    const int32_t reader = sole_reader(graph, product);
    if (reader >= 0 && graph.nodes[static_cast<size_t>(reader)].op_type == "Relu") {
      graph.nodes[node].attrs.set("kiln_activation", Attribute::of_string("Relu"));
      absorb_into(graph, node, static_cast<size_t>(reader));
      ++fusions;
    } else {
      std::string reason;
      const int32_t blocked = blocked_reader(graph, product, "Relu", &reason);
      if (blocked >= 0) note_miss(graph, misses, node, blocked, std::move(reason));
    }
  }
  if (fusions) graph.compact();
  return fusions;
}

}  // namespace kiln::passes
