// Fuzz target: bytes -> the CLI's .npy reader (kiln run --input NAME=FILE.npy). A parsed array is
// encoded again and re-parsed, which must give the same dtype, shape and bytes.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <span>

#include "fuzz_support.hpp"
#include "tools/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::expect_only_kiln_errors([&] {
    const kiln::Tensor tensor =
        kiln::tools::parse_npy(std::span<const uint8_t>(data, size), "fuzz.npy");
    const std::vector<uint8_t> encoded =
        kiln::tools::encode_npy(tensor.dtype, tensor.shape, tensor.bytes.data());
    const kiln::Tensor again = kiln::tools::parse_npy(encoded, "fuzz.npy (re-encoded)");
    if (again.dtype != tensor.dtype || again.shape != tensor.shape || again.bytes != tensor.bytes) {
      std::fprintf(stderr, "fuzz: .npy round trip changed the array\n");
      std::abort();
    }
  });
  return 0;
}
