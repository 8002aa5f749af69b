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

// Moves Clip's FLOAT min/max attributes (opset < 11) to scalar float inputs.
void clip_attributes_to_inputs(NormalizedNode& node, const AddConstantFn& add_constant) {
  const std::array<const char*, 2> names = {"min", "max"};
  for (size_t k = 0; k < names.size(); ++k) {
    const Attribute* attr = node.attrs.find(names[k]);
    if (attr == nullptr) continue;
    if (attr->kind != Attribute::Kind::kFloat) {
      fail_node(node, "attribute '", names[k], "' must be a float, got ",
                attribute_kind_name(attr->kind));
    }
    auto tensor = std::make_shared<HostTensor>(DType::kFloat32, Shape{});
    *tensor->data<float>() = attr->f;
    const std::string name = add_constant(detail::concat(node.name, "_", names[k]), tensor);
    node.attrs.erase(names[k]);
    set_input(node, k + 1, name, names[k]);
  }
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
  // Cast's round_mode (opset 24) applies to casts to float8e8m0 only, a type kiln refuses.
  if (node.op_type == "Cast" || node.op_type == "CastLike") node.attrs.erase("round_mode");
}

}  // namespace

void normalize_node(NormalizedNode& node, const AddConstantFn& add_constant) {
  const std::string_view op = node.op_type;
  // Attention joined ai.onnx in opset 23; an older model naming it means some other op.
  if (op == "Attention" && node.domain.empty() && node.opset < 23) {
    fail(ErrorCode::kUnsupported, "node '", node.name,
         "' (Attention): the op needs ai.onnx opset 23, the model imports opset ", node.opset);
  }
  if (is_reduction(op) || op == "Squeeze" || op == "Unsqueeze") {
    ints_attribute_to_input(node, "axes", 1, add_constant);
  } else if (op == "Split") {
    ints_attribute_to_input(node, "split", 1, add_constant);
  } else if (op == "Clip") {
    clip_attributes_to_inputs(node, add_constant);
  }
  drop_ignorable_defaults(node);
}

}  // namespace kiln::onnx
