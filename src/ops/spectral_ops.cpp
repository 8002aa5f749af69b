// DFT (opset 20 form; the importer gives DFT-17 its `axis` attribute as input 2), STFT and
// MelWeightMatrix (opset 17). Inputs whose values decide output dims (dft_length, axis,
// frame_step, frame_length, num_mel_bins, MelWeightMatrix's dft_length) are scalars (or
// one-element vectors) of int32/int64; while a value is unknown the dims it decides are dynamic.
//   DFT(input [..., 1 or 2], dft_length?, axis?) -> [..., 2] (or [..., 1] for the inverse onesided)
//   STFT(signal [batch, length, 1 or 2], frame_step, window? [frame_length], frame_length?)
//     -> [batch, frames, bins, 2]
//   MelWeightMatrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz)
//     -> [dft_length / 2 + 1, num_mel_bins] of output_datatype
#include <optional>
#include <string_view>

#include "ops/nn_spectral.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;

// Fails unless input `index` (`what`) is an int32/int64 scalar or one-element vector; returns its
// value when known, nullopt when absent or unknown.
std::optional<int64_t> scalar_index(const InferContext& ctx, size_t index, std::string_view what) {
  if (!ctx.has_input(index)) return std::nullopt;
  const ValueInfo& info = ctx.input(index);
  if (info.dtype != DType::kInt32 && info.dtype != DType::kInt64) {
    ctx.fail("input ", index, " (", what, ") must be int32 or int64, got ", dtype_name(info.dtype));
  }
  const bool scalar = info.shape.empty() || (info.shape.size() == 1 &&
                                             (info.shape[0] == 1 || info.shape[0] == kDynamicDim));
  if (!scalar)
    ctx.fail("input ", index, " (", what, ") must be a scalar, got shape ",
             shape_to_string(info.shape));
  if (!info.value) return std::nullopt;
  if (info.value->numel() != 1) {
    ctx.fail("input ", index, " (", what, ") must hold one value, got shape ",
             shape_to_string(info.value->shape));
  }
  return read_index(view_of(*info.value), 0);
}

void require_float_data(const InferContext& ctx, size_t index, std::string_view what) {
  const DType dtype = ctx.input(index).dtype;
  if (!nn::is_float_compute_dtype(dtype) && dtype != DType::kFloat64) {
    nn::fail_at(label_of(ctx), ErrorCode::kUnsupported, "input ", index, " (", what, ") has dtype ",
                dtype_name(dtype), "; supported: float32, float16, bfloat16, float64");
  }
}

void infer_dft(InferContext& ctx) {
  require_float_data(ctx, 0, "input");
  const std::optional<int64_t> length = scalar_index(ctx, 1, "dft_length");
  std::optional<int64_t> axis = -2;  // opset 20's default
  if (ctx.has_input(2)) {
    axis = scalar_index(ctx, 2, "axis");
    if (ctx.input(2).dtype != DType::kInt64)
      ctx.fail("input 2 (axis) must be int64, got ", dtype_name(ctx.input(2).dtype));
  }
  const nn::DftGeometry g = nn::resolve_dft(label_of(ctx), ctx.attrs(), ctx.input(0).shape, length,
                                            ctx.has_input(1), axis);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = g.output;
}

void infer_stft(InferContext& ctx) {
  require_float_data(ctx, 0, "signal");
  if (ctx.has_input(2)) nn::require_same_dtype(ctx, 2, "window");
  const std::optional<int64_t> step = scalar_index(ctx, 1, "frame_step");
  const std::optional<int64_t> frame_length = scalar_index(ctx, 3, "frame_length");
  const Shape* window = ctx.has_input(2) ? &ctx.input(2).shape : nullptr;
  const nn::StftGeometry g = nn::resolve_stft(label_of(ctx), ctx.attrs(), ctx.input(0).shape,
                                              window, step, frame_length, ctx.has_input(3));
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = g.output;
}

void infer_mel_weight_matrix(InferContext& ctx) {
  const std::optional<int64_t> bins = scalar_index(ctx, 0, "num_mel_bins");
  const std::optional<int64_t> dft_length = scalar_index(ctx, 1, "dft_length");
  scalar_index(ctx, 2, "sample_rate");
  static constexpr std::string_view kNames[] = {"num_mel_bins", "dft_length", "sample_rate"};
  for (size_t i = 1; i < 3; ++i) {
    if (ctx.input(i).dtype != ctx.input(0).dtype) {
      ctx.fail("input ", i, " (", kNames[i], ") has dtype ", dtype_name(ctx.input(i).dtype),
               " but input 0 (num_mel_bins) has ", dtype_name(ctx.input(0).dtype));
    }
  }
  require_float_data(ctx, 3, "lower_edge_hertz");
  require_float_data(ctx, 4, "upper_edge_hertz");
  for (size_t i = 3; i < 5; ++i) {
    const Shape& shape = ctx.input(i).shape;
    if (!shape.empty() && !(shape.size() == 1 && (shape[0] == 1 || shape[0] == kDynamicDim))) {
      ctx.fail("input ", i, " (", i == 3 ? "lower_edge_hertz" : "upper_edge_hertz",
               ") must be a scalar, got shape ", shape_to_string(shape));
    }
  }
  if (ctx.input(4).dtype != ctx.input(3).dtype) {
    ctx.fail("input 4 (upper_edge_hertz) has dtype ", dtype_name(ctx.input(4).dtype),
             " but input 3 (lower_edge_hertz) has ", dtype_name(ctx.input(3).dtype));
  }
  ctx.output(0).dtype = nn::mel_output_dtype(label_of(ctx), ctx.attrs());
  ctx.output(0).shape = nn::mel_output_shape(label_of(ctx), bins, dft_length);
}

}  // namespace

void register_spectral_ops(OpRegistry& registry) {
  registry.add(OpDef{"DFT", 1, 3, 1, 1, {1, 2}, &nn::infer_with_node_errors<infer_dft>});
  registry.add(OpDef{"STFT", 2, 4, 1, 1, {1, 3}, &nn::infer_with_node_errors<infer_stft>});
  registry.add(OpDef{
      "MelWeightMatrix", 5, 5, 1, 1, {0, 1}, &nn::infer_with_node_errors<infer_mel_weight_matrix>});
}

}  // namespace kiln::ops
