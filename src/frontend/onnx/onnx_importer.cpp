// ONNX ModelProto -> ir::Graph. Steps: decode the bytes (onnx_proto), check the opset, inline
// model-local functions (function_inliner), convert attributes and fold Constant nodes, report
// every unsupported node at once, normalise old op forms (opset_normalizer), then build the
// graph in topological order.
#include "frontend/onnx/onnx_importer.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "base/error.hpp"
#include "frontend/onnx/build_time_control_flow.hpp"
#include "frontend/onnx/extra_domains.hpp"
#include "frontend/onnx/flex_attention.hpp"
#include "frontend/onnx/function_inliner.hpp"
#include "frontend/onnx/function_ops.hpp"
#include "frontend/onnx/onnx_proto.hpp"
#include "frontend/onnx/opset_normalizer.hpp"
#include "frontend/onnx/plugin_nodes.hpp"
#include "frontend/onnx/tensor_decoder.hpp"
#include "ops/op_registry.hpp"
#include "passes/constant_folding.hpp"
#include "plugins/plugin_layer.hpp"

namespace kiln::onnx {
namespace {

std::string_view attribute_type_name(int32_t type) {
  switch (type) {
    case proto::Attribute::kUndefined:
      return "UNDEFINED";
    case proto::Attribute::kFloat:
      return "FLOAT";
    case proto::Attribute::kInt:
      return "INT";
    case proto::Attribute::kString:
      return "STRING";
    case proto::Attribute::kTensor:
      return "TENSOR";
    case proto::Attribute::kGraph:
      return "GRAPH";
    case proto::Attribute::kFloats:
      return "FLOATS";
    case proto::Attribute::kInts:
      return "INTS";
    case proto::Attribute::kStrings:
      return "STRINGS";
    case proto::Attribute::kTensors:
      return "TENSORS";
    case proto::Attribute::kGraphs:
      return "GRAPHS";
    case proto::Attribute::kSparseTensor:
      return "SPARSE_TENSOR";
    case proto::Attribute::kSparseTensors:
      return "SPARSE_TENSORS";
    case proto::Attribute::kTypeProto:
      return "TYPE_PROTO";
    case proto::Attribute::kTypeProtos:
      return "TYPE_PROTOS";
    default:
      return "unknown";
  }
}

bool is_supported_attribute_type(int32_t type) {
  switch (type) {
    case proto::Attribute::kFloat:
    case proto::Attribute::kInt:
    case proto::Attribute::kString:
    case proto::Attribute::kTensor:
    case proto::Attribute::kFloats:
    case proto::Attribute::kInts:
    case proto::Attribute::kStrings:
      return true;
    default:
      return false;
  }
}

// "(domain 'ai.onnx', opset 17)" as shown in unsupported-node reports.
std::string describe_domain(const FlatNode& node) {
  const std::string domain = node.domain.empty() ? "ai.onnx" : node.domain;
  if (node.opset == 0) return detail::concat("(domain '", domain, "', opset not imported)");
  return detail::concat("(domain '", domain, "', opset ", node.opset, ")");
}

std::string_view type_kind_name(proto::TypeProto::Kind kind) {
  switch (kind) {
    case proto::TypeProto::Kind::kNone:
      return "no type";
    case proto::TypeProto::Kind::kTensor:
      return "tensor";
    case proto::TypeProto::Kind::kSequence:
      return "sequence";
    case proto::TypeProto::Kind::kMap:
      return "map";
    case proto::TypeProto::Kind::kOptional:
      return "optional";
    case proto::TypeProto::Kind::kSparseTensor:
      return "sparse tensor";
    case proto::TypeProto::Kind::kOpaque:
      return "opaque";
  }
  return "unknown";
}

Shape shape_from_proto(const proto::TensorShape& shape, std::vector<std::string>* dim_names) {
  Shape out;
  for (const proto::TensorShapeDimension& dim : shape.dims) {
    const bool known = dim.kind == proto::TensorShapeDimension::Kind::kValue && dim.value >= 0;
    out.push_back(known ? dim.value : kDynamicDim);
    if (dim_names) {
      dim_names->push_back(dim.kind == proto::TensorShapeDimension::Kind::kParam ? dim.param
                                                                                 : std::string());
    }
  }
  return out;
}

// A node waiting for its inputs: a kiln op, or a node expanded once its inputs are defined (If,
// Loop, Scan, sequence and optional ops by the build-time resolver; FlexAttention, whose expansion
// inlines its modifier bodies), which also waits for the outer values its bodies read.
struct PendingNode {
  NormalizedNode node;
  const FlatNode* structured = nullptr;
};

class Importer final : public ImportGraphHost {
 public:
  Importer(const proto::Model& model, const ImportOptions& options)
      : graph_proto_(model.graph),
        options_(options),
        flattener_(model, options,
                   [this](const std::string& name) {
                     return ids_.count(name) || reserved_names_.count(name) || control_flow_.defines(name);
                   }),
        control_flow_(*this) {}

