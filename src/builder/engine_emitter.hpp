// Engine emission: turns an optimised ir::Graph into a format::EngineModel (tensors, layers,
// bindings, packed weights, memory plan). One layer per node, in the graph's order.
#pragma once

#include <string>
#include <vector>

#include "builder/input_profiles.hpp"
#include "format/engine_model.hpp"
#include "ir/graph.hpp"

namespace kiln::builder {

struct EmitOptions {
  format::Target target;
  DType precision = DType::kFloat32;
  std::string metadata_json = "{}";
  // Per graph input, one range per dim; empty means "static dims as they are".
  InputRanges input_ranges;
};

// The graph must be verified-consistent, shape-inferred and free of removed nodes. Graph outputs
// that are constants or graph inputs get an Identity layer that copies into their own output
// tensor; a graph output listed twice is an error (kInvalidArgument), as bindings are named.
// Activations get a static arena plan when all their shapes are static; otherwise only their
// liveness is recorded and the runtime plans per input shapes.
format::EngineModel emit_engine_model(const ir::Graph& graph, const EmitOptions& options);

}  // namespace kiln::builder
