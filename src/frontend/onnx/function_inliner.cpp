#include "frontend/onnx/function_inliner.hpp"

#include <string_view>

#include "base/error.hpp"
#include "frontend/onnx/opset_normalizer.hpp"

namespace kiln::onnx {

std::string canonical_domain(const std::string& domain) {
  return domain == "ai.onnx" ? std::string() : domain;
}

namespace {

// Functions calling functions deeper than this are rejected (guards hostile files).
constexpr int kMaxInlineDepth = 32;

std::string function_label(const proto::Function& fn) {
  return fn.domain.empty() ? fn.name : fn.domain + "." + fn.name;
}

}  // namespace

struct Flattener::Scope {
  const proto::Function* function = nullptr;  // null for the main graph and bodies
  bool renames_names = false;                 // inside a function or an inlined body
  std::unordered_map<std::string, int64_t> opsets;
  std::unordered_map<std::string, std::string> renames;  // body name -> caller-side name
  const std::vector<FlatAttribute>* call_attributes = nullptr;
  std::string prefix;  // "<call node>/" inside a function
  int depth = 0;
};

Flattener::Flattener(const proto::Model& model, const ImportOptions& options,
                     std::function<bool(const std::string&)> taken_elsewhere)
    : model_(model), options_(options), taken_elsewhere_(std::move(taken_elsewhere)) {
  for (const proto::Function& fn : model.functions) {
    functions_.emplace(FunctionKey{canonical_domain(fn.domain), fn.name, fn.overload}, &fn);
  }
  const proto::Graph& g = model.graph;
  for (const proto::Tensor& t : g.initializers) used_names_.insert(t.name);
  for (const proto::ValueInfo& v : g.inputs) used_names_.insert(v.name);
  for (const proto::ValueInfo& v : g.outputs) used_names_.insert(v.name);
  for (const proto::Node& n : g.nodes) {
    used_names_.insert(n.inputs.begin(), n.inputs.end());
    used_names_.insert(n.outputs.begin(), n.outputs.end());
  }
}

std::vector<FlatNode> Flattener::flatten_main_graph() {
  Scope root;
  for (const proto::OperatorSetId& id : model_.opset_imports) {
    root.opsets[canonical_domain(id.domain)] = id.version;
  }
  const auto& nodes = model_.graph.nodes;
  for (size_t i = 0; i < nodes.size(); ++i) emit(nodes[i], i, root);
  return std::move(out_);
}

template <typename... Parts>
void Flattener::fail_corrupt(Parts&&... parts) const {
  fail(ErrorCode::kCorruptFile, options_.source, ": ", std::forward<Parts>(parts)...);
}

std::string Flattener::unique_name(const std::string& base) {
  const auto free = [this](const std::string& name) {
    return !used_names_.count(name) && !(taken_elsewhere_ && taken_elsewhere_(name));
  };
  std::string candidate = base;
  for (size_t k = 1; !free(candidate); ++k) candidate = detail::concat(base, "_", k);
  used_names_.insert(candidate);
  return candidate;
}

std::string Flattener::map_name(const std::string& name, Scope& scope) {
  if (!scope.renames_names || name.empty()) return name;
  auto it = scope.renames.find(name);
  if (it != scope.renames.end()) return it->second;
  std::string fresh = unique_name(scope.prefix + name);
  scope.renames.emplace(name, fresh);
  return fresh;
}

// The names a graph reads from outer scopes: those its nodes (and their own bodies) read or its
// outputs name, less its inputs, initializers and node outputs.
const std::vector<std::string>& Flattener::free_names(const proto::Graph& graph) {
  auto cached = free_names_.find(&graph);
  if (cached != free_names_.end()) return cached->second;
  std::unordered_set<std::string> defined;
  for (const proto::ValueInfo& v : graph.inputs) defined.insert(v.name);
  for (const proto::Tensor& t : graph.initializers) defined.insert(t.name);
  for (const proto::Node& n : graph.nodes) defined.insert(n.outputs.begin(), n.outputs.end());
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  const auto read = [&](const std::string& name) {
    if (!name.empty() && !defined.count(name) && seen.insert(name).second) out.push_back(name);
  };
  for (const proto::Node& n : graph.nodes) {
    for (const std::string& in : n.inputs) read(in);
    for (const proto::Attribute& a : n.attributes) {
      if (a.g) {
        for (const std::string& name : free_names(*a.g)) read(name);
      }
      for (const auto& g : a.graphs) {
        for (const std::string& name : free_names(*g)) read(name);
      }
    }
  }
  for (const proto::ValueInfo& v : graph.outputs) read(v.name);
  return free_names_.emplace(&graph, std::move(out)).first->second;
}

std::vector<FlatAttribute> Flattener::resolve_attributes(const proto::Node& node,
                                                         const std::string& node_name,
                                                         const Scope& scope) const {
  std::vector<FlatAttribute> out;
  // The ONNX checker refuses repeats; taking one silently would hide which value counts.
  std::unordered_set<std::string_view> given;
  for (const proto::Attribute& attr : node.attributes) {
    if (!given.insert(attr.name).second) {
      fail_corrupt("node '", node_name, "' (op '", node.op_type, "'): attribute '", attr.name,
                   "' appears twice");
    }
  }
  for (const proto::Attribute& attr : node.attributes) {
    if (attr.ref_attr_name.empty()) {
      out.push_back({attr.name, &attr});
      continue;
    }
    if (scope.function == nullptr) {
      fail_corrupt("node '", node_name, "': attribute '", attr.name, "' refers to '",
                   attr.ref_attr_name,
                   "', but attribute references are only valid inside functions");
    }
    const proto::Attribute* value = nullptr;
    for (const FlatAttribute& given : *scope.call_attributes) {
      if (given.name == attr.ref_attr_name) value = given.value;
    }
    if (value == nullptr) {
      for (const proto::Attribute& fallback : scope.function->attribute_defaults) {
        if (fallback.name == attr.ref_attr_name) value = &fallback;
      }
    }
    // A reference to an attribute the call leaves out (and that has no default) means the
    // attribute is absent.
    if (value != nullptr) out.push_back({attr.name, value});
  }
  return out;
}

void Flattener::emit(const proto::Node& node, size_t index, Scope& scope) {
  FlatNode flat;
  flat.name = node.name.empty() ? detail::concat(node.op_type, "_", index) : node.name;
  flat.name = scope.prefix + flat.name;
  flat.op_type = node.op_type;
  flat.domain = canonical_domain(node.domain);
  for (const std::string& in : node.inputs) flat.inputs.push_back(map_name(in, scope));
  for (const std::string& out : node.outputs) flat.outputs.push_back(map_name(out, scope));
  flat.attributes = resolve_attributes(node, flat.name, scope);
  bool has_body = false;
  for (const proto::Attribute& a : node.attributes) {
    const auto capture = [&](const proto::Graph& body) {
      has_body = true;
      for (const std::string& name : free_names(body)) {
        bool listed = false;
        for (const auto& [inner, outer] : flat.captures) listed = listed || inner == name;
        if (!listed) flat.captures.emplace_back(name, map_name(name, scope));
      }
    };
    if (a.g) capture(*a.g);
    for (const auto& g : a.graphs) capture(*g);
  }
  if (has_body) {
    flat.scope_opsets = std::make_shared<const std::unordered_map<std::string, int64_t>>(scope.opsets);
  }

  auto fn = functions_.find(FunctionKey{flat.domain, node.op_type, node.overload});
  if (fn != functions_.end()) {
    inline_call(*fn->second, flat, scope);
    return;
  }
  auto opset = scope.opsets.find(flat.domain);
  flat.opset = opset == scope.opsets.end() ? 0 : opset->second;
  out_.push_back(std::move(flat));
}

void Flattener::inline_call(const proto::Function& fn, const FlatNode& call, const Scope& outer) {
  for (const proto::Function* active : stack_) {
    if (active == &fn) {
      fail_corrupt("node '", call.name, "': function '", function_label(fn),
                   "' calls itself; recursive functions cannot be inlined");
    }
  }
  if (outer.depth + 1 > kMaxInlineDepth) {
    fail_corrupt("node '", call.name, "': functions nested deeper than ", kMaxInlineDepth,
                 " calls");
  }
  if (call.inputs.size() > fn.inputs.size() || call.outputs.size() > fn.outputs.size()) {
    fail_corrupt("node '", call.name, "' calls function '", function_label(fn), "' with ",
                 call.inputs.size(), " inputs and ", call.outputs.size(),
                 " outputs; it declares ", fn.inputs.size(), " and ", fn.outputs.size());
  }
  Scope scope;
  scope.function = &fn;
  scope.renames_names = true;
  scope.opsets = outer.opsets;
  for (const proto::OperatorSetId& id : fn.opset_imports) {
    scope.opsets[canonical_domain(id.domain)] = id.version;
    if (canonical_domain(id.domain).empty()) {
      check_ai_onnx_opset(id.version, options_,
                          detail::concat("function '", function_label(fn), "': "));
    }
  }
  scope.call_attributes = &call.attributes;
  scope.prefix = call.name + "/";
  scope.depth = outer.depth + 1;
  for (size_t i = 0; i < fn.inputs.size(); ++i) {
    // Inputs the call leaves out are absent inside the body too.
    scope.renames[fn.inputs[i]] = i < call.inputs.size() ? call.inputs[i] : std::string();
  }
  for (size_t i = 0; i < fn.outputs.size(); ++i) {
    const bool bound = i < call.outputs.size() && !call.outputs[i].empty();
    scope.renames[fn.outputs[i]] =
        bound ? call.outputs[i] : unique_name(scope.prefix + fn.outputs[i]);
  }
  stack_.push_back(&fn);
  for (size_t i = 0; i < fn.nodes.size(); ++i) emit(fn.nodes[i], i, scope);
  stack_.pop_back();
}

InlinedSubgraph Flattener::inline_subgraph(const proto::Graph& body, const FlatNode& owner,
                                           const std::vector<std::string>& inputs,
                                           const std::string& prefix) {
  if (inputs.size() != body.inputs.size()) {
    fail_corrupt("node '", owner.name, "' (op '", owner.op_type, "'): its body '", body.name,
                 "' declares ", body.inputs.size(), " inputs; the op binds ", inputs.size());
  }
  Scope scope;
  scope.renames_names = true;
  if (owner.scope_opsets) scope.opsets = *owner.scope_opsets;
  scope.prefix = prefix;
  for (const auto& [inner, outer] : owner.captures) scope.renames[inner] = outer;
  for (size_t i = 0; i < inputs.size(); ++i) scope.renames[body.inputs[i].name] = inputs[i];
  InlinedSubgraph result;
  for (const proto::Tensor& t : body.initializers) {
    const std::string name = unique_name(prefix + t.name);
    scope.renames[t.name] = name;
    result.initializers.emplace_back(name, &t);
  }
  std::vector<FlatNode> saved = std::move(out_);
  out_.clear();
  for (size_t i = 0; i < body.nodes.size(); ++i) emit(body.nodes[i], i, scope);
  result.nodes = std::move(out_);
  out_ = std::move(saved);
  for (const proto::ValueInfo& v : body.outputs) {
    auto it = scope.renames.find(v.name);
    if (v.name.empty() || it == scope.renames.end()) {
      fail_corrupt("node '", owner.name, "' (op '", owner.op_type, "'): body output '", v.name,
                   "' is not produced by the body, its inputs or an outer scope");
    }
    result.outputs.push_back(it->second);
  }
  return result;
}

std::vector<FlatNode> flatten_model(const proto::Model& model, const ImportOptions& options) {
  return Flattener(model, options, nullptr).flatten_main_graph();
}

}  // namespace kiln::onnx