  // ImportGraphHost
  const std::string& source() const override { return options_.source; }
  ir::Value evaluate(const std::string& name) override;
  std::string add_constant(const std::string& suggested, std::shared_ptr<HostTensor> tensor) override {
    const std::string name = flattener_.unique_name(suggested);
    define(name, graph_.add_constant(name, std::move(tensor)), "a build-time constant");
    return name;
  }
  void add_op(const std::string& node_name, const std::string& op_type,
              const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
              AttributeMap attrs) override {
    NormalizedNode n;
    n.name = node_name;
    n.op_type = op_type;
    n.opset = graph_.opset;
    n.inputs = inputs;
    n.outputs = outputs;
    n.attrs = std::move(attrs);
    for (const std::string& out : outputs) reserved_names_.insert(out);
    add_node(n);
  }
  void add_subgraph(const InlinedSubgraph& body) override {
    for (const auto& [name, tensor] : body.initializers) {
      define(name, graph_.add_constant(name, decode_tensor(*tensor, options_)), "a body initializer");
    }
    add_nodes_in_topological_order(convert_nodes(body.nodes));
  }
  Flattener& flattener() override { return flattener_; }

  ir::Graph run(int64_t opset) {
    graph_.name = graph_proto_.name;
    graph_.opset = opset;
    if (graph_proto_.sparse_initializer_count > 0) {
      fail(ErrorCode::kUnsupported, options_.source, ": ", graph_proto_.sparse_initializer_count,
           " sparse initializers: sparse tensors are not supported by kiln");
    }
    // A graph without outputs computes nothing: a broken or hostile file, not a model.
    if (graph_proto_.outputs.empty()) fail_corrupt("the graph declares no outputs");
    for (const proto::ValueInfo& info : graph_proto_.value_infos) value_infos_[info.name] = &info;
    for (const proto::ValueInfo& info : graph_proto_.outputs) value_infos_[info.name] = &info;

    add_initializers();
    add_graph_inputs();
    const std::vector<FlatNode> flat = flattener_.flatten_main_graph();
    add_nodes_in_topological_order(convert_nodes(flat));
    add_graph_outputs();
    graph_.verify();
    return std::move(graph_);
  }

 private:
  template <typename... Parts>
  [[noreturn]] void fail_corrupt(Parts&&... parts) const {
    fail(ErrorCode::kCorruptFile, options_.source, ": ", std::forward<Parts>(parts)...);
  }

  void define(const std::string& name, ir::ValueId id, std::string_view what) {
    if (name.empty()) fail_corrupt(what, " has an empty name");
    if (!ids_.emplace(name, id).second) fail_corrupt("value '", name, "' is defined twice");
  }

  void add_initializers() {
    for (const proto::Tensor& tensor : graph_proto_.initializers) {
      auto host = decode_tensor(tensor, options_);
      define(tensor.name, graph_.add_constant(tensor.name, std::move(host)), "an initializer");
    }
  }

  // Graph inputs and outputs become the engine's bindings, which the C API names with C strings:
  // a NUL would cut a name short, so it is refused (shown as "\0").
  void check_binding_name(const std::string& name, std::string_view what) const {
    if (name.find('\0') == std::string::npos) return;
    std::string shown = name;
    for (size_t at = shown.find('\0'); at != std::string::npos; at = shown.find('\0', at)) {
      shown.replace(at, 1, "\\0");
    }
    fail_corrupt(what, " '", shown, "': the name contains a NUL byte");
  }

