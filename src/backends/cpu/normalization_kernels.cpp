// BatchNormalization (inference), LayerNormalization and LRN on the CPU; statistics in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/simd_math.hpp"

namespace kiln::cpu {
namespace {

void batch_norm_kernel(KernelContext& ctx) {
  if (ctx.attrs.get_int_or("training_mode", 0) != 0) {
    ctx.fail(ErrorCode::kUnsupported, "training_mode=1 is not supported");
  }
  if (ctx.outputs.size() != 1) {
    ctx.fail(ErrorCode::kUnsupported, "only output 0 (Y) is supported, got ", ctx.outputs.size(),
             " outputs");
  }
  for (size_t i = 0; i < 5; ++i) nn::require_float32_input(ctx, i);
  nn::require_float32_output(ctx, 0);
  const TensorView& x = ctx.inputs[0];
  if (x.shape.size() < 2) {
    ctx.fail(ErrorCode::kInvalidArgument, "X must have rank >= 2, got ", shape_to_string(x.shape));
  }
  const int64_t channels = x.shape[1];
  for (size_t i = 1; i < 5; ++i) {
    if (ctx.inputs[i].numel() != channels) {
      ctx.fail(ErrorCode::kInvalidArgument, "input ", i, " must have ", channels,
               " elements, got shape ", shape_to_string(ctx.inputs[i].shape));
    }
  }
  nn::require_output_shape(ctx, 0, x.shape);
  const double epsilon = ctx.attrs.get_float_or("epsilon", 1e-5f);
  const float* scale = ctx.inputs[1].as<const float>();
  const float* bias = ctx.inputs[2].as<const float>();
  const float* mean = ctx.inputs[3].as<const float>();
  const float* var = ctx.inputs[4].as<const float>();
  // y = x * multiplier + offset, per channel.
  std::vector<float> multiplier(static_cast<size_t>(channels));
  std::vector<float> offset(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    const double m = scale[c] / std::sqrt(static_cast<double>(var[c]) + epsilon);
    multiplier[static_cast<size_t>(c)] = static_cast<float>(m);
    offset[static_cast<size_t>(c)] = static_cast<float>(bias[c] - mean[c] * m);
  }
  const int64_t batch = x.shape[0];
  const int64_t inner = x.numel() / std::max<int64_t>(1, batch * channels);
  const float* in = x.as<const float>();
  float* out = ctx.outputs[0].as<float>();
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const float m = multiplier[static_cast<size_t>(c)];
      const float o = offset[static_cast<size_t>(c)];
      const int64_t base = (n * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) out[base + i] = in[base + i] * m + o;
    }
  }
}

// Scale/B broadcast (trailing-aligned) to the normalized shape, flattened.
std::vector<float> expand_to_normalized(const KernelContext& ctx, const TensorView& t,
                                        const Shape& normalized) {
  const int64_t size = shape_numel(normalized);
  std::vector<float> out(static_cast<size_t>(size));
  if (t.shape.size() > normalized.size()) {
    ctx.fail(ErrorCode::kInvalidArgument, "shape ", shape_to_string(t.shape),
             " does not broadcast to the normalized shape ", shape_to_string(normalized));
  }
  const size_t lead = normalized.size() - t.shape.size();
  std::vector<int64_t> strides(normalized.size(), 0);
  int64_t stride = 1;
  for (size_t i = normalized.size(); i-- > lead;) {
    const int64_t dim = t.shape[i - lead];
    if (dim != 1 && dim != normalized[i]) {
      ctx.fail(ErrorCode::kInvalidArgument, "shape ", shape_to_string(t.shape),
               " does not broadcast to the normalized shape ", shape_to_string(normalized));
    }
    strides[i] = dim == 1 ? 0 : stride;
    stride *= dim;
  }
  const float* data = t.as<const float>();
  std::vector<int64_t> index(normalized.size(), 0);
  for (int64_t flat = 0; flat < size; ++flat) {
    int64_t offset = 0;
    for (size_t i = 0; i < index.size(); ++i) offset += index[i] * strides[i];
    out[static_cast<size_t>(flat)] = data[offset];
    for (size_t i = index.size(); i-- > 0;) {
      if (++index[i] < normalized[i]) break;
      index[i] = 0;
    }
  }
  return out;
}

