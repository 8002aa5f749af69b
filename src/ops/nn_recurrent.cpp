#include "ops/nn_recurrent.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <string>

namespace kiln::ops::nn {
namespace {

struct ActivationSpec {
  std::string_view name;
  RecurrentActivationKind kind;
  bool takes_alpha;
  bool takes_beta;
  // ONNX's default for a missing alpha/beta, where the spec's operator default and ONNX Runtime's
  // agree; nullopt where they do not (the value must then be given).
  std::optional<double> default_alpha;
  std::optional<double> default_beta;
};

constexpr std::array<ActivationSpec, 11> kActivations{{
    {"Relu", RecurrentActivationKind::kRelu, false, false, {}, {}},
    {"Tanh", RecurrentActivationKind::kTanh, false, false, {}, {}},
    {"Sigmoid", RecurrentActivationKind::kSigmoid, false, false, {}, {}},
    {"Affine", RecurrentActivationKind::kAffine, true, true, {}, {}},
    {"LeakyRelu", RecurrentActivationKind::kLeakyRelu, true, false, 0.01, {}},
    {"ThresholdedRelu", RecurrentActivationKind::kThresholdedRelu, true, false, {}, {}},
    {"ScaledTanh", RecurrentActivationKind::kScaledTanh, true, true, {}, {}},
    {"HardSigmoid", RecurrentActivationKind::kHardSigmoid, true, true, 0.2, 0.5},
    {"Elu", RecurrentActivationKind::kElu, true, false, 1.0, {}},
    {"Softsign", RecurrentActivationKind::kSoftsign, false, false, {}, {}},
    {"Softplus", RecurrentActivationKind::kSoftplus, false, false, {}, {}},
}};

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

const ActivationSpec& find_activation(const NodeLabel& node, const std::string& name) {
  for (const ActivationSpec& spec : kActivations) {
    if (equals_ignoring_case(spec.name, name)) return spec;
  }
  fail_at(node, ErrorCode::kUnsupported, "attribute 'activations': unsupported activation function '", name,
          "'; supported: Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, "
          "Softsign, Softplus");
}

std::vector<std::string> default_activations(RecurrentCell cell) {
  switch (cell) {
    case RecurrentCell::kRnn: return {"Tanh"};
    case RecurrentCell::kGru: return {"Sigmoid", "Tanh"};
    case RecurrentCell::kLstm: return {"Sigmoid", "Tanh", "Tanh"};
  }
  return {};
}

std::vector<float> floats_or_empty(const AttributeMap& attrs, std::string_view name) {
  return attrs.has(name) ? attrs.get_floats(name) : std::vector<float>{};
}

// Gives each activation its alpha/beta: activation_alpha's values go, in order, to the functions
// that take an alpha (ONNX Runtime's reading of "consumed in the order of activation functions"),
// and likewise activation_beta's.
std::vector<RecurrentActivation> read_activations(const NodeLabel& node, const AttributeMap& attrs,
                                                  RecurrentCell cell, size_t expected) {
  std::vector<std::string> names;
  if (const Attribute* a = attrs.find("activations")) {
    if (a->kind != Attribute::Kind::kStrings) {
      fail_at(node, ErrorCode::kInvalidArgument, "attribute 'activations' must hold strings, got ",
              attribute_kind_name(a->kind));
    }
    names = a->strings;
  } else {
    for (size_t copy = 0; copy < expected / default_activations(cell).size(); ++copy) {
      for (std::string& name : default_activations(cell)) names.push_back(std::move(name));
    }
  }
  if (names.size() != expected) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'activations' must hold ", expected,
            " functions (", expected / default_activations(cell).size(), " per direction), got ", names.size());
  }
  const std::vector<float> alphas = floats_or_empty(attrs, "activation_alpha");
  const std::vector<float> betas = floats_or_empty(attrs, "activation_beta");
  size_t next_alpha = 0, next_beta = 0;
  std::vector<RecurrentActivation> out;
  for (const std::string& name : names) {
    const ActivationSpec& spec = find_activation(node, name);
    RecurrentActivation activation;
    activation.kind = spec.kind;
    const auto take = [&](bool takes, const std::vector<float>& values, size_t& next,
                          const std::optional<double>& fallback, std::string_view attribute) {
      if (!takes) return 0.0;
      if (next < values.size()) return static_cast<double>(values[next++]);
      if (fallback) return *fallback;
      fail_at(node, ErrorCode::kUnsupported, "activation '", spec.name, "' needs a value in attribute '", attribute,
              "' (its default is not settled: the ONNX operator's and ONNX Runtime's differ)");
    };
    activation.alpha = take(spec.takes_alpha, alphas, next_alpha, spec.default_alpha, "activation_alpha");
    activation.beta = take(spec.takes_beta, betas, next_beta, spec.default_beta, "activation_beta");
    out.push_back(activation);
  }
  if (next_alpha != alphas.size() || next_beta != betas.size()) {
    fail_at(node, ErrorCode::kInvalidArgument, "attributes 'activation_alpha' and 'activation_beta' hold ",
            alphas.size(), " and ", betas.size(), " values but the activations take ", next_alpha, " and ",
            next_beta);
  }
  return out;
}

}  // namespace

