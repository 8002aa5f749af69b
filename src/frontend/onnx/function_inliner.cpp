#include "frontend/onnx/function_inliner.hpp"

#include <map>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "base/error.hpp"
#include "frontend/onnx/opset_normalizer.hpp"

namespace kiln::onnx {

std::string canonical_domain(const std::string& domain) {
  return domain == "ai.onnx" ? std::string() : domain;
}

namespace {

// Functions calling functions deeper than this are rejected (guards hostile files).
constexpr int kMaxInlineDepth = 32;

using FunctionKey = std::tuple<std::string, std::string, std::string>;  // domain, name, overload

std::string function_label(const proto::Function& fn) {
  return fn.domain.empty() ? fn.name : fn.domain + "." + fn.name;
}

class Flattener {
 public:
  Flattener(const proto::Model& model, const ImportOptions& options)
      : model_(model), options_(options) {
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

  std::vector<FlatNode> run() {
    Scope root;
    for (const proto::OperatorSetId& id : model_.opset_imports) {
      root.opsets[canonical_domain(id.domain)] = id.version;
    }
    const auto& nodes = model_.graph.nodes;
    for (size_t i = 0; i < nodes.size(); ++i) emit(nodes[i], i, root);
    return std::move(out_);
  }

 private:
  struct Scope {
    const proto::Function* function = nullptr;  // null for the main graph
    std::unordered_map<std::string, int64_t> opsets;
    std::unordered_map<std::string, std::string> renames;  // body name -> caller-side name
    const std::vector<FlatAttribute>* call_attributes = nullptr;
    std::string prefix;  // "<call node>/" inside a function
    int depth = 0;
  };

  template <typename... Parts>
  [[noreturn]] void fail_corrupt(Parts&&... parts) const {
    fail(ErrorCode::kCorruptFile, options_.source, ": ", std::forward<Parts>(parts)...);
  }

  std::string unique_name(const std::string& base) {
    if (used_names_.insert(base).second) return base;
    for (size_t k = 1;; ++k) {
      std::string candidate = detail::concat(base, "_", k);
      if (used_names_.insert(candidate).second) return candidate;
    }
  }

  std::string map_name(const std::string& name, Scope& scope) {
    if (scope.function == nullptr || name.empty()) return name;
    auto it = scope.renames.find(name);
    if (it != scope.renames.end()) return it->second;
    std::string fresh = unique_name(scope.prefix + name);
    scope.renames.emplace(name, fresh);
    return fresh;
  }

  std::vector<FlatAttribute> resolve_attributes(const proto::Node& node,
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

  void emit(const proto::Node& node, size_t index, Scope& scope) {
    FlatNode flat;
    flat.name = node.name.empty() ? detail::concat(node.op_type, "_", index) : node.name;
    flat.name = scope.prefix + flat.name;
    flat.op_type = node.op_type;
    flat.domain = canonical_domain(node.domain);
    for (const std::string& in : node.inputs) flat.inputs.push_back(map_name(in, scope));
    for (const std::string& out : node.outputs) flat.outputs.push_back(map_name(out, scope));
    flat.attributes = resolve_attributes(node, flat.name, scope);

    auto fn = functions_.find(FunctionKey{flat.domain, node.op_type, node.overload});
    if (fn != functions_.end()) {
      inline_call(*fn->second, flat, scope);
      return;
    }
    auto opset = scope.opsets.find(flat.domain);
    flat.opset = opset == scope.opsets.end() ? 0 : opset->second;
    out_.push_back(std::move(flat));
  }

  void inline_call(const proto::Function& fn, const FlatNode& call, const Scope& outer) {
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

  const proto::Model& model_;
  const ImportOptions& options_;
  std::map<FunctionKey, const proto::Function*> functions_;
  std::unordered_set<std::string> used_names_;
  std::vector<const proto::Function*> stack_;
  std::vector<FlatNode> out_;
};

}  // namespace

std::vector<FlatNode> flatten_model(const proto::Model& model, const ImportOptions& options) {
  return Flattener(model, options).run();
}

}  // namespace kiln::onnx
