#include "ir/graph.hpp"

#include <unordered_set>

#include "base/error.hpp"

namespace kiln::ir {

ValueId Graph::add_value(Value value) {
  values.push_back(std::move(value));
  return static_cast<ValueId>(values.size() - 1);
}

ValueId Graph::add_constant(std::string name, std::shared_ptr<const HostTensor> tensor) {
  Value v;
  v.name = std::move(name);
  v.dtype = tensor->dtype;
  v.shape = tensor->shape;
  v.constant = std::move(tensor);
  return add_value(std::move(v));
}

int32_t Graph::add_node(Node node) {
  const auto index = static_cast<int32_t>(nodes.size());
  for (ValueId out : node.outputs) value(out).producer = index;
  nodes.push_back(std::move(node));
  return index;
}

int Graph::use_count(ValueId id) const {
  int count = 0;
  for (const Node& node : nodes) {
    if (node.removed) continue;
    for (ValueId in : node.inputs) count += in == id;
  }
  for (ValueId out : outputs) count += out == id;
  return count;
}

void Graph::compact() {
  std::vector<Node> kept;
  kept.reserve(nodes.size());
  for (Node& node : nodes)
    if (!node.removed) kept.push_back(std::move(node));
  nodes = std::move(kept);
  for (Value& v : values) v.producer = -1;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (ValueId out : nodes[i].outputs) value(out).producer = static_cast<int32_t>(i);
}

void Graph::verify() const {
  std::unordered_set<ValueId> available;
  for (ValueId in : inputs) available.insert(in);
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i].constant) available.insert(static_cast<ValueId>(i));
  for (const Node& node : nodes) {
    if (node.removed) continue;
    for (ValueId in : node.inputs) {
      if (in == kNoValue) continue;
      KILN_ASSERT(in >= 0 && static_cast<size_t>(in) < values.size(), "node ", node.name, " input id ", in);
      KILN_ASSERT(available.count(in), "node ", node.name, " reads '", value(in).name, "' before it is produced");
    }
    for (ValueId out : node.outputs) {
      KILN_ASSERT(out >= 0 && static_cast<size_t>(out) < values.size(), "node ", node.name, " output id ", out);
      available.insert(out);
    }
  }
  for (ValueId out : outputs) KILN_ASSERT(available.count(out), "graph output '", value(out).name, "' is never produced");
}

}  // namespace kiln::ir
