// Liveness-based placement of tensors in one arena. Used by the builder (the engine's static plan)
// and by the runtime (re-planning when dynamic dimensions change sizes).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kiln {

struct BufferRequest {
  uint64_t size = 0;       // bytes; 0 needs no space
  int32_t first_use = 0;   // index of the step that writes it
  int32_t last_use = 0;    // index of the last step that reads it (>= first_use)
};

struct ArenaPlan {
  std::vector<uint64_t> offsets;  // one per request, multiples of `alignment`
  uint64_t total_size = 0;
};

// Places every request so that two requests whose [first_use, last_use] intervals intersect never
// overlap in memory. Greedy: largest first, each at the lowest aligned offset that fits.
// `alignment` must be a power of two. Throws kInvalidArgument when an aligned size or an offset
// would not fit in 64 bits (callers check sizes against their memory limit first).
ArenaPlan plan_arena(std::span<const BufferRequest> requests, uint64_t alignment);

}  // namespace kiln
