// ONNX Attention on the CPU: the reference for the builder's lowering (passes/attention_lowering)
// and for FusedAttention on the forms the lowering fuses. Follows ops/onnx_attention.hpp step by
// step per (batch, q head, query row): dot products and softmax sums in double, the fully-masked
// row guard decided on the additive bias as the ONNX reference does.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "ops/onnx_attention.hpp"

namespace kiln::cpu {
namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// Element offsets of rows of Q, K/V (and the past) and Y in their rank-3 or rank-4 layouts.
struct Rows {
  const ops::OnnxAttentionGeometry& g;

  // Q row (b, h, i): rank 4 [B, Hq, Sq, D], rank 3 [B, Sq, Hq·D].
  int64_t q(int64_t b, int64_t h, int64_t i) const {
    return g.rank3 ? (b * g.q_length + i) * g.q_heads * g.head_size + h * g.head_size
                   : ((b * g.q_heads + h) * g.q_length + i) * g.head_size;
  }
  // Row j of the new keys or values (feature size `width`).
  int64_t kv(int64_t b, int64_t h, int64_t j, int64_t width) const {
    return g.rank3 ? (b * g.kv_length + j) * g.kv_heads * width + h * width
                   : ((b * g.kv_heads + h) * g.kv_length + j) * width;
  }
  // Row j of a [B, Hkv, length, width] tensor (past or present).
  static int64_t cache(int64_t b, int64_t h, int64_t j, int64_t heads, int64_t length,
                       int64_t width) {
    return ((b * heads + h) * length + j) * width;
  }
  int64_t y(int64_t b, int64_t h, int64_t i) const {
    return g.rank3 ? (b * g.q_length + i) * g.q_heads * g.v_head_size + h * g.v_head_size
                   : ((b * g.q_heads + h) * g.q_length + i) * g.v_head_size;
  }
};

void onnx_attention_kernel(KernelContext& ctx) {
  const std::string label = "node '" + std::string(ctx.node_name) + "' (Attention)";
  ops::OnnxAttentionInput described[7];
  const size_t count = std::min<size_t>(ctx.inputs.size(), 7);
  for (size_t i = 0; i < count; ++i)
    described[i] = {ctx.has_input(i), ctx.inputs[i].dtype, ctx.inputs[i].shape};
  const ops::OnnxAttentionGeometry g =
      ops::resolve_onnx_attention(label, ctx.attrs, described, count);
  const Rows rows{g};
  const float* q = ctx.inputs[0].as<const float>();
  const float* k = ctx.inputs[1].as<const float>();
  const float* v = ctx.inputs[2].as<const float>();
  const float* past_k = g.has_past ? ctx.inputs[4].as<const float>() : nullptr;
  const float* past_v = g.has_past ? ctx.inputs[5].as<const float>() : nullptr;
  const void* mask = g.has_mask ? ctx.inputs[3].data : nullptr;
  float* y = ctx.outputs[0].as<float>();
  float* present_k = ctx.outputs.size() > 1 ? ctx.outputs[1].as<float>() : nullptr;
  float* present_v = ctx.outputs.size() > 2 ? ctx.outputs[2].as<float>() : nullptr;
  float* qk_out = ctx.outputs.size() > 3 ? ctx.outputs[3].as<float>() : nullptr;
  const int64_t T = g.total_length, P = g.past_length;
  const int64_t group = g.q_heads / g.kv_heads;
  const int64_t* nonpad = g.has_nonpad ? ctx.inputs[6].as<const int64_t>() : nullptr;
  const bool windowed = g.left_window >= 0 || g.right_window >= 0;

  // Key and value rows j of kv head h: the past first, then the new ones.
  const auto key = [&](int64_t b, int64_t h, int64_t j) {
    return j < P ? past_k + Rows::cache(b, h, j, g.kv_heads, P, g.head_size)
                 : k + rows.kv(b, h, j - P, g.head_size);
  };
  const auto value = [&](int64_t b, int64_t h, int64_t j) {
    return j < P ? past_v + Rows::cache(b, h, j, g.kv_heads, P, g.v_head_size)
                 : v + rows.kv(b, h, j - P, g.v_head_size);
  };
  for (int64_t b = 0; b < g.batch; ++b) {
    for (int64_t h = 0; h < g.kv_heads; ++h) {
      for (int64_t j = 0; j < T; ++j) {
        if (present_k != nullptr) {
          std::copy_n(key(b, h, j), g.head_size,
                      present_k + Rows::cache(b, h, j, g.kv_heads, T, g.head_size));
        }
        if (present_v != nullptr) {
          std::copy_n(value(b, h, j), g.v_head_size,
                      present_v + Rows::cache(b, h, j, g.kv_heads, T, g.v_head_size));
        }
      }
    }
  }

  std::vector<float> scores(static_cast<size_t>(T));
  std::vector<double> out(static_cast<size_t>(g.v_head_size));
  for (int64_t b = 0; b < g.batch; ++b) {
    // Where this batch's queries sit among the keys: after the past, or with nonpad_kv_seqlen
    // (a static cache holding nonpad[b] valid keys) ending at its last valid key.
    const int64_t offset = nonpad != nullptr ? nonpad[b] - g.q_length : P;
    for (int64_t h = 0; h < g.q_heads; ++h) {
      const int64_t kv_head = h / group;
      for (int64_t i = 0; i < g.q_length; ++i) {
        const float* qi = q + rows.q(b, h, i);
        float* qk_row =
            qk_out == nullptr ? nullptr : qk_out + ((b * g.q_heads + h) * g.q_length + i) * T;
        bool all_masked = g.has_mask || g.causal || windowed || nonpad != nullptr;
        float maximum = kMinusInfinity;
        for (int64_t j = 0; j < T; ++j) {
          const float* kj = key(b, kv_head, j);
          double dot = 0.0;
          for (int64_t d = 0; d < g.head_size; ++d) dot += static_cast<double>(qi[d]) * kj[d];
          float s = static_cast<float>(dot * g.scale);
          if (qk_row != nullptr && g.qk_output_mode == 0) qk_row[j] = s;
          if (g.softcap > 0.0f) s = g.softcap * std::tanh(s / g.softcap);
          if (qk_row != nullptr && g.qk_output_mode == 1) qk_row[j] = s;
          float add = 0.0f;
          if (mask != nullptr && g.mask_keys != kDynamicDim && j >= g.mask_keys) {
            add = kMinusInfinity;  // past the end of a mask shorter than the keys
          } else if (mask != nullptr) {
            const int64_t at = b * g.mask_strides[0] + h * g.mask_strides[1] +
                               i * g.mask_strides[2] + j * g.mask_strides[3];
            add = g.mask_is_bool
                      ? (static_cast<const uint8_t*>(mask)[at] != 0 ? 0.0f : kMinusInfinity)
                      : static_cast<const float*>(mask)[at];
          }
          const int64_t before = i + offset - j;  // > 0: key j precedes the query's position
          if (g.causal && before < 0) add += kMinusInfinity;
          if ((g.left_window >= 0 && before > g.left_window) || (g.right_window >= 0 && -before > g.right_window)) {
            add += kMinusInfinity;
          }
          if (nonpad != nullptr && j >= nonpad[b]) add += kMinusInfinity;
          all_masked = all_masked && add == kMinusInfinity;
          s += add;
          if (qk_row != nullptr && g.qk_output_mode == 2) qk_row[j] = s;
          scores[static_cast<size_t>(j)] = s;
          maximum = s > maximum ? s : maximum;
        }
        double total = 0.0;
        for (int64_t j = 0; j < T; ++j) {
          float& s = scores[static_cast<size_t>(j)];
          s = all_masked ? 0.0f : std::exp(s - maximum);
          total += s;
        }
        std::fill(out.begin(), out.end(), 0.0);
        for (int64_t j = 0; j < T; ++j) {
          const float p =
              all_masked ? 0.0f : static_cast<float>(scores[static_cast<size_t>(j)] / total);
          if (qk_row != nullptr && g.qk_output_mode == 3) qk_row[j] = p;
          const float* vj = value(b, kv_head, j);
          for (int64_t d = 0; d < g.v_head_size; ++d)
            out[static_cast<size_t>(d)] += static_cast<double>(p) * vj[d];
        }
        float* yi = y + rows.y(b, h, i);
        for (int64_t d = 0; d < g.v_head_size; ++d)
          yi[d] = static_cast<float>(out[static_cast<size_t>(d)]);
      }
    }
  }
}

}  // namespace

void register_onnx_attention_kernels(CpuKernelRegistry& registry) {
  registry.add("Attention", CpuKernel{onnx_attention_kernel, true});
}

}  // namespace kiln::cpu
