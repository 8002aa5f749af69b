// Rewrites the variadic elementwise ops Sum, Mean, Min and Max with other than two inputs into
// two-input ones, for backends whose kernels take exactly two (CUDA):
//   Sum(a, b, c) -> Add(Add(a, b), c);  Min/Max likewise with Min/Max;
//   Mean(a, b, c) -> Div(Add(Add(a, b), c), 3)  (the count as a scalar constant of the output dtype);
//   Sum/Mean/Min/Max(a) -> Identity(a).
// Broadcasting follows from the two-input ops, which broadcast the same way. Left folds in input
// order, as the CPU reference accumulates.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Returns the number of nodes rewritten. Intermediate values get their shapes from the next
// shape inference (the caller runs passes::infer_shapes when this returns > 0).
int expand_variadic_elementwise(ir::Graph& graph);

}  // namespace kiln::passes
