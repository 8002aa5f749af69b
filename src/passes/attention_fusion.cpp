#include "passes/attention_fusion.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "ops/attention.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

using ir::kNoValue;
using ir::ValueId;

const ir::Node* producer_of(const ir::Graph& graph, ValueId id) {
  if (id < 0) return nullptr;
  const int32_t index = graph.value(id).producer;
  if (index < 0) return nullptr;
  const ir::Node& node = graph.nodes[static_cast<size_t>(index)];
  return node.removed ? nullptr : &node;
}

int32_t producer_index(const ir::Graph& graph, ValueId id) {
  return id < 0 ? -1 : graph.value(id).producer;
}

// Whether `id` is read by exactly one live node (once) and is not a graph output.
bool single_use(const ir::Graph& graph, ValueId id) {
  return !is_graph_output(graph, id) && graph.use_count(id) == 1;
}

bool is_float(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

bool static_rank4(const ir::Value& value) {
  return value.shape.size() == 4 && std::none_of(value.shape.begin(), value.shape.end(),
                                                 [](int64_t d) { return d == kDynamicDim; });
}

// The value of a one-element floating constant.
std::optional<double> scalar_constant(const ir::Graph& graph, ValueId id) {
  if (!graph.is_constant(id)) return std::nullopt;
  const HostTensor& tensor = *graph.value(id).constant;
  if (!is_float(tensor.dtype) || shape_numel(tensor.shape) != 1) return std::nullopt;
  return read_as_double(view_of(tensor), 0);
}

bool has_perm(const ir::Node& node, std::vector<int64_t> perm) {
  return node.op_type == "Transpose" && node.attrs.has("perm") &&
         node.attrs.get_ints("perm") == perm;
}

// Strips multiplications/divisions by scalar constants off `id` (each read only by the next step),
// folding them into `scale`. `nodes` collects the stripped nodes.
ValueId strip_scalar_scales(const ir::Graph& graph, ValueId id, double& scale,
                            std::vector<int32_t>& nodes) {
  for (;;) {
    const ir::Node* node = producer_of(graph, id);
    if (node == nullptr || (node->op_type != "Mul" && node->op_type != "Div") ||
        node->inputs.size() != 2)
      return id;
    const ValueId a = node->inputs[0], b = node->inputs[1];
    std::optional<double> factor;
    ValueId rest = kNoValue;
    if (auto value = scalar_constant(graph, b)) {
      factor = node->op_type == "Mul" ? *value : 1.0 / *value;
      rest = a;
    } else if (node->op_type == "Mul") {
      if (auto left = scalar_constant(graph, a)) {
        factor = *left;
        rest = b;
      }
    }
    if (!factor || graph.value(rest).shape != graph.value(id).shape) return id;
    scale *= *factor;
    nodes.push_back(producer_index(graph, id));
    id = rest;
    if (!single_use(graph, id)) return id;
  }
}

// A Transpose(perm [0,2,1,3]) in front of `id`: the BSHD source it reads, else kNoValue.
ValueId bshd_source(const ir::Graph& graph, ValueId id) {
  const ir::Node* node = producer_of(graph, id);
  if (node == nullptr || !has_perm(*node, {0, 2, 1, 3}) ||
      !static_rank4(graph.value(node->inputs[0])))
    return kNoValue;
  return node->inputs[0];
}

// Kᵀ [B, H, D, S] spelled as a transpose of K [B, H, S, D]: returns K, else kNoValue.
ValueId untransposed_key(const ir::Graph& graph, ValueId key_t) {
  const ir::Node* node = producer_of(graph, key_t);
  if (node == nullptr) return kNoValue;
  if (has_perm(*node, {0, 1, 3, 2})) return node->inputs[0];
  // Reshape([B*H, D, S] → [B, H, D, S]) of Transpose(0,2,1) of Reshape([B, H, S, D] → [B*H, S, D]).
  if (node->op_type != "Reshape") return kNoValue;
  const ir::Node* middle = producer_of(graph, node->inputs[0]);
  if (middle == nullptr || !has_perm(*middle, {0, 2, 1})) return kNoValue;
  const ir::Node* first = producer_of(graph, middle->inputs[0]);
  if (first == nullptr || first->op_type != "Reshape") return kNoValue;
  const ValueId key = first->inputs[0];
  const Shape& k = graph.value(key).shape;
  const Shape& flat = graph.value(first->outputs[0]).shape;
  const Shape& result = graph.value(key_t).shape;
  if (!static_rank4(graph.value(key)) || flat.size() != 3) return kNoValue;
  if (flat != Shape{k[0] * k[1], k[2], k[3]}) return kNoValue;
  if (result != Shape{k[0], k[1], k[3], k[2]}) return kNoValue;
  return key;
}

// Kᵀ [B, H, D, S] spelled Reshape(Transpose(0,2,1)(K3)) with K3 a rank-3 [B*H, S, D] tensor that
// is not itself a reshape of a rank-4 K (nn.MultiheadAttention's exported form): K3 read as
// [B, H, S, D] is K, a view. The Transpose's slot then holds that Reshape.
struct FlatKey {
  ValueId flat = kNoValue;  // K3
  int32_t transpose_slot = -1;
  int32_t reshape_slot = -1;  // the Reshape to [B, H, D, S], replaced by the fused node's chain
  Shape shape;                // [B, H, S, D]
};

std::optional<FlatKey> flat_key(const ir::Graph& graph, ValueId key_t) {
  const ir::Node* node = producer_of(graph, key_t);
  if (node == nullptr || node->op_type != "Reshape") return std::nullopt;
  const ir::Node* middle = producer_of(graph, node->inputs[0]);
  if (middle == nullptr || !has_perm(*middle, {0, 2, 1}) || !single_use(graph, node->inputs[0]))
    return std::nullopt;
  const ValueId flat = middle->inputs[0];
  const Shape& k3 = graph.value(flat).shape;
  const Shape& result = graph.value(key_t).shape;
  if (k3.size() != 3 || result.size() != 4) return std::nullopt;
  if (std::any_of(k3.begin(), k3.end(), [](int64_t d) { return d == kDynamicDim; }))
    return std::nullopt;
  if (result[0] * result[1] != k3[0] || result[2] != k3[2] || result[3] != k3[1])
    return std::nullopt;
  return FlatKey{flat, producer_index(graph, node->inputs[0]), producer_index(graph, key_t),
                 Shape{result[0], result[1], result[3], result[2]}};
}

struct Match {
  ValueId q = kNoValue, k = kNoValue, v = kNoValue, mask = kNoValue;
  std::optional<FlatKey> flat_key;  // when set, K is made by rewrite_flat_key (m.k is unset)
  bool q_bshd = false, k_bshd = false, v_bshd = false, out_bshd = false, k_transposed = false,
       nan_to_zero = false;
  double scale = 1.0;
  ValueId output = kNoValue;
  int32_t last_node = -1;      // where the fused node goes
  std::vector<int32_t> chain;  // nodes replaced by the fused node
};

std::optional<Match> match_at_softmax(const ir::Graph& graph, int32_t softmax_index) {
  const ir::Node& softmax = graph.nodes[static_cast<size_t>(softmax_index)];
  const ValueId scores = softmax.inputs[0];
  const ir::Value& scores_value = graph.value(scores);
  if (!static_rank4(scores_value) || !is_float(scores_value.dtype)) return std::nullopt;
  const int64_t axis = softmax.attrs.get_int_or("axis", -1);
  if (axis != -1 && axis != 3) return std::nullopt;
  const DType dtype = scores_value.dtype;

  Match m;
  m.chain.push_back(softmax_index);
  if (!single_use(graph, scores)) return std::nullopt;
  // Softmax input: [Add(mask)] of scaled MatMul.
  ValueId product = scores;
  if (const ir::Node* add = producer_of(graph, scores); add != nullptr && add->op_type == "Add") {
    // Which side is the product: the one that leads (through scalar scales) to a MatMul.
    for (int side = 0; side < 2 && m.mask == kNoValue; ++side) {
      const ValueId candidate = add->inputs[static_cast<size_t>(side)];
      const ValueId other = add->inputs[static_cast<size_t>(1 - side)];
      if (!single_use(graph, candidate) || graph.value(candidate).shape != scores_value.shape)
        continue;
      double probe_scale = 1.0;
      std::vector<int32_t> probe_nodes;
      const ValueId root = strip_scalar_scales(graph, candidate, probe_scale, probe_nodes);
      const ir::Node* root_node = producer_of(graph, root);
      if (root_node == nullptr || root_node->op_type != "MatMul") continue;
      if (graph.value(other).dtype != dtype || graph.value(other).shape.size() > 4) continue;
      m.mask = other;
      product = candidate;
    }
    if (m.mask == kNoValue) return std::nullopt;
    m.chain.push_back(producer_index(graph, scores));
  }
  const ValueId raw = strip_scalar_scales(graph, product, m.scale, m.chain);
  const ir::Node* qk = producer_of(graph, raw);
  if (qk == nullptr || qk->op_type != "MatMul" || (raw != product && !single_use(graph, raw)))
    return std::nullopt;
  if (raw == product && !single_use(graph, raw)) return std::nullopt;
  m.chain.push_back(producer_index(graph, raw));

  // Q side: scalar scales, then an optional BSHD transpose.
  ValueId q = qk->inputs[0];
  if (single_use(graph, q)) q = strip_scalar_scales(graph, q, m.scale, m.chain);
  // K side: scalar scales on Kᵀ, then Kᵀ itself.
  ValueId key_t = qk->inputs[1];
  if (single_use(graph, key_t)) key_t = strip_scalar_scales(graph, key_t, m.scale, m.chain);
  if (!static_rank4(graph.value(q)) || !static_rank4(graph.value(key_t))) return std::nullopt;
  ValueId k = untransposed_key(graph, key_t);
  if (k == kNoValue && single_use(graph, key_t)) {
    m.flat_key = flat_key(graph, key_t);
    if (m.flat_key) m.chain.push_back(m.flat_key->reshape_slot);
  }
  if (k == kNoValue && !m.flat_key) {
    k = key_t;
    m.k_transposed = true;
  }
  m.q = q;
  m.k = k;
  if (ValueId source = bshd_source(graph, q); source != kNoValue) {
    m.q = source;
    m.q_bshd = true;
  }
  if (!m.k_transposed && !m.flat_key) {
    if (ValueId source = bshd_source(graph, k); source != kNoValue) {
      m.k = source;
      m.k_bshd = true;
    }
  }

  // After the softmax: an optional NaN guard, then MatMul(P, V).
  ValueId probabilities = softmax.outputs[0];
  if (is_graph_output(graph, probabilities)) return std::nullopt;
  std::vector<int32_t> readers = consumers_of(graph, probabilities);
  if (readers.size() == 2) {
    const ir::Node* is_nan = nullptr;
    const ir::Node* where = nullptr;
    int32_t is_nan_index = -1, where_index = -1;
    for (int32_t r : readers) {
      const ir::Node& node = graph.nodes[static_cast<size_t>(r)];
      if (node.op_type == "IsNaN") {
        is_nan = &node;
        is_nan_index = r;
      } else if (node.op_type == "Where") {
        where = &node;
        where_index = r;
      }
    }
    if (is_nan == nullptr || where == nullptr || where->inputs.size() != 3) return std::nullopt;
    const std::optional<double> zero = scalar_constant(graph, where->inputs[1]);
    if (where->inputs[0] != is_nan->outputs[0] || !single_use(graph, is_nan->outputs[0]) || !zero ||
        *zero != 0.0 || where->inputs[2] != probabilities ||
        graph.value(where->outputs[0]).shape != scores_value.shape) {
      return std::nullopt;
    }
    m.nan_to_zero = true;
    m.chain.push_back(is_nan_index);
    m.chain.push_back(where_index);
    probabilities = where->outputs[0];
    if (is_graph_output(graph, probabilities)) return std::nullopt;
    readers = consumers_of(graph, probabilities);
  }
  if (readers.size() != 1 || graph.use_count(probabilities) != 1) return std::nullopt;
  const ir::Node& pv = graph.nodes[static_cast<size_t>(readers[0])];
  if (pv.op_type != "MatMul" || pv.inputs[0] != probabilities) return std::nullopt;
  m.chain.push_back(readers[0]);
  m.last_node = readers[0];
  m.v = pv.inputs[1];
  if (!static_rank4(graph.value(m.v))) return std::nullopt;
  if (ValueId source = bshd_source(graph, m.v); source != kNoValue) {
    m.v = source;
    m.v_bshd = true;
  }
  m.output = pv.outputs[0];
  if (single_use(graph, m.output)) {
    const std::vector<int32_t> out_readers = consumers_of(graph, m.output);
    const ir::Node& next = graph.nodes[static_cast<size_t>(out_readers[0])];
    if (has_perm(next, {0, 2, 1, 3})) {
      m.chain.push_back(out_readers[0]);
      m.last_node = out_readers[0];
      m.output = next.outputs[0];
      m.out_bshd = true;
    }
  }
  for (ValueId id : {m.q, m.k, m.v, m.mask, m.flat_key ? m.flat_key->flat : kNoValue}) {
    if (id != kNoValue && graph.value(id).dtype != dtype) return std::nullopt;
  }
  return m;
}

// Puts Reshape(K3 → [B, H, S, D]) in the Transpose's slot (before every reader) and returns K.
ValueId rewrite_flat_key(ir::Graph& graph, const FlatKey& key) {
  ir::Node& slot = graph.nodes[static_cast<size_t>(key.transpose_slot)];
  graph.value(slot.outputs[0]).producer = -1;  // the Kᵀ chain goes away with the fused node
  auto target = std::make_shared<HostTensor>(DType::kInt64, Shape{4});
  std::memcpy(target->bytes.data(), key.shape.data(), 4 * sizeof(int64_t));
  ir::Node reshape;
  reshape.name = slot.name;  // the slot's own name is free again
  reshape.op_type = "Reshape";
  ir::Value k;
  k.name = unique_value_name(graph, reshape.name);
  k.dtype = graph.value(key.flat).dtype;
  k.shape = key.shape;
  reshape.inputs = {key.flat,
                    graph.add_constant(unique_value_name(graph, reshape.name + "_shape"), target)};
  reshape.outputs = {graph.add_value(std::move(k))};
  const ValueId result = reshape.outputs[0];
  graph.nodes[static_cast<size_t>(key.transpose_slot)] = std::move(reshape);
  graph.value(result).producer = key.transpose_slot;
  return result;
}

}  // namespace

