// The builder's graph IR: SSA values produced by nodes, in topological order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/attributes.hpp"
#include "base/host_tensor.hpp"

namespace kiln::ir {

using ValueId = int32_t;
inline constexpr ValueId kNoValue = -1;  // an absent optional input

struct Value {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;                   // kDynamicDim where unknown; rank is always known after inference
  std::vector<std::string> dim_names;  // graph inputs: ONNX dim_param per dim ("" when none)
  std::shared_ptr<const HostTensor> constant;  // set for initializers and folded values
  int32_t producer = -1;         // index of the producing node, -1 for graph inputs and constants
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;            // "" for the default ONNX domain
  std::vector<ValueId> inputs;   // kNoValue for an absent optional input
  std::vector<ValueId> outputs;
  AttributeMap attrs;
  bool removed = false;          // passes mark nodes dead; Graph::compact() drops them
};

// Range of a dynamic input dimension, from BuilderConfig (defaults: min 1, opt 1, max 1<<30... see
// builder). Stored per graph input per dim.
struct Graph {
  std::string name;
  int64_t opset = 0;             // ai.onnx opset the model was imported with
  std::vector<Value> values;
  std::vector<Node> nodes;       // topological order
  std::vector<ValueId> inputs;   // caller-bound inputs (never initializers)
  std::vector<ValueId> outputs;

  ValueId add_value(Value value);
  // Adds a constant value; its dtype and shape come from the tensor.
  ValueId add_constant(std::string name, std::shared_ptr<const HostTensor> tensor);
  // Appends a node and sets the producer of its outputs. Returns the node index.
  int32_t add_node(Node node);

  Value& value(ValueId id) { return values.at(static_cast<size_t>(id)); }
  const Value& value(ValueId id) const { return values.at(static_cast<size_t>(id)); }
  bool is_constant(ValueId id) const { return id >= 0 && value(id).constant != nullptr; }

  // Number of live (non-removed) nodes that read `id`, plus one per graph output naming it.
  int use_count(ValueId id) const;
  // Drops removed nodes, recomputes producers and renumbers nothing else (value ids are stable).
  void compact();
  // Throws kInternal when an input is used before it is produced, or ids are out of range.
  void verify() const;
};

}  // namespace kiln::ir
