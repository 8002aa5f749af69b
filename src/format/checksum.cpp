#include "format/checksum.hpp"

#include <bit>

namespace kiln::format {
namespace {

// The five primes of the xxHash64 specification.
constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

// Little-endian loads written with shifts so that the result does not depend on the host's order.
uint64_t load_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

uint64_t round_step(uint64_t acc, uint64_t lane) {
  acc += lane * kPrime2;
  acc = std::rotl(acc, 31);
  return acc * kPrime1;
}

uint64_t merge_accumulator(uint64_t hash, uint64_t acc) {
  hash ^= round_step(0, acc);
  return hash * kPrime1 + kPrime4;
}

}  // namespace

uint64_t xxh64(std::span<const uint8_t> data, uint64_t seed) {
  const uint8_t* p = data.data();
  const size_t size = data.size();
  const uint8_t* const end = p + size;
  uint64_t hash;

  if (size >= 32) {
    // Four independent lanes over 32-byte stripes, then folded together.
    uint64_t acc[4] = {seed + kPrime1 + kPrime2, seed + kPrime2, seed, seed - kPrime1};
    const uint8_t* const last_stripe = end - 32;
    do {
      for (int lane = 0; lane < 4; ++lane)
        acc[lane] = round_step(acc[lane], load_u64(p + 8 * lane));
      p += 32;
    } while (p <= last_stripe);
    hash =
        std::rotl(acc[0], 1) + std::rotl(acc[1], 7) + std::rotl(acc[2], 12) + std::rotl(acc[3], 18);
    for (uint64_t a : acc) hash = merge_accumulator(hash, a);
  } else {
    hash = seed + kPrime5;
  }
  hash += static_cast<uint64_t>(size);

  // The tail: 8-byte words, then a 4-byte word, then single bytes.
  for (; end - p >= 8; p += 8) {
    hash ^= round_step(0, load_u64(p));
    hash = std::rotl(hash, 27) * kPrime1 + kPrime4;
  }
  if (end - p >= 4) {
    hash ^= static_cast<uint64_t>(load_u32(p)) * kPrime1;
    hash = std::rotl(hash, 23) * kPrime2 + kPrime3;
    p += 4;
  }
  for (; p < end; ++p) {
    hash ^= static_cast<uint64_t>(*p) * kPrime5;
    hash = std::rotl(hash, 11) * kPrime1;
  }

  // Final avalanche.
  hash ^= hash >> 33;
  hash *= kPrime2;
  hash ^= hash >> 29;
  hash *= kPrime3;
  hash ^= hash >> 32;
  return hash;
}

}  // namespace kiln::format
