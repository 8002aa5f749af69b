// Shape inference: gives every node output its dtype and shape (kDynamicDim where only known at
// run time) by calling the op's infer function. Constant inputs pass their values, so shape
// tensors that are known at build time give static shapes. It also gives node outputs their
// symbolic dims (ir::Value::dim_symbols): an output dim takes a symbol only where the op's infer
// function linked it to input dims (ops::DimLink) whose symbols decide it.
#pragma once

#include <cstddef>

#include "ir/graph.hpp"

namespace kiln::passes {

// Infers the outputs of live node `node_index` from the current state of its inputs. Throws
// kUnsupported naming the node and op when kiln has no such op, and whatever the op's infer
// function throws (kInvalidArgument naming the node) for inputs it does not accept. Rewrites the
// outputs' dim_symbols from the links; a link that contradicts the inferred static dims (an infer
// function's bug) is kInternal naming the node.
void infer_node_outputs(ir::Graph& graph, size_t node_index);

// Runs infer_node_outputs on every live node in order.
void infer_shapes(ir::Graph& graph);

}  // namespace kiln::passes
