// Transpose composition: a Transpose of a Transpose reads the first one's input with the composed
// permutation, and a Transpose whose permutation is the identity disappears. Layout changes meet
// the model's own permutes this way (a ConvNeXt block's permute to channels-last right after an
// NHWC region's edge cancels out), whoever wrote either.
#pragma once

#include <cstddef>

#include "ir/graph.hpp"

namespace kiln::passes {

// Returns the number of Transposes rewritten or removed. The first Transpose of a pair stays for
// its other readers (dead code elimination drops it otherwise); an identity Transpose that writes
// a graph output stays.
size_t compose_transposes(ir::Graph& graph);

}  // namespace kiln::passes
