// Identity elimination: removes Identity nodes and inference-mode Dropout nodes by making their
// consumers read the input directly. When the removed node's output is a graph output, the
// input takes over the output's name so the engine's binding keeps its name; where that is not
// possible (the input is a graph input, a constant, or another graph output) the node stays and
// emission copies into the output.
#pragma once

#include <cstddef>

#include "ir/graph.hpp"

namespace kiln::passes {

// Returns the number of nodes removed. Removed nodes are compacted away.
size_t eliminate_identities(ir::Graph& graph);

}  // namespace kiln::passes
