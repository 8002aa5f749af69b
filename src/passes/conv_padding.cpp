#include "passes/conv_padding.hpp"

#include <algorithm>

#include "ops/nn_window.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {

int make_conv_padding_symmetric(ir::Graph& graph) {
  int inserted = 0;
  std::vector<ir::Node> rewritten;
  rewritten.reserve(graph.nodes.size());
  for (ir::Node& node : graph.nodes) {
    if (node.removed || node.op_type != "Conv" || node.inputs.size() < 2) {
      rewritten.push_back(std::move(node));
      continue;
    }
    // Copies: adding values below may reallocate graph.values.
    const DType x_dtype = graph.value(node.inputs[0]).dtype;
    const Shape x_shape = graph.value(node.inputs[0]).shape;
    const Shape w_shape = graph.value(node.inputs[1]).shape;
    const Shape spatial(x_shape.begin() + 2, x_shape.end());
    const std::string auto_pad = node.attrs.get_string_or("auto_pad", "NOTSET");
    if (x_shape.size() < 3 || w_shape.size() != x_shape.size() ||
        (auto_pad != "NOTSET" && auto_pad != "VALID" && !shape_is_static(spatial))) {
      rewritten.push_back(std::move(node));
      continue;
    }
    const ops::nn::NodeLabel label{node.name, node.op_type};
    const ops::nn::WindowGeometry window =
        ops::nn::resolve_window(label, node.attrs, spatial, Shape(w_shape.begin() + 2, w_shape.end()), false);
    const size_t rank = spatial.size();
    bool symmetric = true;
    for (size_t d = 0; d < rank; ++d) symmetric &= window.pad_begin[d] == window.pad_end[d];
    if (symmetric) {
      rewritten.push_back(std::move(node));
      continue;
    }
    // Pad the difference explicitly; the Conv keeps the common part.
    std::vector<int64_t> extra(2 * (rank + 2), 0);
    std::vector<int64_t> kept(2 * rank, 0);
    for (size_t d = 0; d < rank; ++d) {
      const int64_t common = std::min(window.pad_begin[d], window.pad_end[d]);
      extra[2 + d] = window.pad_begin[d] - common;
      extra[rank + 2 + 2 + d] = window.pad_end[d] - common;
      kept[d] = kept[rank + d] = common;
    }
    auto pads = std::make_shared<HostTensor>(DType::kInt64, Shape{static_cast<int64_t>(extra.size())});
    std::copy(extra.begin(), extra.end(), pads->data<int64_t>());
    const ir::ValueId pads_value = graph.add_constant(unique_value_name(graph, node.name + "/pads"), pads);
    ir::Value padded;
    padded.name = unique_value_name(graph, node.name + "/padded_input");
    padded.dtype = x_dtype;
    padded.shape = x_shape;
    for (size_t d = 0; d < rank; ++d) {
      if (padded.shape[2 + d] != kDynamicDim) padded.shape[2 + d] += extra[2 + d] + extra[rank + 4 + d];
    }
    const ir::ValueId padded_id = graph.add_value(std::move(padded));
    ir::Node pad;
    pad.name = graph.value(padded_id).name;
    pad.op_type = "Pad";
    pad.inputs = {node.inputs[0], pads_value};
    pad.outputs = {padded_id};
    pad.attrs.set("mode", Attribute::of_string("constant"));
    rewritten.push_back(std::move(pad));
    node.inputs[0] = padded_id;
    node.attrs.erase("auto_pad");
    node.attrs.set("pads", Attribute::of_ints(kept));
    rewritten.push_back(std::move(node));
    ++inserted;
  }
  graph.nodes = std::move(rewritten);
  graph.compact();
  return inserted;
}

}  // namespace kiln::passes
