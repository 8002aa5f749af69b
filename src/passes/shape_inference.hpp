// Shape inference: gives every node output its dtype and shape (kDynamicDim where only known at
// run time) by calling the op's infer function. Constant inputs pass their values, so shape
// tensors that are known at build time give static shapes. It also gives node outputs their
// symbolic dims (ir::Value::dim_symbols): an output dim takes a symbol only where the op's infer
// function linked it to input dims (ops::DimLink) whose symbols decide it.
#pragma once

#include <cstddef>

#include "ir/graph.hpp"
#include "ops/op_registry.hpp"

namespace kiln::passes {

// Infers the outputs of live node `node_index` from the current state of its inputs. Throws
// kUnsupported naming the node and op when kiln has no such op, and whatever the op's infer
// function throws (kInvalidArgument naming the node) for inputs it does not accept. Rewrites the
// outputs' dim_symbols from the links; a link that contradicts the inferred static dims (an infer
// function's bug) is kInternal naming the node.
void infer_node_outputs(ir::Graph& graph, size_t node_index);

// The symbol that `link` (declared by `node`'s infer function) gives its output dim, from the
// inputs' symbols: kEqual takes a source's symbol; kBroadcast the one symbol shared by every source
// that is not a static 1. kNoSymbol when the output dim is static or nothing decides it. Throws
// kInternal naming the node when the link names a missing output, input or dim, or contradicts the
// inferred static dims (an equal link between different sizes, a broadcast that is not).
ir::SymbolId symbol_from_link(const ir::Graph& graph, const ir::Node& node, const ops::DimLink& link);

// Runs infer_node_outputs on every live node in order.
void infer_shapes(ir::Graph& graph);

}  // namespace kiln::passes
