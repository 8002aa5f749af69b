#include "frontend/onnx/protobuf_reader.hpp"

#include <bit>
#include <cstring>

#include "base/error.hpp"

namespace kiln::onnx::pb {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the wire reader copies little-endian fixed-width values directly");

enum class VarintStatus { kOk, kTruncated, kTooLong };

// Decodes a base-128 varint at bytes[pos]; advances pos on success. A varint has at most 10
// bytes and the 10th may only carry the top bit of a 64-bit value.
VarintStatus decode_varint(std::span<const uint8_t> bytes, size_t& pos, uint64_t& out) {
  uint64_t value = 0;
  for (int i = 0; i < 10; ++i) {
    if (pos + static_cast<size_t>(i) >= bytes.size()) return VarintStatus::kTruncated;
    const uint8_t byte = bytes[pos + static_cast<size_t>(i)];
    if (i == 9 && byte > 1) return VarintStatus::kTooLong;
    value |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      pos += static_cast<size_t>(i) + 1;
      out = value;
      return VarintStatus::kOk;
    }
  }
  return VarintStatus::kTooLong;
}

template <typename T>
T load_little_endian(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

}  // namespace

std::string_view wire_type_name(WireType type) {
  switch (type) {
    case WireType::kVarint:
      return "varint";
    case WireType::kFixed64:
      return "fixed64";
    case WireType::kLengthDelimited:
      return "length-delimited";
    case WireType::kStartGroup:
      return "start-group";
    case WireType::kEndGroup:
      return "end-group";
    case WireType::kFixed32:
      return "fixed32";
  }
  return "invalid";
}

MessageReader::MessageReader(std::span<const uint8_t> bytes, std::string source, std::string path)
    : MessageReader(bytes, std::make_shared<const std::string>(std::move(source)), std::move(path),
                    0) {}

MessageReader::MessageReader(std::span<const uint8_t> bytes,
                             std::shared_ptr<const std::string> source, std::string path, int depth)
    : bytes_(bytes), source_(std::move(source)), path_(std::move(path)), depth_(depth) {}

void MessageReader::fail(std::string_view message) const {
  kiln::fail(ErrorCode::kCorruptFile, *source_, ": ", path_, ": ", message);
}

void MessageReader::fail_field(std::string_view name, std::string_view message) const {
  kiln::fail(ErrorCode::kCorruptFile, *source_, ": ", path_, ".", name, ": ", message);
}

uint64_t MessageReader::read_varint(std::string_view what) {
  uint64_t value = 0;
  switch (decode_varint(bytes_, pos_, value)) {
    case VarintStatus::kOk:
      return value;
    case VarintStatus::kTruncated:
      fail(detail::concat("truncated ", what, " at byte ", pos_, " of ", bytes_.size()));
    case VarintStatus::kTooLong:
      fail(detail::concat("malformed varint (", what, ") at byte ", pos_));
  }
  fail("unreachable varint status");
}

bool MessageReader::next(Field& field) {
  while (pos_ < bytes_.size()) {
    const uint64_t key = read_varint("field key");
    const uint64_t number = key >> 3;
    const uint64_t wire = key & 7;
    if (number == 0 || number > 0x1fffffff) {
      fail(detail::concat("invalid field number ", number, " at byte ", pos_));
    }
    field = Field{};
    field.number = static_cast<uint32_t>(number);
    switch (wire) {
      case 0:
        field.wire_type = WireType::kVarint;
        field.scalar = read_varint(detail::concat("varint of field ", number));
        return true;
      case 1:
      case 5: {
        const size_t width = wire == 1 ? 8 : 4;
        if (bytes_.size() - pos_ < width) {
          fail(detail::concat("truncated fixed", width * 8, " field ", number, " at byte ", pos_));
        }
        field.wire_type = wire == 1 ? WireType::kFixed64 : WireType::kFixed32;
        field.scalar = wire == 1 ? load_little_endian<uint64_t>(bytes_.data() + pos_)
                                 : load_little_endian<uint32_t>(bytes_.data() + pos_);
        pos_ += width;
        return true;
      }
      case 2: {
        const uint64_t length = read_varint(detail::concat("length of field ", number));
        if (length > bytes_.size() - pos_) {
          fail(detail::concat("field ", number, " claims ", length, " bytes but only ",
                              bytes_.size() - pos_, " remain"));
        }
        field.wire_type = WireType::kLengthDelimited;
        field.payload = bytes_.subspan(pos_, static_cast<size_t>(length));
        pos_ += static_cast<size_t>(length);
        return true;
      }
      case 3:
        skip_group(field.number);
        continue;  // groups are never part of the ONNX schema: skip as unknown
      case 4:
        fail(detail::concat("unexpected end-group for field ", number));
      default:
        fail(detail::concat("invalid wire type ", wire, " for field ", number));
    }
  }
  return false;
}

