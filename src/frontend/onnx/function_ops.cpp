#include "frontend/onnx/function_ops.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <utility>

#include "base/error.hpp"

namespace kiln::onnx {
namespace {

// The opset the expanded nodes are written in: reductions, Squeeze and Unsqueeze take their axes
// as inputs there.
constexpr int64_t kExpansionOpset = 18;

AttributeMap attributes(std::initializer_list<std::pair<const char*, Attribute>> items) {
  AttributeMap map;
  for (const auto& [name, value] : items) map.set(name, value);
  return map;
}

// ConstantOfShape's value attribute: an int64 1.
Attribute int64_one() {
  auto one = std::make_shared<HostTensor>(DType::kInt64, Shape{1});
  *one->data<int64_t>() = 1;
  return Attribute::of_tensor(std::move(one));
}

// Builds the nodes of one expansion: each op() appends a node and returns its output's name.
class Expansion {
 public:
  Expansion(const NormalizedNode& node, const std::function<std::string(const std::string&)>& fresh_name,
            const AddConstantFn& add_constant)
      : node_(node), fresh_name_(fresh_name), add_constant_(add_constant) {}

  std::string op(std::string op_type, std::vector<std::string> inputs, AttributeMap attrs = {}) {
    NormalizedNode n;
    n.name = node_.name + "/" + op_type + "_" + std::to_string(nodes_.size());
    n.op_type = std::move(op_type);
    n.opset = std::max(node_.opset, kExpansionOpset);
    n.inputs = std::move(inputs);
    n.outputs = {fresh_name_(n.name)};
    n.attrs = std::move(attrs);
    nodes_.push_back(std::move(n));
    return nodes_.back().outputs[0];
  }

  // `value` cast to `dtype` (kiln's DType numbers are ONNX's).
  std::string cast(const std::string& value, DType dtype) {
    return op("Cast", {value}, attributes({{"to", Attribute::of_int(static_cast<int64_t>(dtype))}}));
  }

  // A float32 scalar literal converted to the dtype of `like`.
  std::string scalar_like(float value, const std::string& like) {
    auto tensor = std::make_shared<HostTensor>(DType::kFloat32, Shape{});
    *tensor->data<float>() = value;
    return op("CastLike", {add_constant_(node_.name + "/literal", std::move(tensor)), like});
  }

  std::string ints(const std::vector<int64_t>& values) {
    auto tensor = std::make_shared<HostTensor>(DType::kInt64, Shape{static_cast<int64_t>(values.size())});
    std::copy(values.begin(), values.end(), tensor->data<int64_t>());
    return add_constant_(node_.name + "/axes", std::move(tensor));
  }

  std::string constant(std::shared_ptr<HostTensor> tensor) {
    return add_constant_(node_.name + "/constant", std::move(tensor));
  }

  std::string int_scalar(int64_t value) {
    auto tensor = std::make_shared<HostTensor>(DType::kInt64, Shape{});
    *tensor->data<int64_t>() = value;
    return add_constant_(node_.name + "/index", std::move(tensor));
  }

  // The node's output `index` is `value` (an Identity writes it under the output's name, which
  // identity elimination removes).
  void output(size_t index, const std::string& value) {
    if (index >= node_.outputs.size() || node_.outputs[index].empty()) return;
    NormalizedNode n;
    n.name = index == 0 ? node_.name : node_.name + "/output_" + std::to_string(index);
    n.op_type = "Identity";
    n.opset = std::max(node_.opset, kExpansionOpset);
    n.inputs = {value};
    n.outputs = {node_.outputs[index]};
    nodes_.push_back(std::move(n));
  }

  std::vector<NormalizedNode> take() { return std::move(nodes_); }

