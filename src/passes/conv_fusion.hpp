// Fuses Conv with a following residual Add and/or Relu into one Conv layer (kiln's extension of
// Conv: input 3 is the residual, attribute kiln_activation the activation), so the GPU runs one
// cuDNN call instead of three kernels and the CPU makes one pass over the output.
#pragma once

#include <vector>

#include "ir/graph.hpp"
#include "passes/epilogue_fusion.hpp"

namespace kiln::passes {

// Conv -> Add(other) -> Relu, Conv -> Add(other), Conv -> Relu, where each intermediate has a single
// reader and is not a graph output, and the Add does not broadcast: `other` has the Conv output's
// dtype and provably its shape (static dims equal, dynamic dims of the same symbol; the fused
// Conv's shape inference checks it again at run time). Returns the number of fusions. `misses`,
// when given, receives each Add or Relu reader that was not fused, with the reason.
int fuse_conv_epilogues(ir::Graph& graph, std::vector<EpilogueMiss>* misses = nullptr);

}  // namespace kiln::passes
