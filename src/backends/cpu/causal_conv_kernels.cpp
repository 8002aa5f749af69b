// CausalConvWithState on the CPU (see ops/causal_conv.hpp), in float32: float16 and bfloat16
// tensors arrive converted. Position l of the padded sequence [past_state or zeros, input] is
// read through `padded_at`, so the concatenation is never built.
#include <cmath>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/causal_conv.hpp"

namespace kiln::cpu {
namespace {

void causal_conv_kernel(KernelContext& ctx) {
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    if (ctx.has_input(i)) nn::require_float32_input(ctx, i);
  }
  auto shape_of = [&](size_t i) { return ctx.has_input(i) ? &ctx.inputs[i].shape : nullptr; };
  const ops::nn::CausalConvGeometry g =
      ops::nn::resolve_causal_conv(nn::label_of(ctx), ctx.attrs, ctx.inputs[0].shape,
                                   ctx.inputs[1].shape, shape_of(2), shape_of(3));
  nn::require_float32_output(ctx, 0);
  nn::require_output_shape(ctx, 0, ctx.inputs[0].shape);
  const bool writes_state = ctx.outputs.size() > 1;
  if (writes_state) {
    nn::require_float32_output(ctx, 1);
    nn::require_output_shape(ctx, 1, g.state);
  }
  const int64_t carry = g.kernel - 1;
  const float* input = ctx.inputs[0].as<const float>();
  const float* weight = ctx.inputs[1].as<const float>();
  const float* bias = ctx.has_input(2) ? ctx.inputs[2].as<const float>() : nullptr;
  const float* past = ctx.has_input(3) ? ctx.inputs[3].as<const float>() : nullptr;
  float* out = ctx.outputs[0].as<float>();
  float* present = writes_state ? ctx.outputs[1].as<float>() : nullptr;

  for (int64_t row = 0; row < g.batch * g.channels; ++row) {
    const int64_t c = row % g.channels;
    const float* x = input + row * g.length;
    const float* state = past ? past + row * carry : nullptr;
    const float* w = weight + c * g.kernel;
    // Padded position p: past_state (or zero) for p < k - 1, then the input.
    auto padded_at = [&](int64_t p) {
      if (p >= carry) return x[p - carry];
      return state ? state[p] : 0.0f;
    };
    for (int64_t l = 0; l < g.length; ++l) {
      float sum = bias ? bias[c] : 0.0f;
      for (int64_t j = 0; j < g.kernel; ++j) sum += w[j] * padded_at(l + j);
      out[row * g.length + l] = g.silu ? sum / (1.0f + std::exp(-sum)) : sum;
    }
    if (present) {
      for (int64_t j = 0; j < carry; ++j) present[row * carry + j] = padded_at(g.length + j);
    }
  }
}

}  // namespace

void register_causal_conv_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<causal_conv_kernel>(registry, "CausalConvWithState");
}

}  // namespace kiln::cpu
