// Test helper: builds small ir::Graphs by hand for the pass and builder tests.
#pragma once

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.hpp"

namespace kiln::testing {

inline HostTensor make_tensor_f32(Shape shape, const std::vector<float>& values) {
  HostTensor t(DType::kFloat32, std::move(shape));
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(float));
  return t;
}

inline HostTensor make_tensor_i64(Shape shape, const std::vector<int64_t>& values) {
  HostTensor t(DType::kInt64, std::move(shape));
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

inline HostTensor random_tensor_f32(Shape shape, std::mt19937& rng, float low = -1.0f,
                                    float high = 1.0f) {
  HostTensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(low, high);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

class GraphBuilder {
 public:
  ir::Graph graph;

  ir::ValueId input(const std::string& name, Shape shape, DType dtype = DType::kFloat32) {
    ir::Value v;
    v.name = name;
    v.dtype = dtype;
    v.shape = std::move(shape);
    v.dim_names.assign(v.shape.size(), "");
    const ir::ValueId id = graph.add_value(std::move(v));
    graph.inputs.push_back(id);
    return id;
  }

  ir::ValueId constant(const std::string& name, HostTensor tensor) {
    return graph.add_constant(name, std::make_shared<const HostTensor>(std::move(tensor)));
  }

  // Adds a node named `name` whose outputs are named "<name>_out<i>" (or `name` when it has one
  // output). Returns the output ids.
  std::vector<ir::ValueId> node_n(const std::string& op, const std::string& name,
                                  std::vector<ir::ValueId> inputs, size_t num_outputs,
                                  AttributeMap attrs = {}) {
    ir::Node node;
    node.name = name;
    node.op_type = op;
    node.inputs = std::move(inputs);
    node.attrs = std::move(attrs);
    for (size_t i = 0; i < num_outputs; ++i) {
      ir::Value v;
      v.name = num_outputs == 1 ? name : name + "_out" + std::to_string(i);
      node.outputs.push_back(graph.add_value(std::move(v)));
    }
    std::vector<ir::ValueId> outputs = node.outputs;
    graph.add_node(std::move(node));
    return outputs;
  }

  ir::ValueId node(const std::string& op, const std::string& name, std::vector<ir::ValueId> inputs,
                   AttributeMap attrs = {}) {
    return node_n(op, name, std::move(inputs), 1, std::move(attrs)).front();
  }

  void output(ir::ValueId id) { graph.outputs.push_back(id); }
};

inline AttributeMap attrs_of(std::initializer_list<std::pair<std::string, Attribute>> items) {
  AttributeMap map;
  for (const auto& [name, value] : items) map.set(name, value);
  return map;
}

inline AttributeMap perm(std::vector<int64_t> p) {
  return attrs_of({{"perm", Attribute::of_ints(std::move(p))}});
}

// The graph's live (not removed) nodes in order; with `op`, only those of that op type.
inline std::vector<const ir::Node*> live_nodes(const ir::Graph& graph, const std::string& op = "") {
  std::vector<const ir::Node*> live;
  for (const ir::Node& node : graph.nodes) {
    if (!node.removed && (op.empty() || node.op_type == op)) live.push_back(&node);
  }
  return live;
}

// The op types of the live nodes, in order.
inline std::vector<std::string> live_op_types(const ir::Graph& graph) {
  std::vector<std::string> ops;
  for (const ir::Node* node : live_nodes(graph)) ops.push_back(node->op_type);
  return ops;
}

// Index of the live node named `name`, or -1.
inline int find_node(const ir::Graph& graph, const std::string& name) {
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    if (!graph.nodes[i].removed && graph.nodes[i].name == name) return static_cast<int>(i);
  return -1;
}

}  // namespace kiln::testing
