// The memory a layer touches at run-time shapes, for the bandwidth column of the per-layer profile.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/context_state.hpp"

namespace kiln::detail {

// Bytes of layer `layer`'s input and output tensors (weights and shape tensors included, absent
// optional inputs not) at the shapes of `context`'s current plan, each distinct tensor once: a
// layer that reads x twice (Mul(x, x)) moves x once. Needs: `context.plan` planned for the
// profiled inputs (update_plan ran) and `layer` < the engine's layer count. Never throws.
uint64_t layer_bytes(const ContextState& context, size_t layer);

}  // namespace kiln::detail