  void add_graph_inputs() {
    std::unordered_set<std::string_view> listed;
    for (const proto::ValueInfo& info : graph_proto_.inputs) {
      // Checked before the initializer case below, which would otherwise skip a repeat silently.
      if (!listed.insert(info.name).second) {
        fail_corrupt("graph input '", info.name, "' is listed twice; input names must be unique");
      }
      check_binding_name(info.name, "graph input");
      // Inputs that name an initializer are its (overridable) default: kiln treats them as
      // constants and does not bind them.
      if (ids_.count(info.name)) continue;
      const std::string label = detail::concat("graph input '", info.name, "'");
      if (!info.has_type || info.type.kind != proto::TypeProto::Kind::kTensor) {
        fail(info.has_type ? ErrorCode::kUnsupported : ErrorCode::kInvalidArgument, options_.source,
             ": ", label, " has ", type_kind_name(info.type.kind),
             info.has_type ? " type; kiln supports tensor inputs only" : "");
      }
      const std::optional<DType> dtype = dtype_from_onnx(info.type.elem_type);
      if (!dtype) {
        fail(ErrorCode::kUnsupported, options_.source, ": ", label, " has data type ",
             onnx_data_type_name(info.type.elem_type), ", which kiln does not support");
      }
      if (!info.type.has_shape) {
        fail(ErrorCode::kInvalidArgument, options_.source, ": ", label,
             " has no shape (not even a rank); kiln needs the rank of every input");
      }
      ir::Value value;
      value.name = info.name;
      value.dtype = *dtype;
      value.shape = shape_from_proto(info.type.shape, &value.dim_names);
      const ir::ValueId id = graph_.add_value(std::move(value));
      define(info.name, id, "a graph input");
      graph_.inputs.push_back(id);
    }
  }

  // Applies value_info (dtype, shape) to a node output when the model records it.
  void apply_value_info(ir::Value& value) const {
    auto it = value_infos_.find(value.name);
    if (it == value_infos_.end()) return;
    const proto::TypeProto& type = it->second->type;
    if (!it->second->has_type || type.kind != proto::TypeProto::Kind::kTensor) return;
    if (const std::optional<DType> dtype = dtype_from_onnx(type.elem_type)) value.dtype = *dtype;
    if (type.has_shape) value.shape = shape_from_proto(type.shape, nullptr);
  }

  Attribute convert_attribute(const FlatAttribute& attr, const FlatNode& node) const {
    const proto::Attribute& a = *attr.value;
    switch (a.type) {
      case proto::Attribute::kFloat:
        return Attribute::of_float(a.f);
      case proto::Attribute::kInt:
        return Attribute::of_int(a.i);
      case proto::Attribute::kString:
        return Attribute::of_string(a.s);
      case proto::Attribute::kFloats:
        return Attribute::of_floats(a.floats);
      case proto::Attribute::kInts:
        return Attribute::of_ints(a.ints);
      case proto::Attribute::kStrings:
        return Attribute::of_strings(a.strings);
      case proto::Attribute::kTensor:
        if (!a.t) {
          fail_corrupt("node '", node.name, "': attribute '", attr.name,
                       "' has type TENSOR but no tensor");
        }
        return Attribute::of_tensor(decode_tensor(*a.t, options_));
      default:
        fail(ErrorCode::kInternal, "attribute type ", a.type, " reached conversion");
    }
  }

  // An ai.onnx node whose op the registry has as an ai.onnx op (not one of another domain's).
  static bool is_ai_onnx_op(const FlatNode& node) {
    const ops::OpDef* def = node.domain.empty() ? ops::find_op(node.op_type) : nullptr;
    return def != nullptr && def->domain.empty();
  }

  // A node kiln's core does not implement (another domain, or an op the core lacks) whose
  // (domain, op type) names a registered plugin creator.
  bool maps_to_plugin(const FlatNode& node) const {
    const bool core = is_ai_onnx_op(node);
    return !core && !is_extra_domain_op(node.op_type, node.domain) &&
           !is_expanded_function_op(node.op_type, node.domain) && !is_renamed_legacy_op(node.op_type, node.domain) &&
           has_plugin_for(node.domain, node.op_type);
  }

