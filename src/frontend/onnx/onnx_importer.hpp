// ONNX -> kiln IR. Reads ModelProto bytes with kiln's own protobuf wire-format reader (no protobuf
// library), so the builder does not depend on protobuf or onnx.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "ir/graph.hpp"

namespace kiln::onnx {

struct ImportOptions {
  // Directory that external-data tensor locations are relative to ("" disallows external data).
  std::string base_dir;
  // Name used in error messages for the model ("model.onnx", or "<bytes>").
  std::string source = "<bytes>";
};

// Parses and imports a model. The result has: initializers as constant values; Constant nodes
// turned into constant values; graph inputs that are initializers treated as constants (not
// caller-bound); graph inputs/outputs with dtype and shape (dim_param dims as kDynamicDim with
// their names in Value::dim_names); nodes normalised to the op forms of src/ops/op_registry.hpp
// (latest opset), in topological order. Intermediate shapes are left for shape inference.
// Throws kiln::Error:
//   kCorruptFile   - bytes that are not a valid ModelProto (naming the source and what broke),
//                    and malformed graphs: a graph input or output listed twice or named with a
//                    NUL byte, no graph outputs, an attribute given twice on a node, a value defined twice, a cycle,
//                    a read of a value nothing produces; external data that leaves the model's
//                    folder or is not a regular file;
//   kUnsupported   - ai.onnx opset outside 13..21, or ops/attributes kiln does not support: ONE
//                    error listing every unsupported node of the model, each with node name, op
//                    type, domain and opset;
//   kNotFound/kIoError - a missing or unreadable external data file (naming tensor and path).
ir::Graph import_model_bytes(std::span<const uint8_t> bytes, const ImportOptions& options);
// Reads the file (base_dir = its directory, source = its path) and imports it.
ir::Graph import_model_file(const std::string& path);

}  // namespace kiln::onnx
