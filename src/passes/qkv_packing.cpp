#include "passes/qkv_packing.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "ops/attention.hpp"
#include "passes/pass.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using ir::kNoValue;
using ir::ValueId;

constexpr int kQ = 0, kK = 1, kV = 2;

// Q, K or V as Reshape(MatMul(X, W[, b]), [B, S, H, D]).
struct Projection {
  int32_t matmul = -1, reshape = -1;
  ValueId input = kNoValue, weight = kNoValue, bias = kNoValue;
  ValueId product = kNoValue;  // the MatMul's output [B, S, H*D]
  ValueId heads = kNoValue;    // the Reshape's output [B, S, H, D], read by the attention node
};

const ir::Node* live_producer(const ir::Graph& graph, ValueId id, int32_t& index) {
  index = id < 0 ? -1 : graph.value(id).producer;
  if (index < 0) return nullptr;
  const ir::Node& node = graph.nodes[static_cast<size_t>(index)];
  return node.removed ? nullptr : &node;
}

// Read by exactly one live node, once, and not a graph output.
bool read_once(const ir::Graph& graph, ValueId id) {
  return !is_graph_output(graph, id) && graph.use_count(id) == 1;
}

// Entry i of a constant int32/int64 shape tensor. (Read in place: copying the tensor's shape into
// a TensorView here trips GCC 13's -Warray-bounds at -O3.)
int64_t shape_entry(const HostTensor& shape, size_t i) {
  return shape.dtype == DType::kInt64 ? shape.data<int64_t>()[i] : shape.data<int32_t>()[i];
}

// Whether the Reshape from `product` [B, S, N] to `heads` [B, S, H, D] keeps dims 0 and 1: both
// static and equal, or copied by a 0 in its constant shape (allowzero off).
bool keeps_leading_dims(const ir::Graph& graph, const ir::Node& reshape, const Shape& product,
                        const Shape& heads) {
  const bool allowzero = reshape.attrs.get_int_or("allowzero", 0) != 0;
  const ValueId target = reshape.inputs[1];
  for (size_t i = 0; i < 2; ++i) {
    if (heads[i] != kDynamicDim && heads[i] == product[i]) continue;
    if (allowzero || !graph.is_constant(target)) return false;
    const HostTensor& shape = *graph.value(target).constant;
    if ((shape.dtype != DType::kInt64 && shape.dtype != DType::kInt32) || shape.shape.size() != 1 ||
        shape.shape[0] != 4 || shape_entry(shape, i) != 0) {
      return false;
    }
  }
  return true;
}

std::optional<Projection> projection_of(const ir::Graph& graph, ValueId heads) {
  Projection p;
  p.heads = heads;
  if (heads == kNoValue || !read_once(graph, heads)) return std::nullopt;
  const ir::Node* reshape = live_producer(graph, heads, p.reshape);
  if (reshape == nullptr || reshape->op_type != "Reshape" || reshape->inputs.size() != 2)
    return std::nullopt;
  p.product = reshape->inputs[0];
  if (!read_once(graph, p.product)) return std::nullopt;
  const ir::Node* matmul = live_producer(graph, p.product, p.matmul);
  if (matmul == nullptr || matmul->op_type != "MatMul" || matmul->inputs.size() < 2 ||
      matmul->inputs.size() > 3) {
    return std::nullopt;
  }
  p.input = matmul->inputs[0];
  p.weight = matmul->inputs[1];
  if (matmul->inputs.size() == 3) p.bias = matmul->inputs[2];

  // W constant [E, N]; b constant [N]; product [B, S, N]; heads [B, S, H, D] with H * D = N.
  if (p.input == kNoValue || !graph.is_constant(p.weight)) return std::nullopt;
  const Shape& w = graph.value(p.weight).shape;
  const Shape& product = graph.value(p.product).shape;
  const Shape& h = graph.value(heads).shape;
  if (w.size() != 2 || product.size() != 3 || h.size() != 4) return std::nullopt;
  const int64_t n = w[1];
  if (product[2] != n || h[2] == kDynamicDim || h[3] == kDynamicDim || h[2] * h[3] != n)
    return std::nullopt;
  if (p.bias != kNoValue && (!graph.is_constant(p.bias) || graph.value(p.bias).shape != Shape{n})) {
    return std::nullopt;
  }
  if (!keeps_leading_dims(graph, *reshape, product, h)) return std::nullopt;
  return p;
}