 private:
  const NormalizedNode& node_;
  const std::function<std::string(const std::string&)>& fresh_name_;
  const AddConstantFn& add_constant_;
  std::vector<NormalizedNode> nodes_;
};

template <typename... Parts>
[[noreturn]] void fail_node(const NormalizedNode& node, const Parts&... parts) {
  fail(ErrorCode::kInvalidArgument, "node '", node.name, "' (", node.op_type, "): ", parts...);
}

void expect_arity(const NormalizedNode& node, size_t min_inputs, size_t max_inputs, size_t max_outputs) {
  size_t present = node.inputs.size();
  while (present > 0 && node.inputs[present - 1].empty()) --present;
  if (present < min_inputs || present > max_inputs || node.inputs.empty() || node.inputs[0].empty()) {
    fail_node(node, "takes ", min_inputs, " to ", max_inputs, " inputs, got ", present);
  }
  for (size_t i = 0; i < min_inputs; ++i) {
    if (node.inputs[i].empty()) fail_node(node, "input ", i, " is required");
  }
  if (node.outputs.empty() || node.outputs[0].empty() || node.outputs.size() > max_outputs) {
    fail_node(node, "has ", node.outputs.size(), " outputs; it writes 1 to ", max_outputs);
  }
}

bool has_input(const NormalizedNode& node, size_t index) {
  return index < node.inputs.size() && !node.inputs[index].empty();
}

void expand_rms_normalization(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 2, 2, 1);
  const int64_t axis = node.attrs.get_int_or("axis", -1);
  const float epsilon = node.attrs.get_float_or("epsilon", 1e-5f);
  const int64_t stash_type = node.attrs.get_int_or("stash_type", 1);
  if (stash_type != 1) fail_node(node, "stash_type ", stash_type, " is not supported (1, float32, is)");
  const std::string& x = node.inputs[0];
  // The normalised axes: axis..rank-1. A negative axis names them without the rank; a
  // non-negative one takes the rank from the input's shape (folded once shapes are known).
  std::string axes;
  if (axis < 0) {
    std::vector<int64_t> values;
    for (int64_t a = axis; a < 0; ++a) values.push_back(a);
    axes = e.ints(values);
  } else {
    const std::string rank = e.op("Size", {e.op("Shape", {x})});
    axes = e.op("Range", {e.int_scalar(axis), rank, e.int_scalar(1)});
  }
  const std::string xf = e.cast(x, DType::kFloat32);
  const std::string square = e.op("Mul", {xf, xf});
  const std::string mean = e.op("ReduceMean", {square, axes}, attributes({{"keepdims", Attribute::of_int(1)}}));
  const std::string rms = e.op("Sqrt", {e.op("Add", {mean, e.scalar_like(epsilon, xf)})});
  const std::string normalized = e.op("CastLike", {e.op("Div", {xf, rms}), x});
  e.output(0, e.op("Mul", {normalized, node.inputs[1]}));
}

void expand_swish(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 1, 1, 1);
  const std::string& x = node.inputs[0];
  const float alpha = node.attrs.get_float_or("alpha", 1.0f);
  const std::string scaled = alpha == 1.0f ? x : e.op("Mul", {x, e.scalar_like(alpha, x)});
  e.output(0, e.op("Mul", {x, e.op("Sigmoid", {scaled})}));
}

void expand_shrink(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 1, 1, 1);
  const std::string& x = node.inputs[0];
  const float lambd = node.attrs.get_float_or("lambd", 0.5f);
  const float bias = node.attrs.get_float_or("bias", 0.0f);
  // Compared in float32, so that an integer input meets a fractional lambd as the definition does.
  const std::string xf = e.cast(x, DType::kFloat32);
  const std::string below = e.op("Less", {xf, e.scalar_like(-lambd, xf)});
  const std::string above = e.op("Greater", {xf, e.scalar_like(lambd, xf)});
  const std::string b = e.scalar_like(bias, x);
  const std::string inner = e.op("Where", {above, e.op("Sub", {x, b}), e.scalar_like(0.0f, x)});
  e.output(0, e.op("Where", {below, e.op("Add", {x, b}), inner}));
}

void expand_mean_variance_normalization(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 1, 1, 1);
  const std::string& x = node.inputs[0];
  const std::vector<int64_t> axes =
      node.attrs.has("axes") ? node.attrs.get_ints("axes") : std::vector<int64_t>{0, 2, 3};
  const AttributeMap keep = attributes({{"keepdims", Attribute::of_int(1)}});
  const std::string axes_value = e.ints(axes);
  const std::string mean = e.op("ReduceMean", {x, axes_value}, keep);
  const std::string mean_of_squares = e.op("ReduceMean", {e.op("Mul", {x, x}), axes_value}, keep);
  const std::string variance = e.op("Sub", {mean_of_squares, e.op("Mul", {mean, mean})});
  const std::string deviation = e.op("Add", {e.op("Sqrt", {variance}), e.scalar_like(1e-9f, x)});
  e.output(0, e.op("Div", {e.op("Sub", {x, mean}), deviation}));
}