void MessageReader::skip_group(uint32_t number) {
  // Iterative so that deeply nested groups cannot overflow the stack.
  std::vector<uint32_t> open{number};
  while (!open.empty()) {
    if (pos_ >= bytes_.size()) fail(detail::concat("unterminated group ", open.back()));
    if (open.size() > static_cast<size_t>(kMaxNestingDepth)) fail("groups nested too deeply");
    const uint64_t key = read_varint("field key in group");
    const uint64_t inner = key >> 3;
    if (inner == 0 || inner > 0x1fffffff) fail(detail::concat("invalid field number ", inner));
    switch (key & 7) {
      case 0:
        read_varint("varint in group");
        break;
      case 1:
      case 5: {
        const size_t width = (key & 7) == 1 ? 8 : 4;
        if (bytes_.size() - pos_ < width) fail("truncated fixed-width value in group");
        pos_ += width;
        break;
      }
      case 2: {
        const uint64_t length = read_varint("length in group");
        if (length > bytes_.size() - pos_) fail("truncated length-delimited value in group");
        pos_ += static_cast<size_t>(length);
        break;
      }
      case 3:
        open.push_back(static_cast<uint32_t>(inner));
        break;
      case 4:
        if (inner != open.back()) fail(detail::concat("mismatched end-group ", inner));
        open.pop_back();
        break;
      default:
        fail(detail::concat("invalid wire type ", key & 7, " in group"));
    }
  }
}

void MessageReader::expect_wire_type(const Field& field, WireType expected,
                                     std::string_view name) const {
  if (field.wire_type != expected) {
    fail_field(name, detail::concat("field ", field.number, " has wire type ",
                                    wire_type_name(field.wire_type), ", expected ",
                                    wire_type_name(expected)));
  }
}

int64_t MessageReader::read_int64(const Field& field, std::string_view name) const {
  expect_wire_type(field, WireType::kVarint, name);
  return static_cast<int64_t>(field.scalar);
}

int32_t MessageReader::read_int32(const Field& field, std::string_view name) const {
  // Negative int32 values are sign-extended to 64 bits on the wire; truncation restores them.
  expect_wire_type(field, WireType::kVarint, name);
  return static_cast<int32_t>(static_cast<uint32_t>(field.scalar));
}

uint64_t MessageReader::read_uint64(const Field& field, std::string_view name) const {
  expect_wire_type(field, WireType::kVarint, name);
  return field.scalar;
}

float MessageReader::read_float(const Field& field, std::string_view name) const {
  expect_wire_type(field, WireType::kFixed32, name);
  return std::bit_cast<float>(static_cast<uint32_t>(field.scalar));
}

double MessageReader::read_double(const Field& field, std::string_view name) const {
  expect_wire_type(field, WireType::kFixed64, name);
  return std::bit_cast<double>(field.scalar);
}

std::string MessageReader::read_string(const Field& field, std::string_view name) const {
  expect_wire_type(field, WireType::kLengthDelimited, name);
  return std::string(reinterpret_cast<const char*>(field.payload.data()), field.payload.size());
}

