// Batch-norm folding: an inference BatchNormalization that directly follows a Conv, a Gemm, or a
// rank-2 MatMul (optionally followed by a constant bias Add), whose output nothing else reads, is
// folded into that node's constant weights and bias, removing the BatchNormalization (a MatMul
// becomes a Gemm that also takes the bias). Only float32 constants are folded; anything else is
// left as it was.
#pragma once

#include <cstddef>

#include "ir/graph.hpp"

namespace kiln::passes {

// Returns the number of BatchNormalization nodes folded. Removed nodes are compacted away; the
// old weights stay in the graph until dead code elimination drops them.
size_t fold_batch_norm(ir::Graph& graph);

}  // namespace kiln::passes
