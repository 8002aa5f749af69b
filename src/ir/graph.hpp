// The builder's graph IR: SSA values produced by nodes, in topological order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/attributes.hpp"
#include "base/host_tensor.hpp"

namespace kiln::ir {

using ValueId = int32_t;
inline constexpr ValueId kNoValue = -1;  // an absent optional input

// Symbolic dims (docs/architecture.md#symbolic-dims). A dynamic dim (kDynamicDim in a Shape) may
// carry a symbol: two dims with the same symbol have the same size in every run the engine
// accepts. Symbols are build-time facts only (the engine file has none): graph inputs get them
// from ONNX dim_param names (one name, one symbol) or a fresh one per anonymous dynamic dim, and
// shape inference passes them only where an op's infer function declares which input dim an
// output dim equals (ops::DimLink). A dim with no symbol is unknown: it equals nothing, not even
// itself in another value. They live beside Shape, not in it, so the code that tests
// `== kDynamicDim` or `< 0` is unchanged; read them through Graph::symbol_of / same_dim, which
// ignore a symbol on a dim that is static or out of a stale vector's range.
using SymbolId = int32_t;
inline constexpr SymbolId kNoSymbol = -1;

struct Symbol {
  std::string name;        // the ONNX dim_param, or for an anonymous input dim "<input>[<dim>]"
  bool dim_param = false;  // whether `name` is a dim_param (only those are shared by name)
};

struct Value {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;                   // kDynamicDim where unknown; rank is always known after inference
  std::vector<std::string> dim_names;  // graph inputs: ONNX dim_param per dim ("" when none)
  // Per dim of `shape` (or empty: no symbols): the symbol of a dynamic dim, kNoSymbol for static
  // dims and unknown ones. Set for graph inputs by Graph::assign_input_symbols and for node
  // outputs by shape inference (which rewrites it on every inference).
  std::vector<SymbolId> dim_symbols;
  std::shared_ptr<const HostTensor> constant;  // set for initializers and folded values
  int32_t producer = -1;         // index of the producing node, -1 for graph inputs and constants
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;            // "" for the default ONNX domain
  std::vector<ValueId> inputs;   // kNoValue for an absent optional input
  std::vector<ValueId> outputs;
  AttributeMap attrs;
  bool removed = false;          // passes mark nodes dead; Graph::compact() drops them
};

// Range of a dynamic input dimension, from BuilderConfig (defaults: min 1, opt 1, max 1<<30... see
// builder). Stored per graph input per dim.
struct Graph {
  std::string name;
  int64_t opset = 0;             // ai.onnx opset the model was imported with
  std::vector<Value> values;
  std::vector<Node> nodes;       // topological order
  std::vector<ValueId> inputs;   // caller-bound inputs (never initializers)
  std::vector<ValueId> outputs;
  std::vector<Symbol> symbols;    // indexed by SymbolId

  ValueId add_value(Value value);
  // Adds a constant value; its dtype and shape come from the tensor.
  ValueId add_constant(std::string name, std::shared_ptr<const HostTensor> tensor);
  // Appends a node and sets the producer of its outputs. Returns the node index.
  int32_t add_node(Node node);

  Value& value(ValueId id) { return values.at(static_cast<size_t>(id)); }
  const Value& value(ValueId id) const { return values.at(static_cast<size_t>(id)); }
  bool is_constant(ValueId id) const { return id >= 0 && value(id).constant != nullptr; }

  // Number of live (non-removed) nodes that read `id`, plus one per graph output naming it.
  int use_count(ValueId id) const;
  // Drops removed nodes, recomputes producers and renumbers nothing else (value ids are stable).
  void compact();
  // Throws kInternal when an input is used before it is produced, or ids are out of range.
  void verify() const;

  // ---- symbolic dims ----
  // Gives every dynamic dim of every graph input a symbol, unless it has one: the symbol of its
  // dim_name when it has one (the same name on any input is the same symbol), else a new one.
  // Idempotent; the builder calls it once the input profiles have fixed which dims are dynamic.
  void assign_input_symbols();
  // The symbol of dim `dim` of `id`: kNoSymbol when that dim is static, out of range, or unknown.
  SymbolId symbol_of(ValueId id, size_t dim) const;
  // Whether dim `dim_a` of `a` and dim `dim_b` of `b` provably have the same size in every run:
  // both static and equal, or both dynamic with the same symbol.
  bool same_dim(ValueId a, size_t dim_a, ValueId b, size_t dim_b) const;
  // Whether `a` and `b` provably have the same shape (same rank, same_dim for every dim).
  bool same_shape(ValueId a, ValueId b) const;
  // `id`'s shape for messages: "[?N, 64, ?, 7]" (a symbol's name after '?'; a bare '?' when
  // the dim is dynamic with no symbol).
  std::string describe_dims(ValueId id) const;
};

}  // namespace kiln::ir
