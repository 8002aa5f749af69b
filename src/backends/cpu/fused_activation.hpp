// The activations the builder fuses into a Conv (attribute kiln_activation, ops/conv_ops.cpp),
// applied by the CPU convolutions to their output: the reference element by element with the
// scalar table's formulas (ops/scalar_math.h), the fast path with the vector loops (simd_math.hpp)
// over the context's threads.
#pragma once

#include <cstdint>
#include <limits>

#include "backends/cpu/cpu_kernel.hpp"

namespace kiln::cpu {

struct FusedActivation {
  enum class Kind { kNone, kRelu, kClip, kSigmoid, kTanh, kHardSwish, kSilu };
  Kind kind = Kind::kNone;
  float low = -std::numeric_limits<float>::infinity();  // Clip's bounds
  float high = std::numeric_limits<float>::infinity();
};

// Reads kiln_activation (and Clip's kiln_clip_min / kiln_clip_max); throws kUnsupported naming
// the node for a name the CPU does not apply.
FusedActivation fused_activation_of(const KernelContext& ctx);

// y[i] = activation(y[i]) for i < n, element by element with the scalar table.
void apply_fused_activation_reference(const FusedActivation& activation, float* y, int64_t n);

// The same with the vector loops (Relu and Clip exact, Sigmoid, Tanh and Silu within a few ulp of
// the scalar table), split over the calling context's threads.
void apply_fused_activation(const FusedActivation& activation, float* y, int64_t n);

}  // namespace kiln::cpu
