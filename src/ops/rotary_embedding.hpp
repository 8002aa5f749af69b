// RotaryEmbedding (opset 23): rotates pairs of each head's first rotary_dim values by angles
// whose cosines and sines come from two caches, indexed by position_ids or given per token.
// The geometry is resolved once for the infer function (dims may be dynamic) and the CPU kernel.
//   X [B, H, S, D] (heads first) or [B, S, H * D] (num_heads attribute), cos/sin caches
//   [P, rotary_dim / 2] with position_ids [B, S], or [B, S, rotary_dim / 2] without.
#pragma once

#include <cstdint>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

struct RotaryGeometry {
  int64_t batch = 0;         // B (kDynamicDim when unknown, in inference only)
  int64_t heads = 0;         // H
  int64_t sequence = 0;      // S
  int64_t head_size = 0;     // D
  int64_t rotary_dim = 0;    // the leading values of each head that rotate (even, <= D)
  bool heads_first = false;  // X is [B, H, S, D]; else [B, S, H * D]
  bool interleaved = false;  // pairs (2i, 2i + 1); else (i, i + rotary_dim / 2)
};

// Needs X's, the caches' and position_ids' shapes (position_ids nullptr when absent). Fails
// (kInvalidArgument naming the node, the input or attribute, expected and got) for X not 3-D or
// 4-D, a 3-D X without num_heads > 0 or whose hidden size num_heads does not divide, num_heads
// other than H for a 4-D X, rotary_embedding_dim negative, odd or past the head size, interleaved
// not 0 or 1, position_ids not [B, S], caches of other shapes than the header says. Known dims
// are checked; dynamic ones are left to the kernel's call, where every dim is known.
RotaryGeometry resolve_rotary(const NodeLabel& node, const AttributeMap& attrs, const Shape& x,
                              const Shape& cos_cache, const Shape& sin_cache,
                              const Shape* position_ids);

}  // namespace kiln::ops::nn
