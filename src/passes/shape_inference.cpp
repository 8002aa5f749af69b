#include "passes/shape_inference.hpp"

#include "base/error.hpp"
#include "ops/op_registry.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

template <typename... Parts>
[[noreturn]] void bad_link(const ir::Node& node, const ops::DimLink& link, Parts&&... parts) {
  fail(ErrorCode::kInternal, describe_node(node), ": its infer function links output ", link.output, " dim ",
       link.dim, " to input dims, but ", std::forward<Parts>(parts)...);
}

}  // namespace

ir::SymbolId symbol_from_link(const ir::Graph& graph, const ir::Node& node, const ops::DimLink& link) {
  if (link.output >= node.outputs.size()) bad_link(node, link, "the node has ", node.outputs.size(), " outputs");
  const ir::ValueId out = node.outputs[link.output];
  const Shape& out_shape = graph.value(out).shape;
  if (link.dim >= out_shape.size()) bad_link(node, link, "the output has rank ", out_shape.size());
  const int64_t out_dim = out_shape[link.dim];
  struct Source {
    size_t input;
    ir::ValueId value;
    size_t dim;
    int64_t size;
  };
  std::vector<Source> sources;
  for (const ops::DimRef& ref : link.sources) {
    const ir::ValueId in = ref.input < node.inputs.size() ? node.inputs[ref.input] : ir::kNoValue;
    if (in == ir::kNoValue) bad_link(node, link, "input ", ref.input, " is absent");
    const Shape& in_shape = graph.value(in).shape;
    if (ref.dim >= in_shape.size()) bad_link(node, link, "input ", ref.input, " has rank ", in_shape.size());
    sources.push_back(Source{ref.input, in, ref.dim, in_shape[ref.dim]});
  }
  if (link.kind == ops::DimLink::Kind::kEqual) {
    for (const Source& s : sources) {
      if (out_dim != kDynamicDim && s.size != kDynamicDim && s.size != out_dim) {
        bad_link(node, link, "the output dim is ", out_dim, " and input ", s.input, " dim ", s.dim, " is ", s.size);
      }
    }
    if (out_dim != kDynamicDim) return ir::kNoSymbol;
    for (const Source& s : sources) {
      const ir::SymbolId symbol = graph.symbol_of(s.value, s.dim);
      if (symbol != ir::kNoSymbol) return symbol;
    }
    return ir::kNoSymbol;
  }
  // kBroadcast: a static source other than 1 is the output's size; all static ones broadcast to it.
  bool all_static = true;
  int64_t broadcast = 1;
  for (const Source& s : sources) {
    all_static = all_static && s.size != kDynamicDim;
    if (s.size == kDynamicDim || s.size == 1) continue;
    if (out_dim != kDynamicDim && s.size != out_dim) {
      bad_link(node, link, "the output dim is ", out_dim, " and input ", s.input, " dim ", s.dim, " is ", s.size);
    }
    broadcast = s.size;
  }
  if (all_static && out_dim != kDynamicDim && out_dim != broadcast) {
    bad_link(node, link, "the output dim is ", out_dim, " and the broadcast of its sources ", broadcast);
  }
  if (out_dim != kDynamicDim) return ir::kNoSymbol;
  ir::SymbolId symbol = ir::kNoSymbol;
  for (const Source& s : sources) {
    if (s.size == 1) continue;
    if (s.size != kDynamicDim) return ir::kNoSymbol;  // inference left a dim it could know: no claim
    const ir::SymbolId own = graph.symbol_of(s.value, s.dim);
    // A dim of unknown or another symbol may be 1 and broadcast, or be the larger one.
    if (own == ir::kNoSymbol || (symbol != ir::kNoSymbol && own != symbol)) return ir::kNoSymbol;
    symbol = own;
  }
  return symbol;
}

void infer_node_outputs(ir::Graph& graph, size_t node_index) {
  ir::Node& node = graph.nodes.at(node_index);
  const bool default_domain = node.domain.empty() || node.domain == "ai.onnx";
  const ops::OpDef* def = default_domain ? ops::find_op(node.op_type) : nullptr;
  if (!def) {
    fail(ErrorCode::kUnsupported, describe_node(node), ": op '", node.op_type, "'",
         default_domain ? "" : " of domain '" + node.domain + "'", " is not supported by kiln");
  }
  std::vector<ops::ValueInfo> inputs(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const ir::ValueId id = node.inputs[i];
    if (id == ir::kNoValue) {
      inputs[i].present = false;
      continue;
    }
    const ir::Value& value = graph.value(id);
    inputs[i].dtype = value.dtype;
    inputs[i].shape = value.shape;
    inputs[i].value = value.constant.get();
  }
  std::vector<ops::ValueInfo> outputs(node.outputs.size());
  std::vector<std::string_view> output_names(node.outputs.size());
  for (size_t i = 0; i < node.outputs.size(); ++i) output_names[i] = graph.value(node.outputs[i]).name;
  std::vector<ops::DimLink> links;
  ops::infer_node(*def, node.name, node.attrs, inputs, outputs, output_names, &links);
  for (size_t i = 0; i < node.outputs.size(); ++i) {
    ir::Value& value = graph.value(node.outputs[i]);
    value.dtype = outputs[i].dtype;
    value.shape = std::move(outputs[i].shape);
    value.dim_symbols.assign(value.shape.size(), ir::kNoSymbol);
  }
  // Resolved from the inputs' symbols only (an output is never its own node's input), so the order
  // of links does not matter; a later link of the same dim wins only over no symbol.
  for (const ops::DimLink& link : links) {
    const ir::SymbolId symbol = symbol_from_link(graph, node, link);
    ir::SymbolId& slot = graph.value(node.outputs[link.output]).dim_symbols[link.dim];
    if (symbol != ir::kNoSymbol && slot == ir::kNoSymbol) slot = symbol;
  }
}

void infer_shapes(ir::Graph& graph) {
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!graph.nodes[i].removed) infer_node_outputs(graph, i);
  }
}

}  // namespace kiln::passes
