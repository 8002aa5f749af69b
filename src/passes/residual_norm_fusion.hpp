// Folds a residual Add into the LayerNormalization that alone reads it: LayerNormalization(Add(a,
// b)) becomes LayerNormalization(a, Scale, B, residual = b) (kiln's input 3), so the sum is
// computed inside the normalization kernel instead of a separate pass over memory.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Only Adds whose two operands and output share shape and dtype (no broadcasting) and whose output
// is read by the LayerNormalization alone (not a graph output). Returns the number of folds.
int fuse_residual_into_layer_norm(ir::Graph& graph);

}  // namespace kiln::passes
