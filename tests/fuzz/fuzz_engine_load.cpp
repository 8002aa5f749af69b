// Fuzz target: engine bytes -> kiln::Engine::load_bytes (reader, verifier, CPU engine set-up).
// Mutated files almost never keep a valid checksum, so the target re-stamps it first: the
// checksum check itself is covered by tests/unit/format_test.cpp, and everything behind it is
// what needs the fuzzing. Loaded engines are queried the way callers do (bindings, metadata).
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "format/engine_container.hpp"
#include "format/engine_schema.hpp"
#include "fuzz_support.hpp"
#include "kiln/runtime.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  if (bytes.size() >= kiln::format::schema::kHeaderSize) {
    const uint64_t checksum = kiln::format::engine_checksum(bytes);
    std::memcpy(bytes.data() + kiln::format::schema::kOffsetChecksum, &checksum, sizeof(checksum));
  }
  kiln::fuzz::expect_only_kiln_errors([&] {
    const kiln::Engine engine = kiln::Engine::load_bytes(bytes.data(), bytes.size());
    size_t names = 0;
    for (const auto& binding : engine.inputs()) {
      names += binding.name.size() + binding.max_shape.size();
    }
    for (const auto& binding : engine.outputs()) {
      names += binding.name.size() + binding.shape.size();
    }
    names += engine.metadata_json().size() + engine.format_version().size();
    names += engine.num_layers();
    (void)engine.create_context();
    // Keeps the queries from being optimised out.
    if (names == static_cast<size_t>(-1)) std::abort();
  });
  return 0;
}
