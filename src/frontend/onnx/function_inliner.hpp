// Flattens a model's main graph into one list of nodes, inlining calls to model-local functions
// (FunctionProto): formal inputs/outputs become the call's values, attribute references take the
// call's attributes (or the function's defaults), and internal values get unique names.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "frontend/onnx/onnx_importer.hpp"
#include "frontend/onnx/onnx_proto.hpp"

namespace kiln::onnx {

// "" for both spellings of the default ONNX domain ("" and "ai.onnx"), else the domain itself.
std::string canonical_domain(const std::string& domain);

struct FlatAttribute {
  std::string name;               // the name the node sees
  const proto::Attribute* value;  // borrowed from the model; its own name may differ (refs)
};

struct FlatNode {
  std::string name;  // never empty: "<op_type>_<index>" when the model gives none
  std::string op_type;
  std::string domain;  // canonical: "" is ai.onnx
  int64_t opset = 0;   // the version of `domain` in effect for this node (0 when not imported)
  std::vector<std::string> inputs;   // "" for an absent optional input
  std::vector<std::string> outputs;  // "" for an absent optional output
  std::vector<FlatAttribute> attributes;
  // Nodes with graph attributes (If/Loop/Scan) only: the outer-scope names their bodies read (as
  // written in the bodies, nested ones included), each with the name that value has in the
  // flattened graph; and the opsets in effect where the node stands.
  std::vector<std::pair<std::string, std::string>> captures;
  std::shared_ptr<const std::unordered_map<std::string, int64_t>> scope_opsets;
};

// A body graph inlined once: its nodes and initializers under fresh names.
struct InlinedSubgraph {
  std::vector<FlatNode> nodes;
  std::vector<std::pair<std::string, const proto::Tensor*>> initializers;  // fresh name, tensor
  std::vector<std::string> outputs;  // the flattened names of the body's outputs, in order
};

// Flattens the main graph, and later the bodies of control-flow nodes, under one set of names.
class Flattener {
 public:
  // `taken_elsewhere` tells names the caller has given out itself (never reused here).
  Flattener(const proto::Model& model, const ImportOptions& options,
            std::function<bool(const std::string&)> taken_elsewhere);

  // Inlines every call to a function in model.functions (recursively, up to a fixed depth).
  // Throws kiln::Error naming options.source: kCorruptFile for attribute references outside a
  // function, recursive functions, calls with more inputs/outputs than the function declares;
  // kUnsupported for a function importing an ai.onnx opset kiln does not support.
  std::vector<FlatNode> flatten_main_graph();

  // Inlines `body`, a graph attribute of `owner`, once: body input k reads `inputs[k]` ("" for
  // absent), outer-scope names read owner.captures, and every value the body defines gets a fresh
  // name starting with `prefix`. Needs inputs.size() == body.inputs.size(); throws kCorruptFile
  // naming the owner otherwise, and when the body reads a name neither it nor an outer scope defines.
  InlinedSubgraph inline_subgraph(const proto::Graph& body, const FlatNode& owner,
                                  const std::vector<std::string>& inputs, const std::string& prefix);

  // A name no value of the model, of this flattener or of `taken_elsewhere` has; reserves it.
  std::string unique_name(const std::string& base);

 private:
  struct Scope;
  void emit(const proto::Node& node, size_t index, Scope& scope);
  void inline_call(const proto::Function& fn, const FlatNode& call, const Scope& outer);
  std::string map_name(const std::string& name, Scope& scope);
  std::vector<FlatAttribute> resolve_attributes(const proto::Node& node, const std::string& node_name,
                                                const Scope& scope) const;
  const std::vector<std::string>& free_names(const proto::Graph& graph);
  template <typename... Parts>
  [[noreturn]] void fail_corrupt(Parts&&... parts) const;

  using FunctionKey = std::tuple<std::string, std::string, std::string>;  // domain, name, overload
  const proto::Model& model_;
  const ImportOptions& options_;
  std::function<bool(const std::string&)> taken_elsewhere_;
  std::map<FunctionKey, const proto::Function*> functions_;
  std::unordered_set<std::string> used_names_;
  std::vector<const proto::Function*> stack_;
  std::vector<FlatNode> out_;
  std::map<const proto::Graph*, std::vector<std::string>> free_names_;
};

// Flattener(model, options, nothing taken).flatten_main_graph().
std::vector<FlatNode> flatten_model(const proto::Model& model, const ImportOptions& options);

}  // namespace kiln::onnx
