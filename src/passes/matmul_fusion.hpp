// Fuses MatMul with a following bias Add and/or Relu, and Gemm with a following Relu, into one
// layer (kiln's extensions: MatMul input 2 is a bias of length N; attribute kiln_activation), so
// cuBLASLt applies them in its epilogue instead of separate kernels.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// MatMul(A, B) -> Add(constant of N elements broadcast along the last dim) [-> Relu], and
// Gemm -> Relu, where each intermediate has one reader and is not a graph output. Returns the
// number of fusions.
int fuse_matmul_epilogues(ir::Graph& graph);

}  // namespace kiln::passes
