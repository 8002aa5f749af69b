// Conformance cases (backend_ops_cases.hpp) of the ops with special-purpose inputs: quantization
// (integer tensors, scales, zero points), spectral ops, the training-domain optimizers, the
// ai.onnx.ml ops, Det and NonMaxSuppression.
#include "backend_ops_cases.hpp"

namespace kiln::conformance {
namespace {

constexpr DType kF32 = DType::kFloat32;

void register_quantization_cases() {
  // Quantized operands over most of int8's range (uint8 saturates the negative half to 0).
  const Fill quantized = uniform(-100, 100);
  register_op_cases(
      "QuantizeLinear",
      {{.variant = "per_tensor_uint8",
        .inputs = {input({2, 3, 4}, uniform(-2, 2)), constant({}, kF32, values({0.05})),
                   constant({}, DType::kUInt8, values({128}))},
        .dtypes = {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt32}},
       {.variant = "per_axis_int8",
        .inputs = {input({2, 3, 4}, uniform(-2, 2)), constant({3}, kF32, values({0.02, 0.05, 0.1})),
                   constant({3}, DType::kInt8, values({-3, 0, 5}))},
        .attrs = attrs({{"axis", of_int(1)}}),
        .dtypes = {DType::kFloat32, DType::kFloat16, DType::kBFloat16}}});
  register_op_cases(
      "DequantizeLinear",
      {{.variant = "per_tensor",
        .inputs = {input({2, 3, 4}, quantized), constant({}, kF32, values({0.05})),
                   constant({}, values({2}))},
        .dtypes = {DType::kInt8, DType::kUInt8, DType::kInt32}},
       {.variant = "per_axis",
        .inputs = {input({2, 3, 4}, quantized), constant({3}, kF32, values({0.02, 0.05, 0.1}))},
        .attrs = attrs({{"axis", of_int(1)}}),
        .dtypes = {DType::kInt8, DType::kUInt8}}});
  register_op_cases(
      "MatMulInteger",
      {{.variant = "plain", .inputs = {input({2, 3, 4}, quantized), input({4, 5}, quantized)}},
       {.variant = "zero_points",
        .inputs = {input({2, 3, 4}, quantized), input({4, 5}, quantized), constant({}, values({3})),
                   constant({5}, values({1, -2, 0, 4, 7}))}}});
  // a, b and y quantized in the dtype under test; scales float32.
  register_op_cases("QLinearMatMul",
                    {{.inputs = {input({2, 3}, quantized), constant({}, kF32, values({0.05})),
                                 constant({}, values({2})), input({3, 4}, quantized),
                                 constant({}, kF32, values({0.04})), constant({}, values({1})),
                                 constant({}, kF32, values({0.2})), constant({}, values({5}))}}});
  register_op_cases(
      "QLinearConv",
      {{.inputs = {input({1, 2, 5, 5}, quantized), constant({}, kF32, values({0.05})),
                   constant({}, values({2})), constant({3, 2, 3, 3}, uniform(-50, 50)),
                   constant({}, kF32, values({0.03})), constant({}, values({0})),
                   constant({}, kF32, values({0.5})), constant({}, values({3})),
                   constant({3}, DType::kInt32, values({100, -50, 7}))},
        .attrs = attrs({{"kernel_shape", of_ints({3, 3})}, {"pads", of_ints({1, 1, 1, 1})}})}});
}

void register_spectral_cases() {
  // Signals' last dim: 1 (real) or 2 (complex).
  register_op_cases("DFT", {{.variant = "real", .inputs = {input({2, 8, 1})}},
                            {.variant = "real_onesided",
                             .inputs = {input({2, 8, 1})},
                             .attrs = attrs({{"onesided", of_int(1)}})},
                            {.variant = "complex_inverse",
                             .inputs = {input({2, 8, 2})},
                             .attrs = attrs({{"inverse", of_int(1)}})},
                            {.variant = "zero_padded_length_axis0",
                             .inputs = {input({5, 3, 2}), i64({}, {8}), i64({}, {0})}}});
  register_op_cases("STFT", {{.variant = "windowed_onesided",
                              .inputs = {input({1, 16, 1}), i64({}, {4}), input({8})}},
                             {.variant = "complex_frame_length",
                              .inputs = {input({1, 16, 2}), i64({}, {4}), absent(), i64({}, {8})},
                              .attrs = attrs({{"onesided", of_int(0)}})}});
  // The edge frequencies are graph inputs (not value inputs), so the node is not folded.
  register_op_cases("MelWeightMatrix",
                    {{.inputs = {i64({}, {4}), i64({}, {16}), i64({}, {8000}),
                                 input({}, values({100})), input({}, values({3500}))}}});
}

void register_optimizer_cases() {
  // R (the dtype under test), T int64, then one optimized tensor's groups; accumulated squared
  // gradients (H) are non-negative.
  const CaseInput step = input({}, DType::kInt64, values({3}));
  const Fill squares = uniform(0, 1);
  register_op_cases("Adagrad", {{.inputs = {input({}, uniform(0.01, 0.1)), step, input({2, 3}),
                                            input({2, 3}), input({2, 3}, squares)},
                                 .outputs = 2,
                                 .attrs = attrs({{"decay_factor", of_float(0.1f)},
                                                 {"norm_coefficient", of_float(0.01f)}})}});
  register_op_cases("Adam", {{.inputs = {input({}, uniform(0.01, 0.1)), step, input({2, 3}),
                                         input({2, 3}), input({2, 3}), input({2, 3}, squares)},
                              .outputs = 3,
                              .attrs = attrs({{"alpha", of_float(0.9f)},
                                              {"beta", of_float(0.999f)},
                                              {"norm_coefficient", of_float(0.01f)}})}});
  std::vector<OpCase> momentum;
  for (const char* mode : {"standard", "nesterov"}) {
    momentum.push_back({.variant = mode,
                        .inputs = {input({}, uniform(0.01, 0.1)), step, input({2, 3}),
                                   input({2, 3}), input({2, 3})},
                        .outputs = 2,
                        .attrs = attrs({{"alpha", of_float(0.9f)},
                                        {"beta", of_float(0.1f)},
                                        {"norm_coefficient", of_float(0.01f)},
                                        {"mode", of_string(mode)}})});
  }
  register_op_cases("Momentum", std::move(momentum));
}

void register_ml_and_other_cases() {
  register_op_cases("ArrayFeatureExtractor",
                    {{.inputs = {input({2, 3, 4}), input({3}, DType::kInt64, uniform(0, 3))}}});
  register_op_cases("Det", {{.inputs = {input({2, 3, 3})}}});
  // Boxes as any two diagonal corners in [0, 1]; per-class limit 3, IoU 0.5, score above 0.2.
  register_op_cases(
      "NonMaxSuppression",
      {{.inputs = {input({1, 6, 4}, uniform(0, 1)), input({1, 2, 6}, kF32, uniform(0, 1)),
                   i64({1}, {3}), constant({1}, kF32, values({0.5})),
                   constant({1}, kF32, values({0.2}))}}});
}

[[maybe_unused]] const bool kRegistered = [] {
  register_quantization_cases();
  register_spectral_cases();
  register_optimizer_cases();
  register_ml_and_other_cases();
  return true;
}();

}  // namespace
}  // namespace kiln::conformance
