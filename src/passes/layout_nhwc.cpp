#include "passes/layout_nhwc.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ops/nn_layout.hpp"
#include "passes/pass.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

constexpr std::array<int64_t, 4> kToNhwc{0, 2, 3, 1};
constexpr std::array<int64_t, 4> kToNchw{0, 3, 1, 2};

// Elementwise ops of one data input whose result does not depend on the layout. Clip's min and
// max are scalars.
const std::unordered_set<std::string_view>& unary_ops() {
  static const std::unordered_set<std::string_view> ops{
      "Relu",       "Sigmoid", "Tanh",     "Erf",       "HardSigmoid",
      "HardSwish",  "Sqrt",    "Exp",      "Log",       "Floor",
      "Ceil",       "Round",   "Neg",      "Abs",       "Sign",
      "Reciprocal", "Gelu",    "Softplus", "Softsign",  "Elu",
      "Selu",       "Celu",    "Mish",     "LeakyRelu", "ThresholdedRelu",
      "Sin",        "Cos",     "Tan",      "Identity",  "Clip"};
  return ops;
}

// Broadcasting elementwise ops: layout-agnostic when every operand is permuted the same way.
const std::unordered_set<std::string_view>& broadcast_ops() {
  static const std::unordered_set<std::string_view> ops{"Add",   "Sub", "Mul", "Div", "Pow",
                                                        "PRelu", "Max", "Min", "Sum", "Mean"};
  return ops;
}

bool is_pool(std::string_view op) {
  return op == "MaxPool" || op == "AveragePool" || op == "GlobalAveragePool" ||
         op == "GlobalMaxPool";
}

