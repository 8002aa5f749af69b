#include "format/wire_format.hpp"

#include <bit>
#include <cstring>
#include <limits>

namespace kiln::format {

using schema::Field;
using schema::Wire;

// ---- WireWriter ---------------------------------------------------------------------------------

uint32_t WireWriter::checked_u32(uint64_t value, const Field& field) {
  if (value > std::numeric_limits<uint32_t>::max()) {
    fail(ErrorCode::kInvalidArgument, "write_engine: field '", field.name, "' needs ", value,
         " bytes or items, more than the format's 4 GiB field limit");
  }
  return static_cast<uint32_t>(value);
}

void WireWriter::put_u32(uint32_t v) {
  uint8_t bytes[4];
  store_le(bytes, v);
  put_bytes(bytes, 4);
}

void WireWriter::put_bytes(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  out_.insert(out_.end(), p, p + size);
}

size_t WireWriter::begin_field(const Field& field) {
  const size_t start = out_.size();
  out_.resize(start + schema::kFieldHeaderSize);
  store_le<uint16_t>(out_.data() + start, field.tag);
  store_le<uint16_t>(out_.data() + start + 2, static_cast<uint16_t>(field.wire));
  return start;
}

void WireWriter::end_field(const Field& field, size_t start) {
  const uint64_t length = out_.size() - start - schema::kFieldHeaderSize;
  store_le<uint32_t>(out_.data() + start + 4, checked_u32(length, field));
}

void WireWriter::int_field(const Field& field, int64_t value) {
  const size_t start = begin_field(field);
  const size_t at = out_.size();
  out_.resize(at + 8);
  store_le(out_.data() + at, static_cast<uint64_t>(value));
  end_field(field, start);
}

void WireWriter::f32_field(const Field& field, float value) {
  const size_t start = begin_field(field);
  put_u32(std::bit_cast<uint32_t>(value));
  end_field(field, start);
}

void WireWriter::bytes_field(const Field& field, std::span<const uint8_t> bytes) {
  const size_t start = begin_field(field);
  put_bytes(bytes.data(), bytes.size());
  end_field(field, start);
}

void WireWriter::string_field(const Field& field, std::string_view text) {
  bytes_field(field, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

void WireWriter::ints_field(const Field& field, std::span<const int64_t> values) {
  const size_t start = begin_field(field);
  size_t at = out_.size();
  out_.resize(at + 8 * values.size());
  for (int64_t v : values) {
    store_le(out_.data() + at, static_cast<uint64_t>(v));
    at += 8;
  }
  end_field(field, start);
}

void WireWriter::floats_field(const Field& field, std::span<const float> values) {
  const size_t start = begin_field(field);
  size_t at = out_.size();
  out_.resize(at + 4 * values.size());
  for (float v : values) {
    store_le(out_.data() + at, std::bit_cast<uint32_t>(v));
    at += 4;
  }
  end_field(field, start);
}

void WireWriter::strings_field(const Field& field, std::span<const std::string> values) {
  list_field(field, values,
             [](WireWriter& w, const std::string& s) { w.put_bytes(s.data(), s.size()); });
}

// ---- MessageDecoder -----------------------------------------------------------------------------

bool MessageDecoder::next() {
  current_ = nullptr;
  if (rest_.empty()) return false;
  if (rest_.size() < schema::kFieldHeaderSize) {
    where_.fail("a field header needs ", schema::kFieldHeaderSize, " bytes, only ", rest_.size(),
                " remain in the message");
  }
  tag_ = load_le<uint16_t>(rest_.data());
  wire_ = static_cast<Wire>(load_le<uint16_t>(rest_.data() + 2));
  const uint64_t length = load_le<uint32_t>(rest_.data() + 4);
  const uint64_t available = rest_.size() - schema::kFieldHeaderSize;
  if (length > available) {
    where_.fail("field with tag ", tag_, " claims ", length, " bytes, only ", available,
                " remain in the message");
  }
  payload_ = rest_.subspan(schema::kFieldHeaderSize, length);
  rest_ = rest_.subspan(schema::kFieldHeaderSize + length);
  return true;
}

bool MessageDecoder::is(const Field& field) {
  KILN_ASSERT(field.tag <= schema::kMaxKnownTag, "schema tags must fit the 64-bit seen mask");
  if (tag_ != field.tag) return false;
  current_ = &field;
  if (wire_ != field.wire) {
    fail_field("expected wire type ", schema::wire_name(field.wire), ", got ",
               schema::wire_name(wire_), " (", static_cast<int>(wire_), ")");
  }
  const uint64_t bit = uint64_t{1} << field.tag;
  if (seen_mask_ & bit) fail_field("appears more than once");
  seen_mask_ |= bit;
  return true;
}

bool MessageDecoder::seen(const Field& field) const {
  return (seen_mask_ & (uint64_t{1} << field.tag)) != 0;
}

void MessageDecoder::require(const Field& field) const {
  if (!seen(field))
    where_.fail("required field '", field.name, "' (tag ", field.tag, ") is missing");
}

int64_t MessageDecoder::as_int() const {
  if (payload_.size() != 8) fail_field("an int needs 8 bytes, got ", payload_.size());
  return static_cast<int64_t>(load_le<uint64_t>(payload_.data()));
}

int64_t MessageDecoder::as_int_in(int64_t lo, int64_t hi) const {
  const int64_t v = as_int();
  if (v < lo || v > hi) fail_field("value ", v, " is outside [", lo, ", ", hi, "]");
  return v;
}

float MessageDecoder::as_f32() const {
  if (payload_.size() != 4) fail_field("a float needs 4 bytes, got ", payload_.size());
  return std::bit_cast<float>(load_le<uint32_t>(payload_.data()));
}

std::string MessageDecoder::as_string() const {
  return std::string(reinterpret_cast<const char*>(payload_.data()), payload_.size());
}

std::vector<int64_t> MessageDecoder::as_ints() const {
  if (payload_.size() % 8 != 0) {
    fail_field("packed ints need a multiple of 8 bytes, got ", payload_.size());
  }
  std::vector<int64_t> values(payload_.size() / 8);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<int64_t>(load_le<uint64_t>(payload_.data() + 8 * i));
  }
  return values;
}

std::vector<float> MessageDecoder::as_floats() const {
  if (payload_.size() % 4 != 0) {
    fail_field("packed floats need a multiple of 4 bytes, got ", payload_.size());
  }
  std::vector<float> values(payload_.size() / 4);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = std::bit_cast<float>(load_le<uint32_t>(payload_.data() + 4 * i));
  }
  return values;
}

std::vector<std::string> MessageDecoder::as_strings() const {
  std::vector<std::string> out;
  for (std::span<const uint8_t> item : as_list()) {
    out.emplace_back(reinterpret_cast<const char*>(item.data()), item.size());
  }
  return out;
}

std::vector<std::span<const uint8_t>> MessageDecoder::as_list() const {
  if (payload_.size() < 4)
    fail_field("a list needs a 4-byte count, got ", payload_.size(), " bytes");
  const uint64_t count = load_le<uint32_t>(payload_.data());
  std::span<const uint8_t> rest = payload_.subspan(4);
  // Each item takes at least its 4-byte length: reject an impossible count before allocating.
  if (count > rest.size() / 4) {
    fail_field("list claims ", count, " items, but its ", rest.size(), " bytes can hold at most ",
               rest.size() / 4);
  }
  std::vector<std::span<const uint8_t>> items;
  items.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    if (rest.size() < 4) fail_field("item ", i, " of ", count, ": its length is cut off");
    const uint64_t length = load_le<uint32_t>(rest.data());
    if (length > rest.size() - 4) {
      fail_field("item ", i, " of ", count, " claims ", length, " bytes, only ", rest.size() - 4,
                 " remain");
    }
    items.push_back(rest.subspan(4, length));
    rest = rest.subspan(4 + length);
  }
  if (!rest.empty()) fail_field(rest.size(), " stray bytes after the last of ", count, " items");
  return items;
}

}  // namespace kiln::format
