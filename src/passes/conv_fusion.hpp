// Fuses Conv with a following residual Add and/or Relu into one Conv layer (kiln's extension of
// Conv: input 3 is the residual, attribute kiln_activation the activation), so the GPU runs one
// cuDNN call instead of three kernels and the CPU makes one pass over the output.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Conv -> Add(other) -> Relu, Conv -> Add(other), Conv -> Relu, where each intermediate has a single
// reader and is not a graph output, and the Add does not broadcast. Returns the number of fusions.
int fuse_conv_epilogues(ir::Graph& graph);

}  // namespace kiln::passes
