// Fuses connected elementwise nodes (Add/Mul/Div/Erf/Gelu/Relu/...) into one FusedElementwise node
// whose register program (ops/fused_program.hpp) computes the whole chain per output element, so a
// GELU decomposition or a bias + residual Add runs as one kernel with one pass over memory.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Greedily grows groups backwards from each fusible node (latest first): a producer joins when it
// is fusible, its output is not a graph output and every reader of its output is in the group.
// Fusible: a supported op whose inputs and output share one floating dtype (float32/16/bf16) and
// have static shapes. Scalar constants become LOAD_CONSTANT instructions; other external values
// become the fused node's inputs (at most 8, deduplicated). Groups of one node are left alone.
// The fused node replaces the group's last node and keeps its name and output value.
// Returns the number of FusedElementwise nodes created.
int fuse_elementwise_chains(ir::Graph& graph);

}  // namespace kiln::passes