bool is_half_float(DType dtype) {
  return dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

// How one node would run inside an NHWC region.
struct NodePlan {
  bool convertible = false;
  bool is_conv = false;
  bool is_depthwise = false;  // a grouped Conv with one input channel per group
  bool is_pad = false;        // Pad with constant pads (conv_padding.cpp's asymmetric-padding Pads)
  // ReduceMean/ReduceMax over H and W with keepdims (how torch exports adaptive_avg_pool2d(1)):
  // becomes GlobalAveragePool/GlobalMaxPool, which have NHWC kernels.
  const char* global_pool = nullptr;
  std::vector<size_t> activations;  // inputs that are NHWC inside the region
  std::vector<size_t> constants;    // constant inputs broadcasting against them: re-laid out
};

class Planner {
 public:
  Planner(const ir::Graph& graph, bool include_float32) : graph_(graph), include_float32_(include_float32) {}

  // `plans` holds the plans of the nodes before this one (producers come first).
  NodePlan plan(const ir::Node& node, const std::vector<NodePlan>& plans) const {
    NodePlan p;
    if (!node.domain.empty() || node.outputs.size() != 1 || node.inputs.empty() ||
        node.inputs[0] < 0 || graph_.value(node.outputs[0]).shape.size() != 4) {
      return p;
    }
    const std::string& op = node.op_type;
    if (op == "Conv") {
      if (node.attrs.has(ops::nn::kLayoutAttribute) || node.inputs.size() < 2) return p;
      const DType dtype = graph_.value(node.inputs[0]).dtype;
      if (!is_activation(node.inputs[0]) ||
          !(is_half_float(dtype) || (include_float32_ && dtype == DType::kFloat32))) {
        return p;
      }
      const ir::ValueId w = node.inputs[1];
      if (w < 0 || !graph_.is_constant(w) || graph_.value(w).shape.size() != 4) return p;
      p.activations = {0};
      if (node.inputs.size() > 3 && node.inputs[3] >= 0) {
        if (!is_activation(node.inputs[3])) return p;
        p.activations.push_back(3);
      }
      p.is_conv = true;
      p.is_depthwise = is_depthwise_conv(graph_, node);
    } else if (is_pool(op)) {
      if (node.attrs.has(ops::nn::kLayoutAttribute) || !is_activation(node.inputs[0])) return p;
      p.activations = {0};
    } else if (op == "Cast") {
      // Only narrowing casts after region ops: a graph input enters after its fp32 -> fp16 cast
      // and an output leaves before its fp16 -> fp32 cast, so the transposes move half the bytes.
      const ir::Value& in = graph_.value(node.inputs[0]);
      if (!is_activation(node.inputs[0]) || in.producer < 0 ||
          !plans.at(static_cast<size_t>(in.producer)).convertible ||
          dtype_size(graph_.value(node.outputs[0]).dtype) > dtype_size(in.dtype)) {
        return p;
      }
      p.activations = {0};
    } else if (unary_ops().count(op)) {
      if (!is_activation(node.inputs[0])) return p;
      p.activations = {0};
    } else if (broadcast_ops().count(op)) {
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        const ir::ValueId id = node.inputs[i];
        if (id < 0) return NodePlan{};
        const ir::Value& v = graph_.value(id);
        if (is_activation(id)) {
          p.activations.push_back(i);
        } else if (shape_is_static(v.shape) && shape_numel(v.shape) == 1) {
          continue;  // a scalar broadcasts the same way in either layout
        } else if (graph_.is_constant(id) && v.shape.size() <= 4) {
          p.constants.push_back(i);
        } else {
          return NodePlan{};  // a computed tensor broadcasting against NCHW
        }
      }
      if (p.activations.empty()) return NodePlan{};
    } else if (op == "ReduceMean" || op == "ReduceMax") {
      if (!is_activation(node.inputs[0]) || !is_float(graph_.value(node.inputs[0]).dtype) ||
          !reduces_spatial_axes(node)) {
        return p;
      }
      p.activations = {0};
      p.global_pool = op == "ReduceMean" ? "GlobalAveragePool" : "GlobalMaxPool";
    } else if (op == "Pad") {
      // Constant pads for all four axes; the optional constant_value is a scalar.
      if (!is_activation(node.inputs[0]) || node.inputs.size() < 2 || node.inputs[1] < 0 ||
          !graph_.is_constant(node.inputs[1]) || (node.inputs.size() > 3 && node.inputs[3] >= 0) ||
          graph_.value(node.inputs[1]).shape != Shape{8}) {
        return p;
      }
      p.activations = {0};
      p.is_pad = true;
    } else if (op == "Concat") {
      const int64_t axis = node.attrs.get_int_or("axis", 0);
      if (axis != 1 && axis != -3) return p;
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        if (!is_activation(node.inputs[i])) return NodePlan{};
        p.activations.push_back(i);
      }
    } else {
      return p;
    }
    p.convertible = true;
    return p;
  }

 private:
  static bool is_float(DType dtype) { return dtype == DType::kFloat32 || is_half_float(dtype); }

  // Reduces exactly axes 2 and 3 of a 4-D tensor and keeps them (as size 1).
  bool reduces_spatial_axes(const ir::Node& node) const {
    if (node.attrs.get_int_or("keepdims", 1) != 1) return false;
    std::vector<int64_t> axes;
    if (node.inputs.size() > 1 && node.inputs[1] >= 0) {
      if (!graph_.is_constant(node.inputs[1])) return false;
      const HostTensor& t = *graph_.value(node.inputs[1]).constant;
      if (t.dtype != DType::kInt64 && t.dtype != DType::kInt32) return false;
      axes = read_indices(view_of(t));
    } else if (node.attrs.has("axes")) {
      axes = node.attrs.get_ints("axes");
    }
    if (axes.size() != 2) return false;
    for (int64_t& axis : axes) axis = axis < 0 ? axis + 4 : axis;
    std::sort(axes.begin(), axes.end());
    return axes[0] == 2 && axes[1] == 3;
  }

  // A computed 4-D tensor (constants are re-laid out instead).
  bool is_activation(ir::ValueId id) const {
    return id >= 0 && !graph_.is_constant(id) && graph_.value(id).shape.size() == 4;
  }

  const ir::Graph& graph_;
  const bool include_float32_;
};

bool is_layout_transpose(const ir::Node& node, const std::array<int64_t, 4>& perm) {
  if (node.removed || node.op_type != "Transpose" || !node.domain.empty() || !node.attrs.has("perm")) return false;
  const std::vector<int64_t> got = node.attrs.get_ints("perm");
  return std::equal(got.begin(), got.end(), perm.begin(), perm.end());
}

int32_t find_root(std::vector<int32_t>& parent, int32_t i) {
  while (parent[static_cast<size_t>(i)] != i) {
    parent[static_cast<size_t>(i)] = parent[static_cast<size_t>(parent[static_cast<size_t>(i)])];
    i = parent[static_cast<size_t>(i)];
  }
  return i;
}

