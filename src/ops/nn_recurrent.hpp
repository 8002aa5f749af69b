// RNN, GRU and LSTM's attributes, read once for the infer functions and the CPU kernels: the
// direction, hidden_size, the activation functions (with their alpha/beta), clip, layout and
// LSTM's input_forget / GRU's linear_before_reset.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

enum class RecurrentCell { kRnn, kGru, kLstm };
enum class RecurrentDirection { kForward, kReverse, kBidirectional };

// The activation functions ONNX lists for the recurrent ops.
enum class RecurrentActivationKind {
  kRelu,
  kTanh,
  kSigmoid,
  kAffine,
  kLeakyRelu,
  kThresholdedRelu,
  kScaledTanh,
  kHardSigmoid,
  kElu,
  kSoftsign,
  kSoftplus,
};

struct RecurrentActivation {
  RecurrentActivationKind kind = RecurrentActivationKind::kTanh;
  double alpha = 0.0;
  double beta = 0.0;

  double apply(double x) const;
};

struct RecurrentParams {
  RecurrentCell cell = RecurrentCell::kRnn;
  RecurrentDirection direction = RecurrentDirection::kForward;
  int64_t num_directions = 1;
  int64_t hidden_size = -1;  // -1 when the attribute is absent (R's last dim then decides)
  // activations_per_direction() functions per direction, the forward direction's first
  // (RNN: f; GRU: f, g; LSTM: f, g, h).
  std::vector<RecurrentActivation> activations;
  std::optional<double> clip;  // bounds every gate's pre-activation to [-clip, clip]
  bool batch_first = false;    // layout = 1
  bool input_forget = false;   // LSTM: the forget gate is 1 - the input gate
  bool linear_before_reset = false;  // GRU

  // Gates per hidden unit in W, R (RNN 1, GRU 3, LSTM 4).
  int64_t gates() const;
  size_t activations_per_direction() const;
  // Direction d's k-th activation function.
  const RecurrentActivation& activation(int64_t direction, size_t k) const;
};

// The cell `op` names ("RNN", "GRU" or "LSTM").
RecurrentCell recurrent_cell_of(std::string_view op);

// Reads and checks the attributes. Throws kiln::Error naming the node: kInvalidArgument for an
// unknown direction, a hidden_size below 1, a layout other than 0 or 1, a negative clip, an
// activation list whose length is not activations_per_direction() times num_directions, or more
// activation_alpha/beta values than the activations consume; kUnsupported for an activation
// function ONNX does not list, and for Affine, ScaledTanh or ThresholdedRelu without the values
// they take from activation_alpha/beta (the spec's defaults and ONNX Runtime's differ).
RecurrentParams read_recurrent_params(const NodeLabel& node, const AttributeMap& attrs);

}  // namespace kiln::ops::nn
