// Constant folding: evaluates, on the CPU backend, every node whose inputs are all constants, and
// Shape/Size nodes whose answer the input's static dims already give, turning their outputs into
// constants. Shapes are re-inferred along the way so that folded shape tensors make downstream
// shapes static.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ir/graph.hpp"

namespace kiln::passes {

struct ConstantFoldingOptions {
  // Outputs larger than this stay computed at run time (e.g. a big Expand or ConstantOfShape),
  // so that engines do not grow by materialised tensors and a build never materialises (or
  // spends time computing) a huge tensor; the run-time memory limit then applies to them.
  // Shapes whose size overflows are an error of shape inference (kInvalidArgument naming the
  // node), not folded.
  uint64_t max_output_bytes = uint64_t{16} << 20;
  // Sweeps over the graph until nothing changes; one usually suffices.
  int max_sweeps = 8;
};

// Returns the number of nodes folded. Removed nodes are compacted away.
size_t fold_constants(ir::Graph& graph, const ConstantFoldingOptions& options = {});

}  // namespace kiln::passes
