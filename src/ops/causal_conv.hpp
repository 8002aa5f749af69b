// CausalConvWithState (opset 27): a depthwise 1-D convolution that sees each position and the
// k - 1 before it, those before the input coming from past_state (zeros when absent); the last
// k - 1 positions of that padded sequence become present_state. The geometry is resolved once for
// the infer function (dims may be dynamic) and the CPU kernel.
//   input [B, C, L], weight [C, 1, k], bias? [C], past_state? [B, C, k - 1]
//     -> output [B, C, L], present_state [B, C, k - 1]
#pragma once

#include <cstdint>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

struct CausalConvGeometry {
  int64_t batch = 0;     // B (kDynamicDim when unknown, in inference only)
  int64_t channels = 0;  // C
  int64_t length = 0;    // L
  int64_t kernel = 0;    // k
  bool silu = false;     // activation 'silu' or 'swish': y * sigmoid(y)
  Shape state;           // [B, C, k - 1]
};

// Needs the shapes of input, weight and of bias and past_state (nullptr when absent). Fails
// (kInvalidArgument naming the node, the input or attribute, expected and got) for activation
// outside none/silu/swish, input not 3-D, weight not [C, 1, k] with k >= 1, bias not [C],
// past_state not [B, C, k - 1]. Known dims are checked; dynamic ones are left to the kernel's
// call, where every dim is known.
CausalConvGeometry resolve_causal_conv(const NodeLabel& node, const AttributeMap& attrs,
                                       const Shape& input, const Shape& weight, const Shape* bias,
                                       const Shape* past_state);

}  // namespace kiln::ops::nn