double RecurrentActivation::apply(double x) const {
  switch (kind) {
    case RecurrentActivationKind::kRelu: return x > 0.0 ? x : 0.0;
    case RecurrentActivationKind::kTanh: return std::tanh(x);
    case RecurrentActivationKind::kSigmoid: return 1.0 / (1.0 + std::exp(-x));
    case RecurrentActivationKind::kAffine: return alpha * x + beta;
    case RecurrentActivationKind::kLeakyRelu: return x >= 0.0 ? x : alpha * x;
    case RecurrentActivationKind::kThresholdedRelu: return x >= alpha ? x : 0.0;
    case RecurrentActivationKind::kScaledTanh: return alpha * std::tanh(beta * x);
    case RecurrentActivationKind::kHardSigmoid: return std::clamp(alpha * x + beta, 0.0, 1.0);
    case RecurrentActivationKind::kElu: return x >= 0.0 ? x : alpha * (std::exp(x) - 1.0);
    case RecurrentActivationKind::kSoftsign: return x / (1.0 + std::fabs(x));
    case RecurrentActivationKind::kSoftplus: return x > 30.0 ? x : std::log1p(std::exp(x));
  }
  return x;
}

int64_t RecurrentParams::gates() const {
  switch (cell) {
    case RecurrentCell::kRnn: return 1;
    case RecurrentCell::kGru: return 3;
    case RecurrentCell::kLstm: return 4;
  }
  return 1;
}

size_t RecurrentParams::activations_per_direction() const {
  return cell == RecurrentCell::kRnn ? 1 : cell == RecurrentCell::kGru ? 2 : 3;
}

const RecurrentActivation& RecurrentParams::activation(int64_t direction, size_t k) const {
  return activations[static_cast<size_t>(direction) * activations_per_direction() + k];
}

RecurrentCell recurrent_cell_of(std::string_view op) {
  if (op == "GRU") return RecurrentCell::kGru;
  if (op == "LSTM") return RecurrentCell::kLstm;
  return RecurrentCell::kRnn;
}

RecurrentParams read_recurrent_params(const NodeLabel& node, const AttributeMap& attrs) {
  RecurrentParams p;
  p.cell = recurrent_cell_of(node.op);
  const std::string direction = attrs.get_string_or("direction", "forward");
  if (direction == "forward") {
    p.direction = RecurrentDirection::kForward;
  } else if (direction == "reverse") {
    p.direction = RecurrentDirection::kReverse;
  } else if (direction == "bidirectional") {
    p.direction = RecurrentDirection::kBidirectional;
    p.num_directions = 2;
  } else {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'direction' must be forward, reverse or bidirectional, got '", direction, "'");
  }
  if (attrs.has("hidden_size")) {
    p.hidden_size = attrs.get_int("hidden_size");
    if (p.hidden_size < 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "attribute 'hidden_size' must be >= 1, got ", p.hidden_size);
    }
  }
  const int64_t layout = attrs.get_int_or("layout", 0);
  if (layout != 0 && layout != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'layout' must be 0 or 1, got ", layout);
  }
  p.batch_first = layout == 1;
  if (attrs.has("clip")) {
    const double clip = attrs.get_float("clip");
    if (!(clip >= 0.0)) fail_at(node, ErrorCode::kInvalidArgument, "attribute 'clip' must be >= 0, got ", clip);
    p.clip = clip;
  }
  const int64_t input_forget = p.cell == RecurrentCell::kLstm ? attrs.get_int_or("input_forget", 0) : 0;
  if (input_forget != 0 && input_forget != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'input_forget' must be 0 or 1, got ", input_forget);
  }
  p.input_forget = input_forget == 1;
  const int64_t linear = p.cell == RecurrentCell::kGru ? attrs.get_int_or("linear_before_reset", 0) : 0;
  if (linear != 0 && linear != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'linear_before_reset' must be 0 or 1, got ", linear);
  }
  p.linear_before_reset = linear == 1;
  p.activations = read_activations(node, attrs, p.cell,
                                   p.activations_per_direction() * static_cast<size_t>(p.num_directions));
  return p;
}

}  // namespace kiln::ops::nn
