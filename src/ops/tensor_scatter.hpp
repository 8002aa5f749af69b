// TensorScatter (opset 24): writes `update` into a copy of `past_cache` along the sequence axis,
// starting at each batch row's write index (0 when write_indices is absent); mode 'circular'
// wraps the positions modulo the cache's length. The geometry is resolved once for the infer
// function (dims may be dynamic) and the CPU kernel.
//   past_cache [B, ..., max_sequence, ...], update [B, ..., sequence, ...], write_indices? [B]
//     -> present_cache (past_cache's shape)
#pragma once

#include <cstdint>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

struct TensorScatterGeometry {
  size_t axis = 0;        // the sequence axis, normalised, >= 1
  bool circular = false;  // positions wrap modulo the cache's length; else they must fit
};

// Needs the shapes of past_cache, update and write_indices (nullptr when absent). Fails
// (kInvalidArgument naming the node, the input or attribute, expected and got) for mode outside
// linear/circular, past_cache of rank < 2, axis outside [-r, r) or naming the batch axis, update of
// another rank or other dims off the axis, an update longer than the cache on the axis, and
// write_indices not [B]. Known dims are checked; dynamic ones are left to the kernel's call.
TensorScatterGeometry resolve_tensor_scatter(const NodeLabel& node, const AttributeMap& attrs,
                                             const Shape& past_cache, const Shape& update,
                                             const Shape* write_indices);

}  // namespace kiln::ops::nn
