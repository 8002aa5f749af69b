// Flattens a model's main graph into one list of nodes, inlining calls to model-local functions
// (FunctionProto): formal inputs/outputs become the call's values, attribute references take the
// call's attributes (or the function's defaults), and internal values get unique names.
#pragma once

#include <cstdint>
#include <string>
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
};

// Inlines every call to a function in model.functions (recursively, up to a fixed depth).
// Throws kiln::Error naming options.source: kCorruptFile for attribute references outside a
// function, recursive functions, calls with more inputs/outputs than the function declares;
// kUnsupported for a function importing an ai.onnx opset kiln does not support.
std::vector<FlatNode> flatten_model(const proto::Model& model, const ImportOptions& options);

}  // namespace kiln::onnx
