#include "frontend/onnx/opset_normalizer.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

#include "base/error.hpp"

namespace kiln::onnx {

void check_ai_onnx_opset(int64_t version, const ImportOptions& options, const std::string& where) {
  if (version < kMinOpset || version > kMaxAcceptedOpset) {
    fail(ErrorCode::kUnsupported, options.source, ": ", where, "opset ", version,
         " is not supported (kiln supports ", kMinOpset, "-", kMaxDocumentedOpset, ")");
  }
}

namespace {

// Reductions whose `axes` became an input in opset 18 (ReduceSum moved in opset 13).
constexpr std::array<std::string_view, 8> kOpset18Reductions = {
    "ReduceMean", "ReduceMax", "ReduceMin",       "ReduceProd",
    "ReduceL1",   "ReduceL2",  "ReduceLogSumExp", "ReduceSumSquare"};

bool is_reduction(std::string_view op) {
  return op == "ReduceLogSum" || op == "ReduceSum" ||
         std::find(kOpset18Reductions.begin(), kOpset18Reductions.end(), op) !=
             kOpset18Reductions.end();
}

template <typename... Parts>
[[noreturn]] void fail_node(const NormalizedNode& node, Parts&&... parts) {
  fail(ErrorCode::kInvalidArgument, "node '", node.name, "' (", node.op_type,
       "): ", std::forward<Parts>(parts)...);
}

// Sets input `index` to `value`, padding with absent inputs; fails when the node already has
// that input (the attribute and input forms must not both be given).
void set_input(NormalizedNode& node, size_t index, const std::string& value,
               const std::string& attribute) {
  if (node.inputs.size() > index && !node.inputs[index].empty()) {
    fail_node(node, "has both the '", attribute, "' attribute and input ", index);
  }
  if (node.inputs.size() <= index) node.inputs.resize(index + 1);
  node.inputs[index] = value;
}

// Moves an INTS attribute to an int64 constant input.
void ints_attribute_to_input(NormalizedNode& node, const char* attribute, size_t index,
                             const AddConstantFn& add_constant) {
  const Attribute* attr = node.attrs.find(attribute);
  if (attr == nullptr) return;
  if (attr->kind != Attribute::Kind::kInts) {
    fail_node(node, "attribute '", attribute, "' must be a list of ints, got ",
              attribute_kind_name(attr->kind));
  }
  auto tensor =
      std::make_shared<HostTensor>(DType::kInt64, Shape{static_cast<int64_t>(attr->ints.size())});
  if (!attr->ints.empty()) {
    std::memcpy(tensor->bytes.data(), attr->ints.data(), attr->ints.size() * sizeof(int64_t));
  }
  const std::string name = add_constant(detail::concat(node.name, "_", attribute), tensor);
  node.attrs.erase(attribute);
  set_input(node, index, name, attribute);
}

// Moves a FLOAT attribute to a float32 scalar input at `index` (left out when absent).
void float_attribute_to_input(NormalizedNode& node, const char* attribute, size_t index,
                              const AddConstantFn& add_constant) {
  const Attribute* attr = node.attrs.find(attribute);
  if (attr == nullptr) return;
  if (attr->kind != Attribute::Kind::kFloat) {
    fail_node(node, "attribute '", attribute, "' must be a float, got ", attribute_kind_name(attr->kind));
  }
  auto tensor = std::make_shared<HostTensor>(DType::kFloat32, Shape{});
  *tensor->data<float>() = attr->f;
  const std::string name = add_constant(detail::concat(node.name, "_", attribute), tensor);
  node.attrs.erase(attribute);
  set_input(node, index, name, attribute);
}

// DFT before opset 20 takes `axis` as an attribute (default 1); opset 20 made it input 2 (default
// -2). Moves the attribute, or its default, to an int64 scalar constant input.
void dft_axis_attribute_to_input(NormalizedNode& node, const AddConstantFn& add_constant) {
  const Attribute* attr = node.attrs.find("axis");
  if (attr != nullptr && attr->kind != Attribute::Kind::kInt) {
    fail_node(node, "attribute 'axis' must be an int, got ", attribute_kind_name(attr->kind));
  }
  auto tensor = std::make_shared<HostTensor>(DType::kInt64, Shape{});
  *tensor->data<int64_t>() = attr != nullptr ? attr->i : 1;
  const std::string name = add_constant(detail::concat(node.name, "_axis"), tensor);
  node.attrs.erase("axis");
  set_input(node, 2, name, "axis");
}

// Attributes that, at their default value, only matter for training or for formats kiln does not
// have; dropping them keeps the IR (and engine files) free of noise.
struct IgnorableDefault {
  std::string_view op;  // "" matches every op
  std::string_view attribute;
  Attribute value;
};

const std::vector<IgnorableDefault>& ignorable_defaults() {
  static const std::vector<IgnorableDefault> table = {
      {"Conv", "auto_pad", Attribute::of_string("NOTSET")},
      {"ConvTranspose", "auto_pad", Attribute::of_string("NOTSET")},
      {"MaxPool", "auto_pad", Attribute::of_string("NOTSET")},
      {"AveragePool", "auto_pad", Attribute::of_string("NOTSET")},
      {"MaxPool", "storage_order", Attribute::of_int(0)},
      {"BatchNormalization", "training_mode", Attribute::of_int(0)},
      {"LayerNormalization", "stash_type", Attribute::of_int(1)},
      {"Cast", "saturate", Attribute::of_int(1)},
      {"ReduceMean", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceSum", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceMax", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceMin", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceProd", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceL1", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceL2", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceLogSum", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceLogSumExp", "noop_with_empty_axes", Attribute::of_int(0)},
      {"ReduceSumSquare", "noop_with_empty_axes", Attribute::of_int(0)},
  };
  return table;
}

void drop_ignorable_defaults(NormalizedNode& node) {
  for (const IgnorableDefault& entry : ignorable_defaults()) {
    if (entry.op != node.op_type) continue;
    const Attribute* attr = node.attrs.find(entry.attribute);
    if (attr != nullptr && *attr == entry.value) node.attrs.erase(entry.attribute);
  }
  // BatchNormalization's momentum only affects training statistics.
  if (node.op_type == "BatchNormalization") node.attrs.erase("momentum");
  // Cast's round_mode (opset 24) applies to casts to float8e8m0 only (CastLike's target type is
  // known later: it keeps the attribute).
  if (node.op_type == "Cast" && node.attrs.get_int_or("to", 0) != static_cast<int64_t>(DType::kFloat8E8M0)) {
    node.attrs.erase("round_mode");
  }
}

}  // namespace

namespace {

// The forms of opsets 7-12 that differ from opset 13's and are rewritten here (the ops not named
// kept their semantics from opset 7 to 13, up to attributes moved to inputs, handled above).
void normalize_pre_opset13(NormalizedNode& node, const AddConstantFn& add_constant) {
  const std::string_view op = node.op_type;
  if (node.opset < 7) {
    // Opset 6's binary ops broadcast only when told (`broadcast` = 1), aligning B with A's
    // trailing axes, or at `axis`. The first is what numpy broadcasting (opset 7 on) gives; the
    // axis form was rewritten to a Reshape of B before this (function_ops.cpp, legacy_expansion),
    // and an axis without broadcast = 1 means nothing.
    static constexpr std::array<std::string_view, 6> kLegacyBroadcast = {"Add", "Sub", "Mul", "Div", "Pow", "Gemm"};
    if (std::find(kLegacyBroadcast.begin(), kLegacyBroadcast.end(), op) != kLegacyBroadcast.end()) {
      if (op != "Gemm") node.attrs.erase("axis");
      node.attrs.erase("broadcast");
    }
    // is_test (opset 6 BatchNormalization and Dropout) selects inference, which is all kiln does.
    if (op == "BatchNormalization" || op == "Dropout") {
      if (node.attrs.get_int_or("is_test", 1) == 0 && op == "BatchNormalization") {
        fail(ErrorCode::kUnsupported, "node '", node.name, "' (BatchNormalization): is_test = 0 (training) is not supported");
      }
      node.attrs.erase("is_test");
    }
  }
  if (op == "Slice" && node.opset < 10) {  // starts/ends/axes attributes, no steps
    if (!node.attrs.has("starts") || !node.attrs.has("ends")) {
      fail_node(node, "opset ", node.opset, " Slice needs the 'starts' and 'ends' attributes");
    }
    ints_attribute_to_input(node, "starts", 1, add_constant);
    ints_attribute_to_input(node, "ends", 2, add_constant);
    ints_attribute_to_input(node, "axes", 3, add_constant);
  } else if (op == "TopK" && node.opset < 10) {  // k attribute -> a [1] int64 input
    const Attribute* k = node.attrs.find("k");
    if (k == nullptr || k->kind != Attribute::Kind::kInt) {
      fail_node(node, "opset ", node.opset, " TopK needs an int attribute 'k'");
    }
    auto tensor = std::make_shared<HostTensor>(DType::kInt64, Shape{1});
    *tensor->data<int64_t>() = k->i;
    const std::string name = add_constant(detail::concat(node.name, "_k"), tensor);
    node.attrs.erase("k");
    set_input(node, 1, name, "k");
  } else if (op == "Pad" && node.opset < 11) {  // pads and value attributes
    ints_attribute_to_input(node, "pads", 1, add_constant);
    float_attribute_to_input(node, "value", 2, add_constant);
  } else if (op == "Dropout" && node.opset < 12) {
    // The ratio attribute only matters in training; inference passes the input through.
    node.attrs.erase("ratio");
  } else if (op == "BatchNormalization" && node.opset < 9) {
    if (node.attrs.get_int_or("spatial", 1) != 1) {
      fail(ErrorCode::kUnsupported, "node '", node.name,
           "' (BatchNormalization): spatial = 0 (per-element statistics, opset ", node.opset,
           ") is not supported");
    }
    node.attrs.erase("spatial");
  } else if (op == "Resize" && node.opset < 11) {
    fail(ErrorCode::kUnsupported, "node '", node.name, "' (Resize): the opset ", node.opset,
         " form (no roi, asymmetric coordinates) is not supported; kiln takes Resize from opset 11");
  }
}

}  // namespace

std::vector<NormalizedNode> expand_pre_opset13_node(NormalizedNode node,
                                                    const std::function<std::string(const std::string&)>& fresh_name) {
  std::vector<NormalizedNode> out;
  const std::string_view op = node.op_type;
  if ((op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") && node.opset < 13 && node.domain.empty() &&
      node.inputs.size() == 1 && node.outputs.size() == 1) {
    // Before opset 13 these normalise the input coerced to 2-D at `axis` (default 1): over all the
    // axes from `axis` on at once. Flatten there, normalise the last axis, restore the shape.
    const int64_t axis = node.attrs.get_int_or("axis", 1);
    auto make = [&](std::string op_type, std::string suffix, std::vector<std::string> inputs) {
      NormalizedNode n;
      n.name = node.name + suffix;
      n.op_type = std::move(op_type);
      n.opset = node.opset;
      n.inputs = std::move(inputs);
      n.outputs = {fresh_name(node.outputs[0] + suffix)};
      return n;
    };
    NormalizedNode flatten = make("Flatten", "/coerced_2d", {node.inputs[0]});
    flatten.attrs.set("axis", Attribute::of_int(axis));
    NormalizedNode normalize = make(std::string(op), "/over_last_axis", {flatten.outputs[0]});
    normalize.attrs.set("axis", Attribute::of_int(-1));
    NormalizedNode shape = make("Shape", "/input_shape", {node.inputs[0]});
    NormalizedNode reshape = make("Reshape", "", {normalize.outputs[0], shape.outputs[0]});
    reshape.name = node.name;
    reshape.outputs = node.outputs;
    out = {std::move(flatten), std::move(normalize), std::move(shape), std::move(reshape)};
    return out;
  }
  out.push_back(std::move(node));
  return out;
}

bool is_renamed_legacy_op(std::string_view op_type, const std::string& domain) {
  return domain.empty() && op_type == "Scatter";
}

void normalize_node(NormalizedNode& node, const AddConstantFn& add_constant) {
  const std::string_view op = node.op_type;
  if (node.domain.empty() && node.opset < 13) normalize_pre_opset13(node, add_constant);
  // Attention joined ai.onnx in opset 23; an older model naming it means some other op.
  if (op == "Attention" && node.domain.empty() && node.opset < 23) {
    fail(ErrorCode::kUnsupported, "node '", node.name,
         "' (Attention): the op needs ai.onnx opset 23, the model imports opset ", node.opset);
  }
  // Scatter (opsets 9-10) is ScatterElements without a reduction under its old name.
  if (is_renamed_legacy_op(op, node.domain)) node.op_type = "ScatterElements";
  if (is_reduction(op) || op == "Squeeze" || op == "Unsqueeze") {
    ints_attribute_to_input(node, "axes", 1, add_constant);
  } else if (op == "Split") {
    ints_attribute_to_input(node, "split", 1, add_constant);
  } else if (op == "DFT" && node.domain.empty() && node.opset < 20) {
    dft_axis_attribute_to_input(node, add_constant);
  } else if (op == "RoiAlign" && node.domain.empty() && node.opset < 16 &&
             !node.attrs.has("coordinate_transformation_mode")) {
    // Opset 10 had no such attribute and sampled as output_half_pixel does (16's default differs).
    node.attrs.set("coordinate_transformation_mode", Attribute::of_string("output_half_pixel"));
  } else if (op == "Clip") {  // min/max attributes (opset < 11)
    float_attribute_to_input(node, "min", 1, add_constant);
    float_attribute_to_input(node, "max", 2, add_constant);
  }
  drop_ignorable_defaults(node);
}

}  // namespace kiln::onnx