// The loss of NegativeLogLikelihoodLoss over log-probabilities `log_prob` [N, C, d...] and
// integer targets [N, d...], with the node's weight input at `weight_input` (if present) and its
// reduction and ignore_index attributes.
std::string negative_log_likelihood(const NormalizedNode& node, Expansion& e, const std::string& log_prob,
                                    const std::string& target, size_t weight_input) {
  const std::string reduction = node.attrs.get_string_or("reduction", "mean");
  if (reduction != "none" && reduction != "sum" && reduction != "mean") {
    fail_node(node, "reduction '", reduction, "' is not one of 'none', 'sum', 'mean'");
  }
  const bool ignoring = node.attrs.has("ignore_index");
  std::string index = target;
  std::string ignored;
  if (ignoring) {
    // Ignored targets may lie outside [0, C): they read class 0 and weigh nothing.
    ignored = e.op("Equal", {target, e.op("CastLike", {e.int_scalar(node.attrs.get_int_or("ignore_index", 0)), target})});
    index = e.op("Where", {ignored, e.op("CastLike", {e.int_scalar(0), target}), target});
  }
  const std::string class_axis = e.ints({1});
  const std::string picked = e.op(
      "Squeeze", {e.op("GatherElements", {log_prob, e.op("Unsqueeze", {index, class_axis})},
                       attributes({{"axis", Attribute::of_int(1)}})),
                  class_axis});
  std::string loss = e.op("Neg", {picked});
  // The weight of each element: weight[target], 0 where ignored; none when all weigh 1.
  std::string weights;
  if (has_input(node, weight_input)) {
    weights = e.op("Gather", {node.inputs[weight_input], index}, attributes({{"axis", Attribute::of_int(0)}}));
  }
  if (ignoring) {
    weights = e.op("Where", {ignored, e.scalar_like(0.0f, log_prob), weights.empty() ? e.scalar_like(1.0f, log_prob) : weights});
  }
  if (!weights.empty()) loss = e.op("Mul", {loss, weights});
  if (reduction == "none") return loss;
  const AttributeMap all = attributes({{"keepdims", Attribute::of_int(0)}});
  const std::string total = e.op("ReduceSum", {loss}, all);
  if (reduction == "sum") return total;
  if (weights.empty()) return e.op("ReduceMean", {loss}, all);
  return e.op("Div", {total, e.op("ReduceSum", {weights}, all)});
}

void expand_negative_log_likelihood_loss(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 2, 3, 1);
  e.output(0, negative_log_likelihood(node, e, node.inputs[0], node.inputs[1], 2));
}

void expand_softmax_cross_entropy_loss(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 2, 3, 2);
  const std::string log_prob = e.op("LogSoftmax", {node.inputs[0]}, attributes({{"axis", Attribute::of_int(1)}}));
  e.output(0, negative_log_likelihood(node, e, log_prob, node.inputs[1], 2));
  e.output(1, log_prob);
}

void expand_hardmax(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 1, 1, 1);
  const std::string& x = node.inputs[0];
  const int64_t axis = node.attrs.get_int_or("axis", -1);
  const std::string argmax =  // the first maximum's index
      e.op("ArgMax", {x}, attributes({{"axis", Attribute::of_int(axis)}, {"keepdims", Attribute::of_int(1)}}));
  // Each element's index along the axis: a running count of ones, minus one.
  const std::string ones = e.op("ConstantOfShape", {e.op("Shape", {x})}, attributes({{"value", int64_one()}}));
  const std::string counted = e.op("CumSum", {ones, e.int_scalar(axis)});
  const std::string position = e.op("Sub", {counted, e.int_scalar(1)});
  e.output(0, e.op("CastLike", {e.op("Equal", {position, argmax}), x}));
}

