// Memory ceilings: the most bytes one engine context (its arena and host-computed shape values) or
// one build (each tensor and the planned arena) may ask for. A model asking for 2^62 elements then
// fails with an error naming the node and the size instead of attempting the allocation.
//
// The ceiling comes from, in order: the caller (BuilderConfig::memory_limit), the environment
// variable KILN_MEMORY_LIMIT, the machine (physical RAM for the host, the GPU's memory for CUDA
// engines).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln {

inline constexpr const char* kMemoryLimitEnv = "KILN_MEMORY_LIMIT";

struct MemoryLimit {
  uint64_t bytes = 0;
  // Where the number came from, for messages: "KILN_MEMORY_LIMIT", "physical memory", ...
  std::string source;
};

// Parses a byte count: digits with an optional suffix K, M, G, T (powers of 1024, with or
// without a trailing "iB"/"B", any case), e.g. "1048576", "512M", "8GiB". Throws
// kInvalidArgument naming `what` and the text when it is empty, not a number, zero, or beyond
// 2^63 - 1.
uint64_t parse_byte_size(std::string_view text, std::string_view what);

// The byte count in KILN_MEMORY_LIMIT, or nullopt when it is unset or empty. Throws as
// parse_byte_size when it is set to something else.
std::optional<uint64_t> memory_limit_from_env();

// Physical memory of this machine in bytes (sysconf); 0 when the system does not say.
uint64_t physical_memory_bytes();

// KILN_MEMORY_LIMIT when set, else `machine_bytes` described as `machine_source`; when
// `machine_bytes` is 0 (unknown), no ceiling beyond 2^63 - 1.
MemoryLimit resolve_memory_limit(uint64_t machine_bytes, std::string_view machine_source);

// The ceiling for host memory: KILN_MEMORY_LIMIT, else the physical memory.
MemoryLimit host_memory_limit();

// "the memory limit of 16 GiB (17179869184 bytes) (physical memory; set KILN_MEMORY_LIMIT to
// change it)": the tail of an error message for a size above `limit`.
std::string describe_memory_limit(const MemoryLimit& limit);

// "16 GiB (17179869184 bytes)", "1000 bytes": a byte count for messages.
std::string format_bytes(uint64_t bytes);

}  // namespace kiln
