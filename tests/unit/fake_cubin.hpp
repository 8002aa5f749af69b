// A stand-in for a cubin where no compiler is at hand: the smallest image that passes
// format::cubin_image_problem (an ELF64 header for EM_CUDA, no sections), padded with `fill`.
// The CUDA driver would refuse it; the format and the kernel cache only check its structure.
#pragma once

#include <cstdint>
#include <vector>

namespace kiln::testing {

inline std::vector<uint8_t> fake_cubin(uint8_t fill, size_t size = 80) {
  std::vector<uint8_t> image(size < 64 ? 64 : size, fill);
  std::fill(image.begin(), image.begin() + 64, uint8_t{0});
  const uint8_t ident[7] = {0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1};
  std::copy(std::begin(ident), std::end(ident), image.begin());
  image[18] = 190;  // e_machine = EM_CUDA
  image[52] = 64;   // e_ehsize
  return image;
}

}  // namespace kiln::testing