void expand_lp_normalization(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 1, 1, 1);
  const int64_t p = node.attrs.get_int_or("p", 2);
  if (p != 1 && p != 2) fail_node(node, "p must be 1 or 2, got ", p);
  const std::string& x = node.inputs[0];
  const std::string norm = e.op(p == 1 ? "ReduceL1" : "ReduceL2", {x, e.ints({node.attrs.get_int_or("axis", -1)})},
                                attributes({{"keepdims", Attribute::of_int(1)}}));
  // An all-zero slice stays zero (divided by 1), as the reference computes it.
  const std::string zero = e.op("Equal", {norm, e.scalar_like(0.0f, x)});
  e.output(0, e.op("Div", {x, e.op("Where", {zero, e.scalar_like(1.0f, x), norm})}));
}

void expand_one_hot(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 3, 3, 1);
  const std::string& indices = node.inputs[0];
  const int64_t axis = node.attrs.get_int_or("axis", -1);
  // depth: a scalar or one-element tensor of any numeric type.
  const std::string depth = e.op("Reshape", {e.cast(node.inputs[1], DType::kInt64), e.ints({})});
  const std::string index = e.cast(indices, DType::kInt64);
  // Negative indices count from depth; out-of-range ones match no class (all off values).
  const std::string wrapped =
      e.op("Where", {e.op("Less", {index, e.int_scalar(0)}), e.op("Add", {index, depth}), index});
  // Each class's number, as [depth, 1, ..., 1] with one trailing 1 per output axis after `axis`.
  std::string trailing;
  if (axis < 0) {
    trailing = e.ints({-axis - 1});
  } else {
    const std::string rank = e.op("Size", {e.op("Shape", {indices})});
    trailing = e.op("Reshape", {e.op("Sub", {rank, e.int_scalar(axis)}), e.ints({1})});
  }
  const AttributeMap first_axis = attributes({{"axis", Attribute::of_int(0)}});
  const std::string class_shape =
      e.op("Concat",
           {e.op("Reshape", {depth, e.ints({1})}), e.op("ConstantOfShape", {trailing}, attributes({{"value", int64_one()}}))},
           first_axis);
  const std::string classes =
      e.op("Reshape", {e.op("Range", {e.int_scalar(0), depth, e.int_scalar(1)}), class_shape});
  const std::string hit = e.op("Equal", {e.op("Unsqueeze", {wrapped, e.ints({axis})}), classes});
  const std::string off = e.op("Gather", {node.inputs[2], e.int_scalar(0)}, first_axis);
  const std::string on = e.op("Gather", {node.inputs[2], e.int_scalar(1)}, first_axis);
  e.output(0, e.op("Where", {hit, on, off}));
}

// Hann, Hamming and Blackman windows: sum_k a_k cos(2 pi k n / N) over n = 0 .. size - 1, with N =
// size (periodic, the default) or size - 1 (symmetric), in float32, then cast to output_datatype.
void expand_window(const NormalizedNode& node, Expansion& e, std::initializer_list<double> coefficients) {
  expect_arity(node, 1, 1, 1);
  const bool periodic = node.attrs.get_int_or("periodic", 1) != 0;
  const std::string size = e.cast(node.inputs[0], DType::kInt64);
  const std::string n = e.cast(e.op("Range", {e.int_scalar(0), size, e.int_scalar(1)}), DType::kFloat32);
  std::string period = e.cast(size, DType::kFloat32);
  if (!periodic) period = e.op("Sub", {period, e.scalar_like(1.0f, period)});
  // 2 pi n / N: the phase of the first cosine.
  const std::string phase = e.op("Div", {e.op("Mul", {n, e.scalar_like(static_cast<float>(2.0 * 3.14159265358979323846), n)}), period});
  // a0 + a1 cos(phase) + a2 cos(2 phase) + ...
  std::string window;
  int k = 0;
  for (const double a : coefficients) {
    if (k > 0) {
      const std::string angle = k == 1 ? phase : e.op("Mul", {phase, e.scalar_like(static_cast<float>(k), phase)});
      const std::string term = e.op("Mul", {e.op("Cos", {angle}), e.scalar_like(static_cast<float>(a), phase)});
      window = window.empty() ? term : e.op("Add", {window, term});
    }
    ++k;
  }
  window = e.op("Add", {window, e.scalar_like(static_cast<float>(*coefficients.begin()), phase)});
  e.output(0, e.op("Cast", {window}, attributes({{"to", Attribute::of_int(node.attrs.get_int_or("output_datatype", 1))}})));
}

