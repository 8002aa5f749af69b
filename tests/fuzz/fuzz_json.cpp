// Fuzz target: bytes -> kiln::json::parse, the seam through which engine metadata and builder
// configurations reach nlohmann/json's parser. A parsed value is serialized and parsed again,
// which must give the same value.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/json.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::expect_only_kiln_errors([&] {
    kiln::json::ParseOptions options;
    options.source = "fuzz.json";
    options.max_depth = 64;
    const kiln::json::Value value =
        kiln::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), options);
    const std::string text = kiln::json::serialize(value);
    options.source = "fuzz.json (serialized again)";
    if (!(kiln::json::parse(text, options) == value)) {
      std::fprintf(stderr, "fuzz: JSON round trip changed the value: %s\n", text.c_str());
      std::abort();
    }
  });
  return 0;
}
