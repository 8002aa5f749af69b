// What the epilogue fusions (conv_fusion, matmul_fusion) share: finding the one reader that an
// epilogue must be, and the record of an epilogue a Conv, MatMul or Gemm did not take, which
// `kiln build --explain` prints.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.hpp"

namespace kiln::passes {

// An epilogue (Add, Relu) that reads a Conv/MatMul/Gemm's output but was not fused into it.
struct EpilogueMiss {
  std::string node;       // the Conv, MatMul or Gemm
  std::string op;
  std::string reader;     // the node it did not absorb
  std::string reader_op;
  std::string reason;     // why, e.g. "Add's other input 'x' has dims [?a, 64] vs [?b, 64]: ..."
};

// Moves the node at `from` (a Conv, MatMul or Gemm) to position `at`, replacing the epilogue node
// there and taking its outputs (so later readers see the fused node); `from` becomes removed.
void absorb_into(ir::Graph& graph, size_t from, size_t at);

// The single live reader of `value` when it reads it once and `value` is no graph output; -1
// otherwise.
int32_t sole_reader(const ir::Graph& graph, ir::ValueId value);

// When `value` has a live reader of op `op` but no sole reader (several readers, a graph output,
// read twice by one node): that reader's index, and in `reason` why it cannot be an epilogue.
// -1 when there is no such reader or the reader is the sole one.
int32_t blocked_reader(const ir::Graph& graph, ir::ValueId value, const std::string& op, std::string* reason);

// Why the Add's other input `other` cannot be a residual of `output` (same dtype and provably
// the same shape, symbolic dims included: ir::Graph::same_shape); "" when it can.
std::string residual_mismatch(const ir::Graph& graph, ir::ValueId output, ir::ValueId other);

}  // namespace kiln::passes