  // Returns the reason a node cannot be imported, or "" when it can.
  std::string unsupported_reason(const FlatNode& node) const {
    const std::string where =
        detail::concat("node '", node.name, "': op '", node.op_type, "' ", describe_domain(node));
    if (const std::string refusal = extra_domain_refusal(node.op_type, node.domain);
        !refusal.empty()) {
      return where + " " + refusal;
    }
    if (node.domain.empty() && node.opset == 0) {
      return where + " is in the ai.onnx domain, which the model does not import";
    }
    if (is_extra_domain_op(node.op_type, node.domain)) return "";
    if (node.domain.empty() && plugins::is_plugin_op(node.op_type)) {
      return where + " is kiln's internal plugin layer; a plugin op is a node of its own domain and op type";
    }
    if (!is_ai_onnx_op(node) &&
        !is_expanded_function_op(node.op_type, node.domain) && !is_renamed_legacy_op(node.op_type, node.domain) &&
        !maps_to_plugin(node)) {
      return where + " is not supported by kiln" +
             (node.domain.empty() ? "" : " (and no plugin registers " + node.domain + "::" + node.op_type + ")");
    }
    std::string reason;
    for (const FlatAttribute& attr : node.attributes) {
      if (is_supported_attribute_type(attr.value->type)) continue;
      reason +=
          detail::concat(reason.empty() ? where : "", reason.empty() ? ": " : ", ", "attribute '",
                         attr.name, "' of type ", attribute_type_name(attr.value->type));
    }
    return reason.empty() ? reason : reason + " is not supported by kiln";
  }

  // Folds a Constant node into a constant value; returns a reason when kiln cannot.
  std::string fold_constant(const FlatNode& node) {
    const std::string where =
        detail::concat("node '", node.name, "': op 'Constant' ", describe_domain(node));
    if (node.attributes.size() != 1 || node.outputs.size() != 1) {
      fail_corrupt("Constant node '", node.name, "' must have exactly one value attribute and ",
                   "one output; it has ", node.attributes.size(), " and ", node.outputs.size());
    }
    const FlatAttribute& attr = node.attributes.front();
    const proto::Attribute& a = *attr.value;
    std::shared_ptr<HostTensor> tensor;
    auto make = [&](DType dtype, Shape shape) {
      tensor = std::make_shared<HostTensor>(dtype, std::move(shape));
    };
    if (attr.name == "value" && a.type == proto::Attribute::kTensor && a.t) {
      std::shared_ptr<const HostTensor> decoded = decode_tensor(*a.t, options_);
      define(node.outputs[0], graph_.add_constant(node.outputs[0], std::move(decoded)),
             "a Constant output");
      return "";
    } else if (attr.name == "value_float" && a.type == proto::Attribute::kFloat) {
      make(DType::kFloat32, {});
      *tensor->data<float>() = a.f;
    } else if (attr.name == "value_int" && a.type == proto::Attribute::kInt) {
      make(DType::kInt64, {});
      *tensor->data<int64_t>() = a.i;
    } else if (attr.name == "value_floats" && a.type == proto::Attribute::kFloats) {
      make(DType::kFloat32, {static_cast<int64_t>(a.floats.size())});
      if (!a.floats.empty())
        std::memcpy(tensor->bytes.data(), a.floats.data(), tensor->bytes.size());
    } else if (attr.name == "value_ints" && a.type == proto::Attribute::kInts) {
      make(DType::kInt64, {static_cast<int64_t>(a.ints.size())});
      if (!a.ints.empty()) std::memcpy(tensor->bytes.data(), a.ints.data(), tensor->bytes.size());
    } else if (attr.name == "sparse_value" || attr.name == "value_string" ||
               attr.name == "value_strings") {
      return detail::concat(where, ": attribute '", attr.name, "' is not supported by kiln");
    } else {
      fail_corrupt("Constant node '", node.name, "' has attribute '", attr.name, "' of type ",
                   attribute_type_name(a.type), "; expected value, value_float(s) or value_int(s)");
    }
    define(node.outputs[0], graph_.add_constant(node.outputs[0], std::move(tensor)),
           "a Constant output");
    return "";
  }

  std::string add_normalization_constant(const std::string& suggested,
                                         std::shared_ptr<HostTensor> tensor) {
    std::string name = suggested;
    for (size_t k = 1; ids_.count(name) || reserved_names_.count(name); ++k) {
      name = detail::concat(suggested, "_", k);
    }
    define(name, graph_.add_constant(name, std::move(tensor)), "a normalisation constant");
    return name;
  }

