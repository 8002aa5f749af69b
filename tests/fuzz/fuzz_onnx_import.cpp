// Fuzz target: ONNX ModelProto bytes -> kiln's protobuf reader and importer (no external data:
// base_dir is empty, so every external location must be refused).
#include <cstdint>
#include <span>

#include "frontend/onnx/onnx_importer.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::expect_only_kiln_errors([&] {
    const kiln::onnx::ImportOptions options{.base_dir = "", .source = "fuzz.onnx"};
    const kiln::ir::Graph graph =
        kiln::onnx::import_model_bytes(std::span<const uint8_t>(data, size), options);
    (void)graph;
  });
  return 0;
}
