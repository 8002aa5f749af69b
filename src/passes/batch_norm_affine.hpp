// Batch norm as an affine map: an inference BatchNormalization left after folding (one that follows
// no Conv/Gemm, e.g. DenseNet's pre-activation BN after a Concat) whose parameters are float32
// constants becomes y = x * m + b with per-channel constants m = scale / sqrt(var + epsilon) and
// b = bias - mean * m (computed in double, as the CPU kernel does), shaped [C, 1, ..., 1] so they
// broadcast along axis 1. Two pointwise ops join the fusion groups around them, where the
// BatchNormalization layer was a kernel of its own. cuda engines only: the CPU keeps the op.
#pragma once

#include <cstddef>

#include "ir/graph.hpp"

namespace kiln::passes {

// Returns the number of BatchNormalization nodes rewritten. Needs shapes inferred.
size_t convert_batch_norm_to_affine(ir::Graph& graph);

}  // namespace kiln::passes