  bool is_defined(const std::string& name) const {
    return ids_.count(name) || control_flow_.defines(name);
  }

  std::vector<PendingNode> convert_nodes(const std::vector<FlatNode>& flat) {
    // Node outputs are reserved up front so normalisation constants never take their names.
    for (const FlatNode& node : flat)
      reserved_names_.insert(node.outputs.begin(), node.outputs.end());

    std::vector<std::string> unsupported;
    std::vector<const FlatNode*> kept;
    std::vector<PendingNode> out;
    for (const FlatNode& node : flat) {
      if (BuildTimeControlFlow::handles(node.op_type, node.domain) ||
          is_flex_attention(node.op_type, node.domain)) {
        PendingNode pending;
        pending.node.name = node.name;
        pending.node.op_type = node.op_type;
        pending.node.inputs = node.inputs;
        pending.node.outputs = node.outputs;
        // The values the bodies read from outside wait like inputs.
        for (const auto& [inner, outer] : node.captures) pending.node.inputs.push_back(outer);
        pending.structured = &node;
        out.push_back(std::move(pending));
        continue;
      }
      if (node.op_type == "Constant" && node.domain.empty()) {
        std::string reason = fold_constant(node);
        if (!reason.empty()) unsupported.push_back(std::move(reason));
        continue;
      }
      std::string reason = unsupported_reason(node);
      if (!reason.empty()) {
        unsupported.push_back(std::move(reason));
        continue;
      }
      kept.push_back(&node);
    }
    if (!unsupported.empty()) {
      std::string message =
          detail::concat(options_.source, ": ", unsupported.size(),
                         unsupported.size() == 1 ? " unsupported node:" : " unsupported nodes:");
      for (const std::string& line : unsupported) message += "\n  " + line;
      throw Error(ErrorCode::kUnsupported, message);
    }

    const AddConstantFn add_constant = [this](const std::string& name,
                                              std::shared_ptr<HostTensor> tensor) {
      return add_normalization_constant(name, std::move(tensor));
    };
    // Names for the values of expanded legacy nodes: unused by the model and by each other.
    const auto fresh_name = [this](const std::string& suggested) {
      return flattener_.unique_name(suggested);
    };
    for (const FlatNode* node : kept) {
      NormalizedNode n;
      n.name = node->name;
      n.op_type = node->op_type;
      // kiln's op names are unique, so the other domains' ops it runs become plain kiln ops.
      // Their opset numbers are their domain's, so they skip the ai.onnx opset rewrites.
      const bool extra = is_extra_domain_op(node->op_type, node->domain);
      n.domain = extra ? std::string() : node->domain;
      n.opset = extra ? kMaxDocumentedOpset : node->opset;
      n.inputs = node->inputs;
      n.outputs = node->outputs;
      for (const FlatAttribute& attr : node->attributes) {
        n.attrs.set(attr.name, convert_attribute(attr, *node));
      }
      if (maps_to_plugin(*node)) {
        convert_to_plugin_node(options_.source, n.name, n.op_type, n.domain, n.attrs);
        out.push_back(PendingNode{std::move(n), nullptr});
        continue;
      }
      for (NormalizedNode& legacy : expand_pre_opset13_node(std::move(n), fresh_name)) {
        for (NormalizedNode& part : expand_function_op(std::move(legacy), fresh_name, add_constant)) {
          normalize_node(part, add_constant);
          out.push_back(PendingNode{std::move(part), nullptr});
        }
      }
    }
    return out;
  }

