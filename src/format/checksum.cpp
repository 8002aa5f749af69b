#include "format/checksum.hpp"

// XXH64 from the xxHash library, compiled into the runtime (XXH_INLINE_ALL: the header holds the
// whole implementation, so the runtime gains no library to load).
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kiln::format {

uint64_t xxh64(std::span<const uint8_t> data, uint64_t seed) {
  return XXH64(data.data(), data.size(), seed);
}

}  // namespace kiln::format
