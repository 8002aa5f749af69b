#include "backends/cpu/fused_activation.hpp"

#include <string>

#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/simd_math.hpp"
#include "ops/scalar_math.h"

namespace kiln::cpu {

FusedActivation fused_activation_of(const KernelContext& ctx) {
  FusedActivation a;
  const std::string name = ctx.attrs.get_string_or("kiln_activation", "");
  using Kind = FusedActivation::Kind;
  if (name.empty()) {
    a.kind = Kind::kNone;
  } else if (name == "Relu") {
    a.kind = Kind::kRelu;
  } else if (name == "Clip") {
    a.kind = Kind::kClip;
    if (ctx.attrs.has("kiln_clip_min")) a.low = ctx.attrs.get_float("kiln_clip_min");
    if (ctx.attrs.has("kiln_clip_max")) a.high = ctx.attrs.get_float("kiln_clip_max");
  } else if (name == "Sigmoid") {
    a.kind = Kind::kSigmoid;
  } else if (name == "Tanh") {
    a.kind = Kind::kTanh;
  } else if (name == "HardSwish") {
    a.kind = Kind::kHardSwish;
  } else if (name == "Silu") {
    a.kind = Kind::kSilu;
  } else {
    ctx.fail(ErrorCode::kUnsupported, "fused activation '", name, "'");
  }
  return a;
}

void apply_fused_activation_reference(const FusedActivation& activation, float* y, int64_t n) {
  using Kind = FusedActivation::Kind;
  switch (activation.kind) {
    case Kind::kNone:
      return;
    case Kind::kRelu:
      // The scalar table's Relu, so NaN stays NaN as in a standalone Relu (and PyTorch, ONNX Runtime).
      for (int64_t i = 0; i < n; ++i) y[i] = kiln_relu<float>(y[i]);
      return;
    case Kind::kClip:
      for (int64_t i = 0; i < n; ++i) y[i] = kiln_clip<float>(y[i], activation.low, activation.high);
      return;
    case Kind::kSigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = kiln_sigmoid<float>(y[i]);
      return;
    case Kind::kTanh:
      for (int64_t i = 0; i < n; ++i) y[i] = kiln_tanh<float>(y[i]);
      return;
    case Kind::kHardSwish:
      for (int64_t i = 0; i < n; ++i) y[i] = kiln_hard_swish<float>(y[i]);
      return;
    case Kind::kSilu:
      for (int64_t i = 0; i < n; ++i) y[i] = kiln_mul<float>(y[i], kiln_sigmoid<float>(y[i]));
      return;
  }
}

void apply_fused_activation(const FusedActivation& activation, float* y, int64_t n) {
  using Kind = FusedActivation::Kind;
  if (activation.kind == Kind::kNone || n <= 0) return;
  if (simd::level() == simd::Level::kScalar) {
    apply_fused_activation_reference(activation, y, n);
    return;
  }
  parallel_chunks(n, int64_t{1} << 15, [&](int64_t begin, int64_t end) {
    float* part = y + begin;
    const int64_t count = end - begin;
    switch (activation.kind) {
      case Kind::kRelu:
        return simd::clip(part, 0.0f, std::numeric_limits<float>::infinity(), part, count);
      case Kind::kClip:
        return simd::clip(part, activation.low, activation.high, part, count);
      case Kind::kSigmoid:
        return simd::unary(simd::Unary::kSigmoid, part, part, count);
      case Kind::kTanh:
        return simd::unary(simd::Unary::kTanh, part, part, count);
      case Kind::kSilu:
        return simd::unary(simd::Unary::kSilu, part, part, count);
      default:
        return apply_fused_activation_reference(activation, part, count);
    }
  });
}

}  // namespace kiln::cpu