  void add_nodes_in_topological_order(const std::vector<PendingNode>& pending_nodes) {
    std::unordered_map<std::string, size_t> producer;
    for (size_t i = 0; i < pending_nodes.size(); ++i) {
      const NormalizedNode& node = pending_nodes[i].node;
      for (const std::string& out : node.outputs) {
        if (out.empty()) continue;
        if (is_defined(out) || !producer.emplace(out, i).second) {
          fail_corrupt("value '", out, "' is produced twice (again by node '", node.name, "')");
        }
      }
    }
    const auto nodes = [&pending_nodes]() {
      std::vector<const NormalizedNode*> view;
      for (const PendingNode& p : pending_nodes) view.push_back(&p.node);
      return view;
    }();
    // Kahn's algorithm, always taking the earliest ready node so sorted models keep their order.
    std::vector<std::vector<size_t>> consumers(nodes.size());
    std::vector<size_t> pending(nodes.size(), 0);
    for (size_t i = 0; i < nodes.size(); ++i) {
      for (const std::string& in : nodes[i]->inputs) {
        if (in.empty() || is_defined(in)) continue;
        auto it = producer.find(in);
        if (it == producer.end()) {
          fail_corrupt("node '", nodes[i]->name, "' reads '", in,
                       "', which no node, graph input or initializer produces");
        }
        consumers[it->second].push_back(i);
        ++pending[i];
      }
    }
    std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
    for (size_t i = 0; i < nodes.size(); ++i)
      if (pending[i] == 0) ready.push(i);
    size_t emitted = 0;
    while (!ready.empty()) {
      const size_t i = ready.top();
      ready.pop();
      if (const FlatNode* structured = pending_nodes[i].structured;
          structured && is_flex_attention(structured->op_type, structured->domain)) {
        expand_flex_attention(*structured, *this);
      } else if (structured) {
        control_flow_.resolve(*structured);
      } else {
        add_node(*nodes[i]);
      }
      ++emitted;
      for (size_t c : consumers[i])
        if (--pending[c] == 0) ready.push(c);
    }
    if (emitted != nodes.size()) {
      for (size_t i = 0; i < nodes.size(); ++i) {
        if (pending[i] != 0) {
          fail_corrupt("the graph has a cycle through node '", nodes[i]->name, "'");
        }
      }
    }
  }

  void add_node(const NormalizedNode& n) {
    ir::Node node;
    node.name = n.name;
    node.op_type = n.op_type;
    node.domain = n.domain;
    node.attrs = n.attrs;
    for (const std::string& in : n.inputs) {
      const std::string kind = in.empty() ? std::string() : control_flow_.non_tensor_kind(in);
      if (!kind.empty()) {
        fail(ErrorCode::kUnsupported, options_.source, ": node '", n.name, "' (", n.op_type,
             ") reads '", in, "', which is ", kind, "; only sequence and optional ops take those");
      }
      node.inputs.push_back(in.empty() ? ir::kNoValue : ids_.at(in));
    }
    while (!node.inputs.empty() && node.inputs.back() == ir::kNoValue) node.inputs.pop_back();
    size_t output_count = n.outputs.size();
    while (output_count > 0 && n.outputs[output_count - 1].empty()) --output_count;
    for (size_t k = 0; k < output_count; ++k) {
      ir::Value value;
      // An omitted optional output before a used one still needs a slot in the IR.
      value.name = n.outputs[k].empty() ? unused_output_name(n.name, k) : n.outputs[k];
      apply_value_info(value);
      const ir::ValueId id = graph_.add_value(std::move(value));
      ids_.emplace(graph_.value(id).name, id);
      node.outputs.push_back(id);
    }
    graph_.add_node(std::move(node));
  }

  std::string unused_output_name(const std::string& node_name, size_t index) const {
    std::string name = detail::concat(node_name, "_unused_output_", index);
    for (size_t k = 1; ids_.count(name) || reserved_names_.count(name); ++k) {
      name = detail::concat(node_name, "_unused_output_", index, "_", k);
    }
    return name;
  }

  void add_graph_outputs() {
    std::unordered_set<std::string_view> listed;
    for (const proto::ValueInfo& info : graph_proto_.outputs) {
      if (!listed.insert(info.name).second) {
        fail_corrupt("graph output '", info.name,
                     "' is listed twice; output names must be unique (they name the bindings)");
      }
      check_binding_name(info.name, "graph output");
      const std::string kind = control_flow_.non_tensor_kind(info.name);
      if (!kind.empty()) {
        fail(ErrorCode::kUnsupported, options_.source, ": graph output '", info.name, "' is ", kind,
             "; kiln engines have tensor outputs only");
      }
      auto it = ids_.find(info.name);
      if (it == ids_.end()) {
        fail_corrupt("graph output '", info.name,
                     "' is not produced by any node, graph input or initializer");
      }
      graph_.outputs.push_back(it->second);
    }
  }

