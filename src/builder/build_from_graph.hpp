// The builder pipeline from an imported graph onwards: profiles -> passes -> emission. Used by the
// public build functions after import, and by tests that build graphs by hand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/engine_model.hpp"
#include "ir/graph.hpp"
#include "kiln/builder.hpp"

namespace kiln::builder {

// The optimisation passes, in pipeline order: shape inference, constant folding, identity
// elimination, batch-norm folding, dead code elimination, shape inference.
void optimize_graph(ir::Graph& graph);

// Validates `config`, applies its input profiles, optimises and emits. `source` names the model
// (a path or "<bytes>") in the engine's metadata; empty leaves it out.
format::EngineModel build_engine_model(ir::Graph graph, const BuilderConfig& config,
                                       const std::string& source = "");
// build_engine_model, serialised with format::write_engine.
std::vector<uint8_t> build_engine_from_graph(ir::Graph graph, const BuilderConfig& config,
                                             const std::string& source = "");

}  // namespace kiln::builder
