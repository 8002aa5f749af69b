// The engine file checksum: XXH64 (the xxHash library's, compiled in from its header: the runtime
// loads no third-party library for it). Fast (several GB/s), so verifying a large weights blob
// costs little at load time.
#pragma once

#include <cstdint>
#include <span>

namespace kiln::format {

// XXH64 of `data` with `seed`, bit-exact with the reference xxHash algorithm (so external tools
// can recompute an engine's checksum).
uint64_t xxh64(std::span<const uint8_t> data, uint64_t seed = 0);

}  // namespace kiln::format