void layer_norm_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_input(ctx, 1);
  for (size_t i = 0; i < ctx.outputs.size(); ++i) nn::require_float32_output(ctx, i);
  const TensorView& x = ctx.inputs[0];
  const auto rank = static_cast<int64_t>(x.shape.size());
  int64_t axis = ctx.attrs.get_int_or("axis", -1);
  if (rank == 0 || axis < -rank || axis >= rank) {
    ctx.fail(ErrorCode::kInvalidArgument, "axis ", axis, " is out of range for X ",
             shape_to_string(x.shape));
  }
  if (axis < 0) axis += rank;
  const double epsilon = ctx.attrs.get_float_or("epsilon", 1e-5f);
  const Shape normalized(x.shape.begin() + axis, x.shape.end());
  const std::vector<float> scale = expand_to_normalized(ctx, ctx.inputs[1], normalized);
  std::vector<float> bias;
  if (ctx.has_input(2)) {
    nn::require_float32_input(ctx, 2);
    bias = expand_to_normalized(ctx, ctx.inputs[2], normalized);
  }
  nn::require_output_shape(ctx, 0, x.shape);
  Shape stats_shape = x.shape;
  for (auto i = static_cast<size_t>(axis); i < stats_shape.size(); ++i) stats_shape[i] = 1;
  for (size_t i = 1; i < ctx.outputs.size(); ++i) nn::require_output_shape(ctx, i, stats_shape);

  const int64_t inner = shape_numel(normalized);
  const int64_t outer = shape_numel(Shape(x.shape.begin(), x.shape.begin() + axis));
  const float* in = x.as<const float>();
  // The builder's residual fusion: normalize X + input 3.
  std::vector<float> summed;
  if (ctx.has_input(3)) {
    nn::require_float32_input(ctx, 3);
    if (ctx.inputs[3].shape != x.shape) {
      ctx.fail(ErrorCode::kInvalidArgument, "residual ", shape_to_string(ctx.inputs[3].shape), " does not match X ",
               shape_to_string(x.shape));
    }
    const float* residual = ctx.inputs[3].as<const float>();
    summed.resize(static_cast<size_t>(x.numel()));
    simd::add(in, residual, summed.data(), x.numel());
    in = summed.data();
  }
  float* out = ctx.outputs[0].as<float>();
  float* mean_out =
      ctx.outputs.size() > 1 && ctx.outputs[1].data ? ctx.outputs[1].as<float>() : nullptr;
  float* inv_std_out =
      ctx.outputs.size() > 2 && ctx.outputs[2].data ? ctx.outputs[2].as<float>() : nullptr;
  if (simd::level() != simd::Level::kScalar && inner > 0) {
    // The vector loops, rows over the context's threads: statistics in double as below, the
    // normalisation itself in float (within a few ulp of the double formula).
    parallel_chunks(outer, std::max<int64_t>(1, (int64_t{1} << 14) / inner), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const float* xr = in + row * inner;
        const double mean = simd::sum(xr, inner) / static_cast<double>(inner);
        const double variance = simd::sum_squared_deviations(xr, mean, inner) / static_cast<double>(inner);
        const double inv_std = 1.0 / std::sqrt(variance + epsilon);
        simd::normalize_row(xr, static_cast<float>(mean), static_cast<float>(inv_std), scale.data(),
                            bias.empty() ? nullptr : bias.data(), out + row * inner, inner);
        if (mean_out) mean_out[row] = static_cast<float>(mean);
        if (inv_std_out) inv_std_out[row] = static_cast<float>(inv_std);
      }
    });
    return;
  }
  for (int64_t row = 0; row < outer; ++row) {
    const float* xr = in + row * inner;
    float* yr = out + row * inner;
    double sum = 0.0;
    for (int64_t i = 0; i < inner; ++i) sum += xr[i];
    const double mean = inner > 0 ? sum / static_cast<double>(inner) : 0.0;
    double squares = 0.0;
    for (int64_t i = 0; i < inner; ++i) squares += (xr[i] - mean) * (xr[i] - mean);
    const double variance = inner > 0 ? squares / static_cast<double>(inner) : 0.0;
    const double inv_std = 1.0 / std::sqrt(variance + epsilon);
    for (int64_t i = 0; i < inner; ++i) {
      const auto j = static_cast<size_t>(i);
      const double normalized_value = (xr[i] - mean) * inv_std * scale[j];
      yr[i] = static_cast<float>(bias.empty() ? normalized_value : normalized_value + bias[j]);
    }
    if (mean_out) mean_out[row] = static_cast<float>(mean);
    if (inv_std_out) inv_std_out[row] = static_cast<float>(inv_std);
  }
}

}  // namespace

// LRN: y = x / (bias + alpha / size * sum of x^2 over the channels c - floor((size - 1) / 2) ..
// c + ceil((size - 1) / 2) that exist)^beta, at every position of the other axes.
void lrn_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_output(ctx, 0);
  const TensorView& x = ctx.inputs[0];
  if (x.shape.size() < 3) ctx.fail(ErrorCode::kInvalidArgument, "X must have rank >= 3, got ", shape_to_string(x.shape));
  const int64_t size = ctx.attrs.get_int("size");
  if (size < 1) ctx.fail(ErrorCode::kInvalidArgument, "attribute 'size' must be >= 1, got ", size);
  const double alpha = ctx.attrs.get_float_or("alpha", 1e-4f);
  const double beta = ctx.attrs.get_float_or("beta", 0.75f);
  const double bias = ctx.attrs.get_float_or("bias", 1.0f);
  nn::require_output_shape(ctx, 0, x.shape);
  const int64_t batch = x.shape[0], channels = x.shape[1];
  const int64_t spatial = shape_numel(Shape(x.shape.begin() + 2, x.shape.end()));
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  const float* in = x.as<const float>();
  float* out = ctx.outputs[0].as<float>();
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t first = std::max<int64_t>(0, c - before), last = std::min(channels - 1, c + after);
      for (int64_t p = 0; p < spatial; ++p) {
        double sum = 0.0;
        for (int64_t k = first; k <= last; ++k) {
          const double v = in[(n * channels + k) * spatial + p];
          sum += v * v;
        }
        const int64_t at = (n * channels + c) * spatial + p;
        out[at] = static_cast<float>(in[at] / std::pow(bias + alpha / static_cast<double>(size) * sum, beta));
      }
    }
  }
}

void register_normalization_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<lrn_kernel>(registry, "LRN");
  nn::add_float_kernel<batch_norm_kernel>(registry, "BatchNormalization");
  nn::add_float_kernel<layer_norm_kernel>(registry, "LayerNormalization");
}

}  // namespace kiln::cpu