std::span<const uint8_t> MessageReader::read_bytes(const Field& field,
                                                   std::string_view name) const {
  expect_wire_type(field, WireType::kLengthDelimited, name);
  return field.payload;
}

namespace {

// Decodes a packed run of varints, failing through `reader` on malformed data.
template <typename T, typename Convert>
void append_packed_varints(const MessageReader& reader, std::span<const uint8_t> payload,
                           std::string_view name, std::vector<T>& out, Convert convert) {
  size_t pos = 0;
  while (pos < payload.size()) {
    uint64_t value = 0;
    if (decode_varint(payload, pos, value) != VarintStatus::kOk) {
      reader.fail_field(
          name, detail::concat("malformed packed varint at byte ", pos, " of ", payload.size()));
    }
    out.push_back(convert(value));
  }
}

template <typename T, typename Bits>
void append_packed_fixed(const MessageReader& reader, std::span<const uint8_t> payload,
                         std::string_view name, std::vector<T>& out) {
  if (payload.size() % sizeof(Bits) != 0) {
    reader.fail_field(
        name, detail::concat("packed ", sizeof(Bits) * 8, "-bit values take ", payload.size(),
                             " bytes, not a multiple of ", sizeof(Bits)));
  }
  const size_t count = payload.size() / sizeof(Bits);
  out.reserve(out.size() + count);
  for (size_t i = 0; i < count; ++i) {
    out.push_back(std::bit_cast<T>(load_little_endian<Bits>(payload.data() + i * sizeof(Bits))));
  }
}

}  // namespace

void MessageReader::append_int64s(const Field& field, std::string_view name,
                                  std::vector<int64_t>& out) const {
  if (field.wire_type == WireType::kLengthDelimited) {
    append_packed_varints(*this, field.payload, name, out,
                          [](uint64_t v) { return static_cast<int64_t>(v); });
  } else {
    out.push_back(read_int64(field, name));
  }
}

void MessageReader::append_int32s(const Field& field, std::string_view name,
                                  std::vector<int32_t>& out) const {
  if (field.wire_type == WireType::kLengthDelimited) {
    append_packed_varints(*this, field.payload, name, out, [](uint64_t v) {
      return static_cast<int32_t>(static_cast<uint32_t>(v));
    });
  } else {
    out.push_back(read_int32(field, name));
  }
}

void MessageReader::append_uint64s(const Field& field, std::string_view name,
                                   std::vector<uint64_t>& out) const {
  if (field.wire_type == WireType::kLengthDelimited) {
    append_packed_varints(*this, field.payload, name, out, [](uint64_t v) { return v; });
  } else {
    out.push_back(read_uint64(field, name));
  }
}

void MessageReader::append_floats(const Field& field, std::string_view name,
                                  std::vector<float>& out) const {
  if (field.wire_type == WireType::kLengthDelimited) {
    append_packed_fixed<float, uint32_t>(*this, field.payload, name, out);
  } else {
    out.push_back(read_float(field, name));
  }
}

void MessageReader::append_doubles(const Field& field, std::string_view name,
                                   std::vector<double>& out) const {
  if (field.wire_type == WireType::kLengthDelimited) {
    append_packed_fixed<double, uint64_t>(*this, field.payload, name, out);
  } else {
    out.push_back(read_double(field, name));
  }
}

MessageReader MessageReader::child(const Field& field, std::string_view name, int64_t index) const {
  expect_wire_type(field, WireType::kLengthDelimited, name);
  std::string path = detail::concat(path_, ".", name);
  if (index >= 0) path += detail::concat("[", index, "]");
  if (depth_ + 1 > kMaxNestingDepth) {
    kiln::fail(ErrorCode::kCorruptFile, *source_, ": ", path, ": messages nested deeper than ",
               kMaxNestingDepth, " levels");
  }
  return MessageReader(field.payload, source_, std::move(path), depth_ + 1);
}

}  // namespace kiln::onnx::pb
