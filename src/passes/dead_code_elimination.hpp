// Dead code elimination: drops nodes whose outputs the graph outputs do not (transitively) need,
// then drops the values nothing refers to any more (unused constants, outputs of dropped nodes).
// Graph inputs always stay: they are the engine's bindings even when unused.
#pragma once

#include <cstddef>

#include "ir/graph.hpp"

namespace kiln::passes {

struct DeadCodeResult {
  size_t nodes_removed = 0;
  size_t values_removed = 0;
};

// Value ids are renumbered (the graph's node inputs/outputs and input/output lists are updated);
// the relative order of the kept values is preserved.
DeadCodeResult eliminate_dead_code(ir::Graph& graph);

}  // namespace kiln::passes
