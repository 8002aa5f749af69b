// The container level of an engine file: the fixed header, the checksum and the section table.
// What is inside the sections is engine_reader.cpp's and engine_writer.cpp's business.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/engine_model.hpp"

namespace kiln::format {

// What the fixed header says. Fields after `producer` are only read for this reader's major
// version (they are zero for others: a different major may lay its header out differently).
struct EngineHeader {
  FormatVersion version;
  std::string producer;  // from the header's 32-byte field, non-printable bytes replaced by '?'
  uint32_t header_size = 0;
  uint64_t file_size = 0;
  uint64_t checksum = 0;
  uint32_t flags = 0;
  uint32_t section_count = 0;
};

// Peeks at the header only (for `kiln inspect` and the reader): checks the magic and that the
// header is all there; does NOT check the version, the size or the checksum.
// Throws kCorruptFile ("not a kiln engine file: <source>", "truncated: ...").
EngineHeader read_engine_header(std::span<const uint8_t> bytes, const std::string& source);

// Throws kIncompatible when this runtime cannot read `header`'s major version.
void check_format_version(const EngineHeader& header, const std::string& source);

struct SectionEntry {
  uint32_t id = 0;
  uint64_t offset = 0;  // from the start of the file
  uint64_t size = 0;
};

// Verifies the declared size, the checksum, the flags and the section table (every entry inside
// the file, aligned, not overlapping another; no known id twice). Call after check_format_version.
std::vector<SectionEntry> verify_container(std::span<const uint8_t> bytes,
                                           const EngineHeader& header, const std::string& source);

// The checksum of a whole engine file as the header's checksum field should hold it (the field's
// own bytes are not covered). `bytes` must hold at least the header.
uint64_t engine_checksum(std::span<const uint8_t> bytes);

struct SectionPayload {
  uint32_t id = 0;
  std::span<const uint8_t> bytes;
  uint64_t alignment = 8;  // of the section's offset in the file; a power of two >= 8
};

// Lays out a complete file: header (stamped with `version`, `producer`, `flags`), section table,
// the sections in the given order, checksum.
std::vector<uint8_t> assemble_engine(FormatVersion version, std::string_view producer,
                                     uint32_t flags, std::span<const SectionPayload> sections);

}  // namespace kiln::format