int fuse_attention(ir::Graph& graph, bool tensor_core_shapes_only) {
  int fused = 0;
  for (size_t index = 0; index < graph.nodes.size(); ++index) {
    if (graph.nodes[index].removed || graph.nodes[index].op_type != "Softmax") continue;
    const std::optional<Match> m = match_at_softmax(graph, static_cast<int32_t>(index));
    if (!m) continue;
    ir::Node node;
    const ir::Node& last = graph.nodes[static_cast<size_t>(m->last_node)];
    node.name = last.name;
    node.op_type = "FusedAttention";
    node.inputs = {m->q, m->k, m->v};  // K filled in below for a flat key
    if (m->mask != kNoValue) node.inputs.push_back(m->mask);
    node.outputs = {m->output};
    node.attrs.set("scale", Attribute::of_float(static_cast<float>(m->scale)));
    node.attrs.set("q_layout", Attribute::of_string(m->q_bshd ? "BSHD" : "BHSD"));
    node.attrs.set("k_layout", Attribute::of_string(m->k_bshd ? "BSHD" : "BHSD"));
    node.attrs.set("v_layout", Attribute::of_string(m->v_bshd ? "BSHD" : "BHSD"));
    node.attrs.set("out_layout", Attribute::of_string(m->out_bshd ? "BSHD" : "BHSD"));
    node.attrs.set("k_transposed", Attribute::of_int(m->k_transposed ? 1 : 0));
    node.attrs.set("nan_to_zero", Attribute::of_int(m->nan_to_zero ? 1 : 0));
    if (tensor_core_shapes_only) {
      const Shape* mask = m->mask == kNoValue ? nullptr : &graph.value(m->mask).shape;
      const ops::AttentionGeometry geometry =
          ops::resolve_attention(describe_node(node), node.attrs, graph.value(m->q).shape,
                                 m->flat_key ? m->flat_key->shape : graph.value(m->k).shape,
                                 graph.value(m->v).shape, mask);
      if (!ops::attention_fits_tensor_cores(graph.value(m->q).dtype, geometry)) continue;
    }
    if (m->flat_key) node.inputs[1] = rewrite_flat_key(graph, *m->flat_key);
    for (int32_t removed : m->chain) graph.nodes[static_cast<size_t>(removed)].removed = true;
    graph.nodes[static_cast<size_t>(m->last_node)] = std::move(node);
    ++fused;
  }
  if (fused > 0) graph.compact();
  return fused;
}

}  // namespace kiln::passes
