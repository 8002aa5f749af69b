// FusedAttention on the CPU, the reference for the CUDA kernel: for each (batch, head, query row)
// the scores, a max-subtracted softmax accumulated in double, the NaN guard and P · V, exactly as
// the unfused MatMul / Mul / Add / Softmax / IsNaN / Where / MatMul chain computes them. Q, K and V
// are read through the geometry's strides and offsets, so both the separate and the packed form run
// here.
#include <cmath>
#include <limits>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "ops/attention.hpp"

namespace kiln::cpu {
namespace {

void attention_kernel(KernelContext& ctx) {
  const std::string label = "node '" + std::string(ctx.node_name) + "' (FusedAttention)";
  const ops::AttentionGeometry g = ops::resolve_attention_inputs(label, ctx);
  if (ctx.outputs[0].numel() == 0) return;  // (an empty QKV may have null data: no offsets on it)
  // The packed form reads Q, K and V from input 0, each at its own offset.
  const float* q = ctx.inputs[0].as<const float>() + g.q_offset;
  const float* k = ctx.inputs[g.qkv_packed ? 0 : 1].as<const float>() + g.k_offset;
  const float* v = ctx.inputs[g.qkv_packed ? 0 : 2].as<const float>() + g.v_offset;
  const float* mask = ctx.has_input(3) ? ctx.inputs[3].as<const float>() : nullptr;
  float* out = ctx.outputs[0].as<float>();
  std::vector<float> scores(static_cast<size_t>(g.key_length));
  std::vector<double> row(static_cast<size_t>(g.value_dim));
  for (int64_t b = 0; b < g.batch; ++b) {
    for (int64_t h = 0; h < g.heads; ++h) {
      for (int64_t i = 0; i < g.query_length; ++i) {
        const float* qi = q + b * g.q_strides[0] + h * g.q_strides[1] + i * g.q_strides[2];
        float maximum = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < g.key_length; ++j) {
          const float* kj = k + b * g.k_strides[0] + h * g.k_strides[1] + j * g.k_strides[2];
          float dot = 0.0f;
          for (int64_t d = 0; d < g.head_dim; ++d)
            dot += qi[d * g.q_strides[3]] * kj[d * g.k_strides[3]];
          float s = dot * g.scale;
          if (mask != nullptr) {
            s += mask[b * g.mask_strides[0] + h * g.mask_strides[1] + i * g.mask_strides[2] +
                      j * g.mask_strides[3]];
          }
          scores[static_cast<size_t>(j)] = s;
          maximum = s > maximum ? s : maximum;  // a NaN never wins but poisons the sum below
        }
        double sum = 0.0;
        for (float& s : scores) {
          s = std::exp(s - maximum);
          sum += s;
        }
        const double inverse = 1.0 / sum;
        std::fill(row.begin(), row.end(), 0.0);
        for (int64_t j = 0; j < g.key_length; ++j) {
          float p = static_cast<float>(scores[static_cast<size_t>(j)] * inverse);
          if (g.nan_to_zero && std::isnan(p)) p = 0.0f;
          const float* vj = v + b * g.v_strides[0] + h * g.v_strides[1] + j * g.v_strides[2];
          for (int64_t d = 0; d < g.value_dim; ++d)
            row[static_cast<size_t>(d)] += p * vj[d * g.v_strides[3]];
        }
        float* oi = out + b * g.out_strides[0] + h * g.out_strides[1] + i * g.out_strides[2];
        for (int64_t d = 0; d < g.value_dim; ++d)
          oi[d * g.out_strides[3]] = static_cast<float>(row[static_cast<size_t>(d)]);
      }
    }
  }
}

}  // namespace

void register_attention_kernels(CpuKernelRegistry& registry) {
  registry.add("FusedAttention", CpuKernel{attention_kernel, true});
}

}  // namespace kiln::cpu
