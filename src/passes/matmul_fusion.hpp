// Fuses MatMul with a following bias Add and/or Relu, and Gemm with a following Relu, into one
// layer (kiln's extensions: MatMul input 2 is a bias of length N; attribute kiln_activation), so
// cuBLASLt applies them in its epilogue instead of separate kernels.
#pragma once

#include <vector>

#include "ir/graph.hpp"
#include "passes/epilogue_fusion.hpp"

namespace kiln::passes {

// MatMul(A, B) -> Add(constant of N elements broadcast along the last dim) [-> Relu], and
// Gemm -> Relu, where each intermediate has one reader and is not a graph output. The bias is a
// constant of static N, so the product's other dims (dynamic ones included) pass unchanged.
// Returns the number of fusions. `misses`, when given, receives each Add or Relu reader that was
// not fused, with the reason.
int fuse_matmul_epilogues(ir::Graph& graph, std::vector<EpilogueMiss>* misses = nullptr);

}  // namespace kiln::passes