Shape permuted(const Shape& shape, const std::array<int64_t, 4>& perm) {
  return Shape{shape[static_cast<size_t>(perm[0])], shape[static_cast<size_t>(perm[1])],
               shape[static_cast<size_t>(perm[2])], shape[static_cast<size_t>(perm[3])]};
}

// A constant of rank <= 4 as it broadcasts against an NHWC tensor: left-padded with 1s to rank 4
// (numpy broadcasting) and permuted [0, 2, 3, 1]. Conv weights [M, C/g, kH, kW] become KRSC.
std::shared_ptr<const HostTensor> constant_to_nhwc(const HostTensor& source) {
  Shape padded(4 - source.shape.size(), 1);
  padded.insert(padded.end(), source.shape.begin(), source.shape.end());
  auto out = std::make_shared<HostTensor>(source.dtype, permuted(padded, kToNhwc));
  const size_t element = dtype_size(source.dtype);
  const int64_t s1 = padded[2] * padded[3], s0 = padded[1] * s1, s2 = padded[3];
  const Shape& o = out->shape;  // [N, H, W, C]
  uint8_t* dst = out->bytes.data();
  for (int64_t n = 0; n < o[0]; ++n)
    for (int64_t h = 0; h < o[1]; ++h)
      for (int64_t w = 0; w < o[2]; ++w)
        for (int64_t c = 0; c < o[3]; ++c, dst += element) {
          const int64_t src = n * s0 + c * s1 + h * s2 + w;
          std::memcpy(dst, source.bytes.data() + static_cast<size_t>(src) * element, element);
        }
  return out;
}

// Pad's pads [b0, b1, b2, b3, e0, e1, e2, e3] for the NHWC tensor (int64 or int32 entries).
std::shared_ptr<const HostTensor> pads_to_nhwc(const HostTensor& source) {
  auto out = std::make_shared<HostTensor>(source);
  const size_t element = dtype_size(source.dtype);
  for (size_t half = 0; half < 2; ++half) {
    for (size_t a = 0; a < 4; ++a) {
      const size_t from = half * 4 + static_cast<size_t>(kToNhwc[a]);
      std::memcpy(out->bytes.data() + (half * 4 + a) * element,
                  source.bytes.data() + from * element, element);
    }
  }
  return out;
}

ir::Node transpose_node(std::string name, ir::ValueId in, ir::ValueId out,
                        const std::array<int64_t, 4>& perm) {
  ir::Node node;
  node.name = std::move(name);
  node.op_type = "Transpose";
  node.inputs = {in};
  node.outputs = {out};
  node.attrs.set("perm", Attribute::of_ints(std::vector<int64_t>(perm.begin(), perm.end())));
  return node;
}

}  // namespace