void expand_hann_window(const NormalizedNode& node, Expansion& e) { expand_window(node, e, {0.5, -0.5}); }
void expand_hamming_window(const NormalizedNode& node, Expansion& e) {
  expand_window(node, e, {25.0 / 46.0, -21.0 / 46.0});
}
void expand_blackman_window(const NormalizedNode& node, Expansion& e) { expand_window(node, e, {0.42, -0.5, 0.08}); }

// CenterCropPad: per axis, a centred crop of input dims larger than the target (starting at
// floor((dim - target) / 2)) and a centred zero pad of smaller ones (floor((target - dim) / 2)
// before, the rest after): a Slice then a Pad, their bounds computed from Shape so that a shape
// known only at run time works too.
void expand_center_crop_pad(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 2, 2, 1);
  const std::string& x = node.inputs[0];
  const std::string target = e.cast(node.inputs[1], DType::kInt64);
  const std::string shape = e.op("Shape", {x});
  const std::string axes =
      node.attrs.has("axes") ? e.ints(node.attrs.get_ints("axes"))
                             : e.op("Range", {e.int_scalar(0), e.op("Size", {shape}), e.int_scalar(1)});
  const AttributeMap first_axis = attributes({{"axis", Attribute::of_int(0)}});
  const std::string current = e.op("Gather", {shape, axes}, first_axis);
  const std::string excess = e.op("Sub", {current, target});
  const std::string zero = e.int_scalar(0);
  const std::string two = e.int_scalar(2);
  const std::string crop_start = e.op("Div", {e.op("Max", {excess, zero}), two});
  const std::string crop_end = e.op("Add", {crop_start, e.op("Min", {current, target})});
  const std::string cropped = e.op("Slice", {x, crop_start, crop_end, axes});
  const std::string shortfall = e.op("Max", {e.op("Neg", {excess}), zero});
  const std::string pad_before = e.op("Div", {shortfall, two});
  const std::string pad_after = e.op("Sub", {shortfall, pad_before});
  const std::string pads = e.op("Concat", {pad_before, pad_after}, first_axis);
  e.output(0, e.op("Pad", {cropped, pads, "", axes}));
}

// `b` reshaped so that numpy broadcasting aligns its dims with `a`'s dims from `axis` on (opset
// 1-6's broadcasting at an axis): trailing 1s appended for a's dims past b's last aligned one,
// computed from Shape so that shapes known only at run time work too.
std::string align_at_axis(Expansion& e, const std::string& b, const std::string& a, int64_t axis) {
  const std::string b_shape = e.op("Shape", {b});
  const std::string first_after_b = e.op("Add", {e.op("Shape", {b_shape}), e.ints({axis})});
  const std::string tail = e.op("Slice", {e.op("Shape", {a}), first_after_b, e.ints({INT64_MAX})});
  const std::string ones =
      e.op("ConstantOfShape", {e.op("Shape", {tail})}, attributes({{"value", int64_one()}}));
  const std::string target = e.op("Concat", {b_shape, ones}, attributes({{"axis", Attribute::of_int(0)}}));
  return e.op("Reshape", {b, target});
}

// Add, Sub, Mul, Div and Pow before opset 7 with broadcast = 1 and an `axis`: B's dims line up
// with A's from `axis` on.
void expand_legacy_axis_broadcast(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 2, 2, 1);
  const int64_t axis = node.attrs.get_int_or("axis", 0);
  if (axis < 0) fail_node(node, "attribute 'axis' must be >= 0 for opset ", node.opset, " broadcasting, got ", axis);
  e.output(0, e.op(node.op_type, {node.inputs[0], align_at_axis(e, node.inputs[1], node.inputs[0], axis)}));
}

// PRelu before opset 7: a slope with fewer dims than X is per channel, aligned with X's axis 1
// (opset 7 made it broadcast numpy-style from the trailing axis).
void expand_legacy_prelu(const NormalizedNode& node, Expansion& e) {
  expect_arity(node, 2, 2, 1);
  e.output(0, e.op("PRelu", {node.inputs[0], align_at_axis(e, node.inputs[1], node.inputs[0], 1)}));
}

