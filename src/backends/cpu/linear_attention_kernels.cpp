// LinearAttention on the CPU (see ops/linear_attention.hpp): the recurrence token by token, per
// (batch, KV head), the state kept in float32 as ONNX's reference keeps it; float16 and bfloat16
// tensors arrive converted. Query heads h * group .. h * group + group - 1 read KV head h's state.
#include <cmath>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/linear_attention.hpp"

namespace kiln::cpu {
namespace {

void linear_attention_kernel(KernelContext& ctx) {
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    if (ctx.has_input(i)) nn::require_float32_input(ctx, i);
  }
  auto shape_of = [&](size_t i) { return ctx.has_input(i) ? &ctx.inputs[i].shape : nullptr; };
  const ops::nn::LinearAttentionGeometry g = ops::nn::resolve_linear_attention(
      nn::label_of(ctx), ctx.attrs, ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.inputs[2].shape,
      shape_of(3), shape_of(4), shape_of(5));
  nn::require_float32_output(ctx, 0);
  nn::require_output_shape(ctx, 0, g.output);
  const bool writes_state = ctx.outputs.size() > 1;
  if (writes_state) {
    nn::require_float32_output(ctx, 1);
    nn::require_output_shape(ctx, 1, g.state);
  }
  const int64_t dk = g.key_size, dv = g.value_size;
  const int64_t group = g.q_heads / g.kv_heads;
  const float* query = ctx.inputs[0].as<const float>();
  const float* key = ctx.inputs[1].as<const float>();
  const float* value = ctx.inputs[2].as<const float>();
  const float* past = ctx.has_input(3) ? ctx.inputs[3].as<const float>() : nullptr;
  const float* decay = g.gated ? ctx.inputs[4].as<const float>() : nullptr;
  const float* beta = g.delta ? ctx.inputs[5].as<const float>() : nullptr;
  float* out = ctx.outputs[0].as<float>();
  const int64_t decay_width = g.decay_per_key ? g.kv_heads * dk : g.kv_heads;
  const int64_t beta_width = g.beta_per_head ? g.kv_heads : 1;

  std::vector<float> state(static_cast<size_t>(dk * dv));
  std::vector<float> update(static_cast<size_t>(dv));
  for (int64_t b = 0; b < g.batch; ++b) {
    for (int64_t h = 0; h < g.kv_heads; ++h) {
      const int64_t state_offset = (b * g.kv_heads + h) * dk * dv;
      for (int64_t i = 0; i < dk * dv; ++i) {
        state[static_cast<size_t>(i)] = past ? past[state_offset + i] : 0.0f;
      }
      for (int64_t t = 0; t < g.tokens; ++t) {
        const int64_t token = b * g.tokens + t;
        const float* k = key + (token * g.kv_heads + h) * dk;
        const float* v = value + (token * g.kv_heads + h) * dv;
        if (g.gated) {
          const float* gate = decay + token * decay_width + (g.decay_per_key ? h * dk : h);
          for (int64_t d = 0; d < dk; ++d) {
            const float factor = std::exp(gate[g.decay_per_key ? d : 0]);
            for (int64_t m = 0; m < dv; ++m) state[static_cast<size_t>(d * dv + m)] *= factor;
          }
        }
        for (int64_t m = 0; m < dv; ++m) update[static_cast<size_t>(m)] = v[m];
        if (g.delta) {
          // v <- beta * (v - S^T k): the value the state already holds for k is replaced.
          const float rate = beta[token * beta_width + (g.beta_per_head ? h : 0)];
          for (int64_t m = 0; m < dv; ++m) {
            float retrieved = 0.0f;
            for (int64_t d = 0; d < dk; ++d)
              retrieved += state[static_cast<size_t>(d * dv + m)] * k[d];
            update[static_cast<size_t>(m)] = rate * (v[m] - retrieved);
          }
        }
        for (int64_t d = 0; d < dk; ++d) {
          for (int64_t m = 0; m < dv; ++m) {
            state[static_cast<size_t>(d * dv + m)] += k[d] * update[static_cast<size_t>(m)];
          }
        }
        for (int64_t qh = h * group; qh < (h + 1) * group; ++qh) {
          const float* q = query + (token * g.q_heads + qh) * dk;
          float* o = out + (token * g.q_heads + qh) * dv;
          for (int64_t m = 0; m < dv; ++m) {
            float sum = 0.0f;
            for (int64_t d = 0; d < dk; ++d) sum += q[d] * state[static_cast<size_t>(d * dv + m)];
            o[m] = g.scale * sum;
          }
        }
      }
      if (writes_state) {
        float* present = ctx.outputs[1].as<float>() + state_offset;
        for (int64_t i = 0; i < dk * dv; ++i) present[i] = state[static_cast<size_t>(i)];
      }
    }
  }
}

}  // namespace

void register_linear_attention_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<linear_attention_kernel>(registry, "LinearAttention");
}

}  // namespace kiln::cpu
