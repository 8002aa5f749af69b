#include "format/engine_container.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/error.hpp"
#include "format/checksum.hpp"
#include "format/engine_schema.hpp"
#include "format/wire_format.hpp"

namespace kiln::format {

namespace {

std::string printable_producer(std::span<const uint8_t> field) {
  std::string out;
  for (uint8_t c : field) {
    if (c == 0) break;
    out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  return out.empty() ? std::string("unknown producer") : out;
}

uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

}  // namespace

EngineHeader read_engine_header(std::span<const uint8_t> bytes, const std::string& source) {
  const size_t magic_bytes = std::min<size_t>(bytes.size(), sizeof(schema::kMagic));
  if (magic_bytes > 0 && std::memcmp(bytes.data(), schema::kMagic, magic_bytes) != 0) {
    fail(ErrorCode::kCorruptFile, "not a kiln engine file: ", source,
         " (it does not start with the magic \"KILNENG\")");
  }
  if (bytes.size() < schema::kStablePrefixSize) {
    fail(ErrorCode::kCorruptFile, source, ": truncated: got ", bytes.size(),
         " bytes, fewer than the ", schema::kStablePrefixSize, "-byte header");
  }
  EngineHeader header;
  header.version.major = load_le<uint16_t>(bytes.data() + schema::kOffsetMajor);
  header.version.minor = load_le<uint16_t>(bytes.data() + schema::kOffsetMinor);
  header.producer =
      printable_producer(bytes.subspan(schema::kOffsetProducer, schema::kProducerFieldSize));
  if (header.version.major != kFormatMajor) return header;
  if (bytes.size() < schema::kHeaderSize) {
    fail(ErrorCode::kCorruptFile, source, ": truncated: got ", bytes.size(),
         " bytes, fewer than the ", schema::kHeaderSize, "-byte header");
  }
  header.header_size = load_le<uint32_t>(bytes.data() + schema::kOffsetHeaderSize);
  header.file_size = load_le<uint64_t>(bytes.data() + schema::kOffsetFileSize);
  header.checksum = load_le<uint64_t>(bytes.data() + schema::kOffsetChecksum);
  header.flags = load_le<uint32_t>(bytes.data() + schema::kOffsetFlags);
  header.section_count = load_le<uint32_t>(bytes.data() + schema::kOffsetSectionCount);
  return header;
}

void check_format_version(const EngineHeader& header, const std::string& source) {
  const uint16_t major = header.version.major;
  if (major == kFormatMajor) return;  // any minor: newer minors only add what we may skip
  const char* relation = major > kFormatMajor ? "newer" : "older";
  const char* advice = major > kFormatMajor ? "rebuild the engine with this kiln or update kiln"
                                            : "rebuild the engine with this kiln";
  fail(ErrorCode::kIncompatible, source, ": engine format ", major, ".", header.version.minor,
       " (written by ", header.producer, ") is ", relation, " than this runtime's ", kFormatMajor,
       ".", kFormatMinor, ", which reads format ", kFormatMajor, ".x only: ", advice);
}

uint64_t engine_checksum(std::span<const uint8_t> bytes) {
  KILN_ASSERT(bytes.size() >= schema::kOffsetChecksum + 8);
  const uint64_t seed = xxh64(bytes.first(schema::kOffsetChecksum));
  return xxh64(bytes.subspan(schema::kOffsetChecksum + 8), seed);
}

std::vector<SectionEntry> verify_container(std::span<const uint8_t> bytes,
                                           const EngineHeader& header, const std::string& source) {
  KILN_ASSERT(header.version.major == kFormatMajor);
  const uint64_t actual = bytes.size();
  if (header.file_size > actual) {
    fail(ErrorCode::kCorruptFile, source, ": truncated: header says ", header.file_size,
         " bytes, got ", actual);
  }
  if (header.file_size < actual) {
    fail(ErrorCode::kCorruptFile, source, ": ", actual - header.file_size,
         " unexpected trailing bytes: header says ", header.file_size, " bytes, got ", actual);
  }
  if (header.header_size < schema::kHeaderSize || header.header_size % schema::kSectionAlignment ||
      header.header_size > actual) {
    fail(ErrorCode::kCorruptFile, source, ": header size ", header.header_size,
         " is invalid (expected a multiple of 8, at least ", schema::kHeaderSize, " and at most ",
         actual, ")");
  }
  const uint64_t checksum = engine_checksum(bytes);
  if (checksum != header.checksum) {
    fail(ErrorCode::kCorruptFile, source, ": checksum mismatch (header says 0x", std::hex,
         header.checksum, ", contents hash to 0x", checksum, std::dec,
         "): the file is corrupt or was modified");
  }
  if (header.flags & ~schema::kKnownFlags) {
    fail(ErrorCode::kIncompatible, source, ": engine requires format features this runtime ",
         "does not know (header flags 0x", std::hex, header.flags & ~schema::kKnownFlags, std::dec,
         "): update kiln or rebuild the engine");
  }

  // The table: its size is checked against the file before anything is allocated for it.
  const uint64_t table_start = header.header_size;
  const uint64_t count = header.section_count;
  if (count > (actual - table_start) / schema::kSectionEntrySize) {
    fail(ErrorCode::kCorruptFile, source, ": section table claims ", count, " entries (",
         count * schema::kSectionEntrySize, " bytes) but only ", actual - table_start,
         " bytes follow the header");
  }
  const uint64_t table_end = table_start + count * schema::kSectionEntrySize;
  std::vector<SectionEntry> entries(count);
  uint64_t known_seen = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const uint8_t* p = bytes.data() + table_start + i * schema::kSectionEntrySize;
    SectionEntry& e = entries[i];
    e.id = load_le<uint32_t>(p);
    e.offset = load_le<uint64_t>(p + 8);
    e.size = load_le<uint64_t>(p + 16);
    const auto name = schema::section_name(e.id);
    const uint64_t alignment = e.id == static_cast<uint32_t>(schema::SectionId::kWeights)
                                   ? kWeightAlignment
                                   : schema::kSectionAlignment;
    if (e.offset < table_end || e.offset > actual || e.size > actual - e.offset) {
      fail(ErrorCode::kCorruptFile, source, ": section table entry ", i, " (", name, ", id ", e.id,
           "): range [", e.offset, ", +", e.size, ") is outside the file's sections [", table_end,
           ", ", actual, ")");
    }
    if (e.offset % alignment != 0) {
      fail(ErrorCode::kCorruptFile, source, ": section table entry ", i, " (", name, "): offset ",
           e.offset, " is not a multiple of ", alignment);
    }
    if (name != "unknown") {
      const uint64_t bit = uint64_t{1} << e.id;
      if (known_seen & bit) {
        fail(ErrorCode::kCorruptFile, source, ": section '", name, "' appears more than once");
      }
      known_seen |= bit;
    }
  }
  std::vector<SectionEntry> by_offset = entries;
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SectionEntry& a, const SectionEntry& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const SectionEntry& prev = by_offset[i - 1];
    if (prev.offset + prev.size > by_offset[i].offset) {
      fail(ErrorCode::kCorruptFile, source, ": sections '", schema::section_name(prev.id), "' (id ",
           prev.id, ") and '", schema::section_name(by_offset[i].id), "' (id ", by_offset[i].id,
           ") overlap");
    }
  }
  return entries;
}