int convert_conv_regions_to_nhwc(ir::Graph& graph, bool include_depthwise, bool include_float32) {
  graph.compact();  // producers must be node indices
  const size_t node_count = graph.nodes.size();
  const Planner planner(graph, include_float32);
  std::vector<NodePlan> plans;
  plans.reserve(node_count);
  for (const ir::Node& node : graph.nodes) plans.push_back(planner.plan(node, plans));

  // Regions: convertible nodes connected through the tensors they pass each other.
  std::vector<int32_t> parent(node_count);
  std::iota(parent.begin(), parent.end(), 0);
  for (size_t i = 0; i < node_count; ++i) {
    if (!plans[i].convertible) continue;
    for (size_t position : plans[i].activations) {
      const int32_t producer = graph.value(graph.nodes[i].inputs[position]).producer;
      if (producer < 0 || !plans[static_cast<size_t>(producer)].convertible) continue;
      parent[static_cast<size_t>(find_root(parent, producer))] =
          find_root(parent, static_cast<int32_t>(i));
    }
  }
  std::vector<int> convs_in_region(node_count, 0), depthwise_in_region(node_count, 0);
  for (size_t i = 0; i < node_count; ++i) {
    const auto root = static_cast<size_t>(find_root(parent, static_cast<int32_t>(i)));
    if (plans[i].is_conv) ++convs_in_region[root];
    if (plans[i].is_depthwise) ++depthwise_in_region[root];
  }
  // Regions that cost no transposes: every tensor entering comes from a Transpose to NCHW and every
  // tensor leaving goes only to Transposes back to NHWC (ConvNeXt's depthwise convs between its
  // channels-last blocks, converted where depthwise regions are). Converting them cancels the
  // model's own permutes. A pooled [N, C, 1, 1]
  // tensor has the same bytes in either layout: it crosses for free.
  const auto one_pixel = [&](ir::ValueId id) {
    const Shape& shape = graph.value(id).shape;
    return shape.size() == 4 && shape[2] == 1 && shape[3] == 1;
  };
  std::vector<char> boundary_free(node_count, 1);
  const auto same_region = [&](int32_t producer, size_t root) {
    return producer >= 0 && plans[static_cast<size_t>(producer)].convertible &&
           static_cast<size_t>(find_root(parent, producer)) == root;
  };
  std::vector<int32_t> root_of_output(graph.values.size(), -1);
  for (size_t i = 0; i < node_count; ++i) {
    if (!plans[i].convertible) continue;
    const auto root = static_cast<size_t>(find_root(parent, static_cast<int32_t>(i)));
    root_of_output[static_cast<size_t>(graph.nodes[i].outputs[0])] = static_cast<int32_t>(root);
    for (size_t position : plans[i].activations) {
      const int32_t producer = graph.value(graph.nodes[i].inputs[position]).producer;
      if (!same_region(producer, root) && !one_pixel(graph.nodes[i].inputs[position]) &&
          (producer < 0 || !is_layout_transpose(graph.nodes[static_cast<size_t>(producer)], kToNchw))) {
        boundary_free[root] = 0;
      }
    }
  }
  for (size_t j = 0; j < node_count; ++j) {
    const ir::Node& reader = graph.nodes[j];
    for (size_t k = 0; k < reader.inputs.size(); ++k) {
      if (reader.inputs[k] < 0) continue;
      const int32_t root = root_of_output[static_cast<size_t>(reader.inputs[k])];
      if (root < 0) continue;
      const bool inside = plans[j].convertible && find_root(parent, static_cast<int32_t>(j)) == root &&
                          std::find(plans[j].activations.begin(), plans[j].activations.end(), k) !=
                              plans[j].activations.end();
      if (!inside && !is_layout_transpose(reader, kToNhwc) && !one_pixel(reader.inputs[k])) {
        boundary_free[static_cast<size_t>(root)] = 0;
      }
    }
  }
  for (ir::ValueId out : graph.outputs) {
    if (root_of_output[static_cast<size_t>(out)] >= 0) boundary_free[static_cast<size_t>(root_of_output[static_cast<size_t>(out)])] = 0;
  }
  // Where convolutions dominate: a lone Conv (a ViT's patch embedding) is not worth transposes.
  // Regions with depthwise convolutions stay NCHW: cuDNN has no fast NHWC fp16 depthwise kernel
  // (H100, cuDNN 9.19: MobileNetV3-Large fp16 ran 3.22 ms NHWC vs 2.21 ms NCHW at batch 32, 0.54
  // vs 0.45 ms at batch 1; its 3x3 depthwise layers took the same time in every algorithm).
  std::vector<char> in_region(node_count, 0);
  int converted = 0;
  for (size_t i = 0; i < node_count; ++i) {
    const auto root = static_cast<size_t>(find_root(parent, static_cast<int32_t>(i)));
    const bool worth = convs_in_region[root] >= 2 || (convs_in_region[root] >= 1 && boundary_free[root]);
    in_region[i] = plans[i].convertible && worth && (include_depthwise || depthwise_in_region[root] == 0);
    converted += in_region[i] && plans[i].is_conv;
  }
  if (converted == 0) return 0;

  // Which tensors live NHWC inside (region values), which enter and which must leave.
  const size_t value_count = graph.values.size();
  std::vector<char> region_value(value_count, 0), needs_entry(value_count, 0),
      needs_exit(value_count, 0);
  for (size_t i = 0; i < node_count; ++i) {
    if (in_region[i]) region_value[static_cast<size_t>(graph.nodes[i].outputs[0])] = 1;
  }
  for (size_t i = 0; i < node_count; ++i) {
    const ir::Node& node = graph.nodes[i];
    for (size_t k = 0; k < node.inputs.size(); ++k) {
      const ir::ValueId id = node.inputs[k];
      if (id < 0) continue;
      const bool nhwc_position =
          in_region[i] && std::find(plans[i].activations.begin(), plans[i].activations.end(), k) !=
                              plans[i].activations.end();
      if (region_value[static_cast<size_t>(id)] && !nhwc_position)
        needs_exit[static_cast<size_t>(id)] = 1;
      if (!region_value[static_cast<size_t>(id)] && nhwc_position)
        needs_entry[static_cast<size_t>(id)] = 1;
    }
  }
  for (ir::ValueId out : graph.outputs) {
    if (region_value[static_cast<size_t>(out)]) needs_exit[static_cast<size_t>(out)] = 1;
  }

  // The NHWC twin of every region value and entering tensor.
  std::unordered_map<ir::ValueId, ir::ValueId> nhwc_of;
  for (size_t v = 0; v < value_count; ++v) {
    if (!region_value[v] && !needs_entry[v]) continue;
    ir::Value twin;
    twin.name = unique_value_name(graph, graph.values[v].name + ".nhwc");
    twin.dtype = graph.values[v].dtype;
    twin.shape = permuted(graph.values[v].shape, kToNhwc);
    nhwc_of[static_cast<ir::ValueId>(v)] = graph.add_value(std::move(twin));
  }
  std::unordered_map<ir::ValueId, ir::ValueId> relaid_constants, krsc_weights, nhwc_pads;
  auto relaid = [&](std::unordered_map<ir::ValueId, ir::ValueId>& cache, ir::ValueId id,
                    const char* suffix) {
    auto [it, inserted] = cache.try_emplace(id, ir::kNoValue);
    if (inserted) {
      const std::string name = unique_value_name(graph, graph.value(id).name + suffix);
      const HostTensor& source = *graph.value(id).constant;
      it->second = graph.add_constant(
          name, &cache == &nhwc_pads ? pads_to_nhwc(source) : constant_to_nhwc(source));
    }
    return it->second;
  };

  std::vector<ir::Node> rebuilt;
  rebuilt.reserve(node_count + 16);
  auto emit_transposes = [&](ir::ValueId id) {
    const size_t v = static_cast<size_t>(id);
    if (region_value[v] && needs_exit[v]) {
      rebuilt.push_back(
          transpose_node(graph.values[v].name + ".to_nchw", nhwc_of.at(id), id, kToNchw));
    }
    if (needs_entry[v]) {
      rebuilt.push_back(
          transpose_node(graph.values[v].name + ".to_nhwc", id, nhwc_of.at(id), kToNhwc));
    }
  };
  for (ir::ValueId in : graph.inputs) emit_transposes(in);
  for (size_t i = 0; i < node_count; ++i) {
    ir::Node node = std::move(graph.nodes[i]);
    const std::vector<ir::ValueId> original_outputs = node.outputs;
    if (in_region[i]) {
      for (size_t k : plans[i].activations) node.inputs[k] = nhwc_of.at(node.inputs[k]);
      for (size_t k : plans[i].constants)
        node.inputs[k] = relaid(relaid_constants, node.inputs[k], ".nhwc");
      if (plans[i].is_conv) node.inputs[1] = relaid(krsc_weights, node.inputs[1], ".krsc");
      if (plans[i].is_pad) node.inputs[1] = relaid(nhwc_pads, node.inputs[1], ".nhwc");
      if (plans[i].global_pool) {
        node.op_type = plans[i].global_pool;
        node.inputs.resize(1);
        node.attrs = AttributeMap{};
      }
      if (plans[i].is_conv || is_pool(node.op_type)) {
        node.attrs.set(ops::nn::kLayoutAttribute, Attribute::of_string("NHWC"));
      }
      if (node.op_type == "Concat") node.attrs.set("axis", Attribute::of_int(3));
      node.outputs[0] = nhwc_of.at(node.outputs[0]);
    }
    rebuilt.push_back(std::move(node));
    for (ir::ValueId out : original_outputs) emit_transposes(out);
  }
  graph.nodes = std::move(rebuilt);
  graph.compact();
  infer_shapes(graph);
  graph.verify();
  return converted;
}

bool is_depthwise_conv(const ir::Graph& graph, const ir::Node& node) {
  if (node.removed || node.op_type != "Conv" || node.inputs.size() < 2 || node.inputs[1] < 0) return false;
  // One input channel per group: W is [M, C/group, kH, kW], or [M, kH, kW, C/group] once the conv
  // is NHWC.
  const Shape& weight = graph.value(node.inputs[1]).shape;
  const bool nhwc = node.attrs.get_string_or("kiln_layout", "NCHW") == "NHWC";
  return node.attrs.get_int_or("group", 1) > 1 && weight.size() >= 2 && (nhwc ? weight.back() : weight[1]) == 1;
}

}  // namespace kiln::passes
