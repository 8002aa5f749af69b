#include "ir/graph.hpp"

#include <map>
#include <sstream>
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

void Graph::assign_input_symbols() {
  std::map<std::string, SymbolId> by_name;
  for (size_t s = 0; s < symbols.size(); ++s)
    if (symbols[s].dim_param) by_name.emplace(symbols[s].name, static_cast<SymbolId>(s));
  auto add_symbol = [&](std::string name, bool dim_param) {
    symbols.push_back(Symbol{name, dim_param});
    const auto id = static_cast<SymbolId>(symbols.size() - 1);
    if (dim_param) by_name.emplace(std::move(name), id);
    return id;
  };
  for (ValueId id : inputs) {
    Value& input = value(id);
    input.dim_symbols.resize(input.shape.size(), kNoSymbol);
    for (size_t d = 0; d < input.shape.size(); ++d) {
      if (input.shape[d] != kDynamicDim) {
        input.dim_symbols[d] = kNoSymbol;
        continue;
      }
      if (input.dim_symbols[d] != kNoSymbol) continue;
      const std::string& param = d < input.dim_names.size() ? input.dim_names[d] : std::string();
      if (!param.empty()) {
        auto it = by_name.find(param);
        input.dim_symbols[d] = it != by_name.end() ? it->second : add_symbol(param, true);
      } else {
        std::ostringstream name;
        name << input.name << '[' << d << ']';
        input.dim_symbols[d] = add_symbol(name.str(), false);
      }
    }
  }
}

SymbolId Graph::symbol_of(ValueId id, size_t dim) const {
  if (id < 0 || static_cast<size_t>(id) >= values.size()) return kNoSymbol;
  const Value& v = value(id);
  if (dim >= v.shape.size() || v.shape[dim] != kDynamicDim || v.dim_symbols.size() != v.shape.size()) {
    return kNoSymbol;
  }
  return v.dim_symbols[dim];
}

bool Graph::same_dim(ValueId a, size_t dim_a, ValueId b, size_t dim_b) const {
  const Shape& sa = value(a).shape;
  const Shape& sb = value(b).shape;
  if (dim_a >= sa.size() || dim_b >= sb.size()) return false;
  if (sa[dim_a] != kDynamicDim || sb[dim_b] != kDynamicDim) return sa[dim_a] == sb[dim_b];
  const SymbolId s = symbol_of(a, dim_a);
  return s != kNoSymbol && s == symbol_of(b, dim_b);
}

bool Graph::same_shape(ValueId a, ValueId b) const {
  const size_t rank = value(a).shape.size();
  if (value(b).shape.size() != rank) return false;
  for (size_t d = 0; d < rank; ++d)
    if (!same_dim(a, d, b, d)) return false;
  return true;
}

std::string Graph::describe_dims(ValueId id) const {
  const Shape& shape = value(id).shape;
  std::ostringstream out;
  out << '[';
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d > 0) out << ", ";
    if (shape[d] != kDynamicDim) {
      out << shape[d];
      continue;
    }
    out << '?';
    const SymbolId s = symbol_of(id, d);
    if (s == kNoSymbol) continue;
    if (static_cast<size_t>(s) < symbols.size()) {
      out << symbols[static_cast<size_t>(s)].name;
    } else {
      out << 's' << s;
    }
  }
  out << ']';
  return out.str();
}

}  // namespace kiln::ir