  const proto::Graph& graph_proto_;
  const ImportOptions& options_;
  ir::Graph graph_;
  std::unordered_map<std::string, ir::ValueId> ids_;
  std::unordered_set<std::string> reserved_names_;
  std::unordered_map<std::string, const proto::ValueInfo*> value_infos_;
  Flattener flattener_;
  BuildTimeControlFlow control_flow_;
};

// Evaluates only the nodes `name` depends on, in a scratch graph, with the builder's shape
// inference and constant folding; the imported graph itself stays as the model wrote it.
ir::Value Importer::evaluate(const std::string& name) {
  const ir::ValueId id = ids_.at(name);
  if (graph_.is_constant(id)) return graph_.value(id);
  std::vector<bool> in_cone(graph_.nodes.size(), false);
  std::vector<ir::ValueId> stack{id};
  while (!stack.empty()) {
    const ir::ValueId v = stack.back();
    stack.pop_back();
    const int32_t producer = graph_.value(v).producer;
    if (producer < 0 || in_cone[static_cast<size_t>(producer)]) continue;
    in_cone[static_cast<size_t>(producer)] = true;
    for (ir::ValueId in : graph_.nodes[static_cast<size_t>(producer)].inputs) {
      if (in != ir::kNoValue) stack.push_back(in);
    }
  }
  ir::Graph scratch;
  scratch.opset = graph_.opset;
  std::unordered_map<ir::ValueId, ir::ValueId> mapped;
  const auto map_value = [&](ir::ValueId v) {
    if (v == ir::kNoValue) return v;
    auto it = mapped.find(v);
    if (it != mapped.end()) return it->second;
    ir::Value copy = graph_.value(v);
    copy.producer = -1;
    const ir::ValueId fresh = scratch.add_value(std::move(copy));
    if (graph_.value(v).producer < 0 && !graph_.is_constant(v)) scratch.inputs.push_back(fresh);
    mapped.emplace(v, fresh);
    return fresh;
  };
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    if (!in_cone[i]) continue;
    ir::Node node = graph_.nodes[i];
    for (ir::ValueId& in : node.inputs) in = map_value(in);
    for (ir::ValueId& out : node.outputs) out = map_value(out);
    scratch.add_node(std::move(node));
  }
  const ir::ValueId target = map_value(id);
  scratch.outputs.push_back(target);
  passes::fold_constants(scratch);
  return scratch.value(target);
}

}  // namespace

ir::Graph import_model_bytes(std::span<const uint8_t> bytes, const ImportOptions& options) {
  const proto::Model model = proto::parse_model(bytes, options.source);
  if (!model.has_graph) fail(ErrorCode::kCorruptFile, options.source, ": ModelProto has no graph");
  std::optional<int64_t> opset;
  bool imports_extra_domain = false;
  for (const proto::OperatorSetId& id : model.opset_imports) {
    if (canonical_domain(id.domain).empty()) opset = id.version;
    imports_extra_domain = imports_extra_domain || is_extra_domain(id.domain);
  }
  if (!opset && imports_extra_domain) {
    // Only ai.onnx.preview.training / ai.onnx.ml ops: ai.onnx nodes, if any, are refused by name.
    return Importer(model, options).run(0);
  }
  if (!opset) {
    fail(ErrorCode::kUnsupported, options.source,
         ": the model imports no ai.onnx opset (kiln supports ", kMinOpset, "-",
         kMaxDocumentedOpset, ")");
  }
  check_ai_onnx_opset(*opset, options, "");
  return Importer(model, options).run(*opset);
}

ir::Graph import_model_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    fail(ErrorCode::kNotFound, "model file '", path, "' does not exist");
  }
  const uintmax_t size = std::filesystem::file_size(path, ec);
  std::ifstream file(path, std::ios::binary);
  if (ec || !file) fail(ErrorCode::kIoError, "cannot open model file '", path, "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  file.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<uintmax_t>(file.gcount()) != size) {
    fail(ErrorCode::kIoError, "error reading model file '", path, "': got ", file.gcount(), " of ",
         size, " bytes");
  }
  ImportOptions options;
  options.source = path;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  options.base_dir = parent.empty() ? std::string(".") : parent.string();
  return import_model_bytes(bytes, options);
}

}  // namespace kiln::onnx
