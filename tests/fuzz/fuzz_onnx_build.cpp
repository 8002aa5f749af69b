// Fuzz target: ONNX bytes -> the whole builder for the cpu target (import, shape inference,
// constant folding, every pass, memory planning, engine emission). A small memory ceiling and
// small dynamic ranges keep each case fast and make huge shapes fail as errors, as a server
// building users' models would configure it. The engine produced is loaded back, so that what the
// builder writes always passes the runtime's verifier.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_support.hpp"
#include "kiln/builder.hpp"
#include "kiln/runtime.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::BuilderConfig config;
  config.target = "cpu";
  config.memory_limit = uint64_t{64} << 20;
  config.default_dynamic_max = 8;
  kiln::fuzz::expect_only_kiln_errors([&] {
    const std::vector<uint8_t> engine = kiln::build_engine_from_onnx_bytes(data, size, "", config);
    try {
      (void)kiln::Engine::load_bytes(engine.data(), engine.size());
    } catch (const kiln::Error& e) {
      std::fprintf(stderr, "fuzz: the builder wrote an engine the runtime refuses: %s\n", e.what());
      std::abort();
    }
  });
  return 0;
}
