// Lowers ONNX Einsum to ops every backend runs (Transpose, Reshape, MatMul, ReduceSum, Mul).
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Rewrites every Einsum node (shapes must be inferred). Returns the number rewritten; re-infers
// the shapes of the nodes it adds.
int lower_einsum(ir::Graph& graph);

}  // namespace kiln::passes