// Whether the three projections can become one: same input, same weight/bias shapes and dtypes,
// biases on all or none, equal MatMul attributes (an activation applies per column) and equal
// head shapes.
bool packable(const ir::Graph& graph, const std::array<Projection, 3>& p) {
  if (p[kQ].matmul == p[kK].matmul || p[kQ].matmul == p[kV].matmul || p[kK].matmul == p[kV].matmul)
    return false;
  const ir::Value& w = graph.value(p[kQ].weight);
  const ir::Node& q_matmul = graph.nodes[static_cast<size_t>(p[kQ].matmul)];
  for (const Projection& other : {p[kK], p[kV]}) {
    const ir::Value& ow = graph.value(other.weight);
    if (other.input != p[kQ].input || ow.shape != w.shape || ow.dtype != w.dtype) return false;
    if ((other.bias == kNoValue) != (p[kQ].bias == kNoValue)) return false;
    if (other.bias != kNoValue && graph.value(other.bias).dtype != graph.value(p[kQ].bias).dtype)
      return false;
    if (graph.nodes[static_cast<size_t>(other.matmul)].attrs != q_matmul.attrs) return false;
    if (graph.value(other.heads).shape != graph.value(p[kQ].heads).shape) return false;
    if (graph.value(other.product).dtype != graph.value(p[kQ].product).dtype) return false;
  }
  return true;
}

// The three [..., N] constants side by side along the last dim: [..., 3N], in their dtype.
std::shared_ptr<HostTensor> concat_last_dim(const std::array<const HostTensor*, 3>& parts) {
  const HostTensor& first = *parts[0];
  Shape shape = first.shape;
  const int64_t n = shape.back();
  shape.back() = 3 * n;
  auto out = std::make_shared<HostTensor>(first.dtype, shape);
  const size_t row_bytes = static_cast<size_t>(n) * dtype_size(first.dtype);
  const int64_t rows = n == 0 ? 0 : first.numel() / n;
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t part = 0; part < 3; ++part) {
      std::memcpy(out->bytes.data() + (static_cast<size_t>(r) * 3 + part) * row_bytes,
                  parts[part]->bytes.data() + static_cast<size_t>(r) * row_bytes, row_bytes);
    }
  }
  return out;
}

std::string unique_node_name(const ir::Graph& graph, const std::string& base) {
  const auto taken = [&](const std::string& name) {
    for (const ir::Node& node : graph.nodes) {
      if (!node.removed && node.name == name) return true;
    }
    return false;
  };
  if (!taken(base)) return base;
  for (int suffix = 1;; ++suffix) {
    std::string name = base + "_" + std::to_string(suffix);
    if (!taken(name)) return name;
  }
}

// The packed node's attributes: the separate form's minus the per-tensor layouts.
AttributeMap packed_attributes(const AttributeMap& separate) {
  AttributeMap attrs = separate;
  for (const char* name : {"q_layout", "k_layout", "v_layout", "k_transposed"}) attrs.erase(name);
  attrs.set("qkv_packed", Attribute::of_int(1));
  return attrs;
}

bool attention_candidate(const ir::Node& node) {
  if (node.removed || node.op_type != "FusedAttention" || node.inputs.size() < 3) return false;
  const AttributeMap& attrs = node.attrs;
  if (attrs.get_int_or("qkv_packed", 0) != 0 || attrs.get_int_or("k_transposed", 0) != 0)
    return false;
  for (const char* name : {"q_layout", "k_layout", "v_layout"}) {
    if (attrs.get_string_or(name, "BHSD") != "BSHD") return false;
  }
  return node.inputs[0] != node.inputs[1] && node.inputs[0] != node.inputs[2] &&
         node.inputs[1] != node.inputs[2];
}

