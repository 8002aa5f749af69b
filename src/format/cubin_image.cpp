#include "format/cubin_image.hpp"

#include "base/error.hpp"
#include "format/wire_format.hpp"

namespace kiln::format {
namespace {

constexpr uint64_t kElfHeaderSize = 64;
constexpr uint64_t kSectionHeaderSize = 64;
constexpr uint64_t kProgramHeaderSize = 56;
constexpr uint16_t kMachineCuda = 190;  // EM_CUDA
constexpr uint32_t kSectionNoBits = 8;  // SHT_NOBITS: occupies no file space

// [offset, offset + size) inside `limit`, without overflow.
bool inside(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

}  // namespace

std::string cubin_image_problem(std::span<const uint8_t> image) {
  const uint64_t total = image.size();
  if (total < kElfHeaderSize) {
    return detail::concat(total, " bytes are too few for an ELF header (", kElfHeaderSize, ")");
  }
  const uint8_t* p = image.data();
  if (p[0] != 0x7f || p[1] != 'E' || p[2] != 'L' || p[3] != 'F') {
    return "no ELF magic (0x7f 'E' 'L' 'F')";
  }
  if (p[4] != 2 || p[5] != 1) {
    return detail::concat("not a little-endian 64-bit ELF image (class ", int(p[4]), ", data ",
                          int(p[5]), ")");
  }
  const auto machine = load_le<uint16_t>(p + 18);
  if (machine != kMachineCuda) {
    return detail::concat("ELF machine ", machine, " is not CUDA (", kMachineCuda, ")");
  }
  const auto program_offset = load_le<uint64_t>(p + 32);
  const auto section_offset = load_le<uint64_t>(p + 40);
  const auto program_entry = load_le<uint16_t>(p + 54);
  const auto program_count = load_le<uint16_t>(p + 56);
  const auto section_entry = load_le<uint16_t>(p + 58);
  const auto section_count = load_le<uint16_t>(p + 60);
  const auto names_index = load_le<uint16_t>(p + 62);

  if (section_count > 0) {
    if (section_entry != kSectionHeaderSize) {
      return detail::concat("section header size ", section_entry, ", expected ",
                            kSectionHeaderSize);
    }
    if (!inside(section_offset, uint64_t{section_count} * kSectionHeaderSize, total)) {
      return detail::concat(section_count, " section headers at offset ", section_offset,
                            " end past the ", total, "-byte image");
    }
    if (names_index >= section_count) {
      return detail::concat("section name table index ", names_index, " is not below the ",
                            section_count, " sections");
    }
    for (uint64_t s = 0; s < section_count; ++s) {
      const uint8_t* header = p + section_offset + s * kSectionHeaderSize;
      if (load_le<uint32_t>(header + 4) == kSectionNoBits) continue;
      const auto offset = load_le<uint64_t>(header + 24);
      const auto size = load_le<uint64_t>(header + 32);
      if (!inside(offset, size, total)) {
        return detail::concat("section ", s, " [", offset, ", ", offset, " + ", size,
                              ") ends past the ", total, "-byte image");
      }
    }
  }
  if (program_count > 0) {
    if (program_entry != kProgramHeaderSize) {
      return detail::concat("program header size ", program_entry, ", expected ",
                            kProgramHeaderSize);
    }
    if (!inside(program_offset, uint64_t{program_count} * kProgramHeaderSize, total)) {
      return detail::concat(program_count, " program headers at offset ", program_offset,
                            " end past the ", total, "-byte image");
    }
    for (uint64_t s = 0; s < program_count; ++s) {
      const uint8_t* header = p + program_offset + s * kProgramHeaderSize;
      const auto offset = load_le<uint64_t>(header + 8);
      const auto size = load_le<uint64_t>(header + 32);
      if (!inside(offset, size, total)) {
        return detail::concat("segment ", s, " [", offset, ", ", offset, " + ", size,
                              ") ends past the ", total, "-byte image");
      }
    }
  }
  return {};
}

}  // namespace kiln::format