// Upsample (opsets 7-9; deprecated in 10): Resize with asymmetric coordinates, nearest (floor) or
// linear. Opset 7 gives the scales as an attribute, opset 9 as input 1.
void expand_upsample(const NormalizedNode& node, Expansion& e) {
  const std::string mode = node.attrs.get_string_or("mode", "nearest");
  if (mode != "nearest" && mode != "linear" && mode != "bilinear") {
    fail_node(node, "attribute 'mode' must be \"nearest\", \"linear\" or \"bilinear\", got \"", mode, "\"");
  }
  std::string scales;
  if (node.attrs.has("scales")) {
    expect_arity(node, 1, 1, 1);
    const std::vector<float> values = node.attrs.get_floats("scales");
    auto tensor = std::make_shared<HostTensor>(DType::kFloat32, Shape{static_cast<int64_t>(values.size())});
    std::copy(values.begin(), values.end(), tensor->data<float>());
    scales = e.constant(std::move(tensor));
  } else {
    expect_arity(node, 2, 2, 1);
    scales = node.inputs[1];
  }
  AttributeMap attrs = attributes({{"mode", Attribute::of_string(mode == "nearest" ? "nearest" : "linear")},
                                   {"coordinate_transformation_mode", Attribute::of_string("asymmetric")}});
  if (mode == "nearest") attrs.set("nearest_mode", Attribute::of_string("floor"));
  e.output(0, e.op("Resize", {node.inputs[0], "", scales}, std::move(attrs)));
}

const std::array<std::string_view, 5> kLegacyBroadcastOps = {"Add", "Sub", "Mul", "Div", "Pow"};

// The expansion of an opset 1-6 form whose semantics later opsets changed, or null.
void (*legacy_expansion(const NormalizedNode& node))(const NormalizedNode&, Expansion&) {
  if (!node.domain.empty() || node.opset >= 7) return nullptr;
  if (node.op_type == "PRelu") return expand_legacy_prelu;
  if (node.attrs.get_int_or("broadcast", 0) == 1 && node.attrs.has("axis") &&
      std::find(kLegacyBroadcastOps.begin(), kLegacyBroadcastOps.end(), node.op_type) != kLegacyBroadcastOps.end()) {
    return expand_legacy_axis_broadcast;
  }
  return nullptr;
}

using ExpandFn = void (*)(const NormalizedNode&, Expansion&);

struct FunctionOp {
  std::string_view op_type;
  ExpandFn expand;
};

constexpr std::array<FunctionOp, 14> kFunctionOps{{
    {"CenterCropPad", expand_center_crop_pad},
    {"Upsample", expand_upsample},
    {"HannWindow", expand_hann_window},
    {"HammingWindow", expand_hamming_window},
    {"BlackmanWindow", expand_blackman_window},
    {"OneHot", expand_one_hot},
    {"Hardmax", expand_hardmax},
    {"LpNormalization", expand_lp_normalization},
    {"RMSNormalization", expand_rms_normalization},
    {"Swish", expand_swish},
    {"Shrink", expand_shrink},
    {"MeanVarianceNormalization", expand_mean_variance_normalization},
    {"NegativeLogLikelihoodLoss", expand_negative_log_likelihood_loss},
    {"SoftmaxCrossEntropyLoss", expand_softmax_cross_entropy_loss},
}};

const FunctionOp* find_function_op(std::string_view op_type, const std::string& domain) {
  if (!domain.empty()) return nullptr;
  for (const FunctionOp& f : kFunctionOps)
    if (f.op_type == op_type) return &f;
  return nullptr;
}

}  // namespace

bool is_expanded_function_op(std::string_view op_type, const std::string& domain) {
  return find_function_op(op_type, domain) != nullptr;
}

std::vector<NormalizedNode> expand_function_op(NormalizedNode node,
                                               const std::function<std::string(const std::string&)>& fresh_name,
                                               const AddConstantFn& add_constant) {
  if (const auto legacy = legacy_expansion(node)) {
    Expansion expansion(node, fresh_name, add_constant);
    legacy(node, expansion);
    return expansion.take();
  }
  const FunctionOp* f = find_function_op(node.op_type, node.domain);
  if (f == nullptr) {
    std::vector<NormalizedNode> alone;
    alone.push_back(std::move(node));
    return alone;
  }
  Expansion expansion(node, fresh_name, add_constant);
  f->expand(node, expansion);
  return expansion.take();
}

}  // namespace kiln::onnx