// Rewrites attention node `index` with projections `p` (checked by packable()).
void pack(ir::Graph& graph, size_t index, const std::array<Projection, 3>& p) {
  const ir::Node& q_matmul = graph.nodes[static_cast<size_t>(p[kQ].matmul)];
  const int64_t head_count = graph.value(p[kQ].heads).shape[2],
                head_dim = graph.value(p[kQ].heads).shape[3];

  ir::Node matmul;
  matmul.name = unique_node_name(graph, q_matmul.name + "_qkv");
  matmul.op_type = "MatMul";
  matmul.attrs = q_matmul.attrs;
  const auto constant_of = [&](int which, bool bias) {
    return graph
        .value(bias ? p[static_cast<size_t>(which)].bias : p[static_cast<size_t>(which)].weight)
        .constant.get();
  };
  const ValueId weight = graph.add_constant(
      unique_value_name(graph, graph.value(p[kQ].weight).name + "_qkv"),
      concat_last_dim({constant_of(kQ, false), constant_of(kK, false), constant_of(kV, false)}));
  matmul.inputs = {p[kQ].input, weight};
  if (p[kQ].bias != kNoValue) {
    matmul.inputs.push_back(graph.add_constant(
        unique_value_name(graph, graph.value(p[kQ].bias).name + "_qkv"),
        concat_last_dim({constant_of(kQ, true), constant_of(kK, true), constant_of(kV, true)})));
  }
  ir::Value product;
  product.name = unique_value_name(graph, matmul.name);
  matmul.outputs = {graph.add_value(std::move(product))};

  ir::Node reshape;
  reshape.name = unique_node_name(graph, matmul.name + "_heads");
  reshape.op_type = "Reshape";
  auto target = std::make_shared<HostTensor>(DType::kInt64, Shape{5});
  const int64_t dims[5] = {0, 0, 3, head_count, head_dim};  // 0: B and S copied, dynamic or not
  std::memcpy(target->bytes.data(), dims, sizeof(dims));
  reshape.inputs = {matmul.outputs[0],
                    graph.add_constant(unique_value_name(graph, reshape.name + "_shape"), target)};
  ir::Value packed;
  packed.name = unique_value_name(graph, reshape.name);
  reshape.outputs = {graph.add_value(std::move(packed))};

  // Slots: the merged MatMul takes the earliest projection's (X and the constants are ready by
  // then), the Reshape Q's reshape slot (after Q's MatMul, so after the earliest one), the
  // attention node keeps its own.
  const int32_t matmul_slot = std::min({p[kQ].matmul, p[kK].matmul, p[kV].matmul});
  const int32_t reshape_slot = p[kQ].reshape;
  for (const Projection& projection : p) {
    for (int32_t slot : {projection.matmul, projection.reshape})
      graph.nodes[static_cast<size_t>(slot)].removed = true;
    graph.value(projection.product).producer = -1;
    graph.value(projection.heads).producer = -1;
  }
  const ValueId packed_id = reshape.outputs[0];
  graph.nodes[static_cast<size_t>(matmul_slot)] = std::move(matmul);
  graph.nodes[static_cast<size_t>(reshape_slot)] = std::move(reshape);
  for (int32_t slot : {matmul_slot, reshape_slot}) {
    for (ValueId out : graph.nodes[static_cast<size_t>(slot)].outputs)
      graph.value(out).producer = slot;
    infer_node_outputs(graph, static_cast<size_t>(slot));
  }

  ir::Node& attention = graph.nodes[index];
  const Shape out_shape = graph.value(attention.outputs[0]).shape;
  const ValueId mask = attention.inputs.size() > 3 ? attention.inputs[3] : kNoValue;
  attention.inputs = {packed_id};
  if (mask != kNoValue) attention.inputs = {packed_id, kNoValue, kNoValue, mask};
  attention.attrs = packed_attributes(attention.attrs);
  infer_node_outputs(graph, index);
  if (graph.value(attention.outputs[0]).shape != out_shape) {
    fail(ErrorCode::kInternal, describe_node(attention),
         ": packing Q, K and V changed its output shape from ", shape_to_string(out_shape), " to ",
         shape_to_string(graph.value(attention.outputs[0]).shape));
  }
}

// Whether packing keeps a node the tensor-core kernel runs on it (the packed strides and offsets
// are multiples of 8 whenever the head dim is a multiple of 16, so this only guards the rule).
bool keeps_tensor_cores(const ir::Graph& graph, const ir::Node& node,
                        const std::array<Projection, 3>& p) {
  const DType dtype = graph.value(node.inputs[0]).dtype;
  const Shape* mask = node.inputs.size() > 3 && node.inputs[3] != kNoValue
                          ? &graph.value(node.inputs[3]).shape
                          : nullptr;
  const std::string label = describe_node(node);
  const ops::AttentionGeometry separate = ops::resolve_attention(
      label, node.attrs, graph.value(node.inputs[0]).shape, graph.value(node.inputs[1]).shape,
      graph.value(node.inputs[2]).shape, mask);
  if (!ops::attention_fits_tensor_cores(dtype, separate)) return true;
  const Shape& h = graph.value(p[kQ].heads).shape;
  const Shape qkv{h[0], h[1], 3, h[2], h[3]};
  const ops::AttentionGeometry packed =
      ops::resolve_attention(label, packed_attributes(node.attrs), qkv, nullptr, nullptr, mask);
  return ops::attention_fits_tensor_cores(dtype, packed);
}

}  // namespace

int pack_qkv_projections(ir::Graph& graph) {
  int packed = 0;
  for (size_t index = 0; index < graph.nodes.size(); ++index) {
    if (!attention_candidate(graph.nodes[index])) continue;
    std::array<Projection, 3> p;
    bool found = true;
    for (int which : {kQ, kK, kV}) {
      std::optional<Projection> projection =
          projection_of(graph, graph.nodes[index].inputs[static_cast<size_t>(which)]);
      if (!projection) {
        found = false;
        break;
      }
      p[static_cast<size_t>(which)] = *projection;
    }
    if (!found || !packable(graph, p) || !keeps_tensor_cores(graph, graph.nodes[index], p))
      continue;
    pack(graph, index, p);
    ++packed;
  }
  if (packed > 0) graph.compact();
  return packed;
}

}  // namespace kiln::passes