std::vector<uint8_t> assemble_engine(FormatVersion version, std::string_view producer,
                                     uint32_t flags, std::span<const SectionPayload> sections) {
  const uint64_t table_end = schema::kHeaderSize + sections.size() * schema::kSectionEntrySize;
  std::vector<uint64_t> offsets(sections.size());
  uint64_t end = table_end;
  for (size_t i = 0; i < sections.size(); ++i) {
    KILN_ASSERT(sections[i].alignment >= schema::kSectionAlignment &&
                std::has_single_bit(sections[i].alignment));
    offsets[i] = align_up(end, sections[i].alignment);
    end = offsets[i] + sections[i].bytes.size();
  }

  std::vector<uint8_t> out(end, 0);
  uint8_t* h = out.data();
  std::memcpy(h + schema::kOffsetMagic, schema::kMagic, sizeof(schema::kMagic));
  store_le<uint16_t>(h + schema::kOffsetMajor, version.major);
  store_le<uint16_t>(h + schema::kOffsetMinor, version.minor);
  store_le<uint32_t>(h + schema::kOffsetHeaderSize, static_cast<uint32_t>(schema::kHeaderSize));
  std::memcpy(h + schema::kOffsetProducer, producer.data(),
              std::min<size_t>(producer.size(), schema::kProducerFieldSize));
  store_le<uint64_t>(h + schema::kOffsetFileSize, end);
  store_le<uint32_t>(h + schema::kOffsetFlags, flags);
  store_le<uint32_t>(h + schema::kOffsetSectionCount, static_cast<uint32_t>(sections.size()));
  for (size_t i = 0; i < sections.size(); ++i) {
    uint8_t* entry = h + schema::kHeaderSize + i * schema::kSectionEntrySize;
    store_le<uint32_t>(entry, sections[i].id);
    store_le<uint64_t>(entry + 8, offsets[i]);
    store_le<uint64_t>(entry + 16, sections[i].bytes.size());
    if (!sections[i].bytes.empty()) {
      std::memcpy(h + offsets[i], sections[i].bytes.data(), sections[i].bytes.size());
    }
  }
  store_le<uint64_t>(h + schema::kOffsetChecksum, engine_checksum(out));
  return out;
}

}  // namespace kiln::format
