// A minimal, bounds-checked reader of the protobuf wire format (no protobuf library). It walks the
// fields of one message; the caller knows the schema and asks for each field's value in the form
// it expects. Every malformed byte sequence becomes kiln::Error(kCorruptFile) naming the source
// and the field path, e.g. "model.onnx: ModelProto.graph.node[3].attribute[1]: ...".
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::onnx::pb {

enum class WireType : uint8_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

// One field as it appears on the wire. Only the member matching `wire_type` is meaningful.
struct Field {
  uint32_t number = 0;
  WireType wire_type = WireType::kVarint;
  uint64_t scalar = 0;               // varint value, or the raw bits of a fixed32/fixed64
  std::span<const uint8_t> payload;  // length-delimited bytes (borrowed from the message)
};

// Messages nested deeper than this are rejected, so hostile input cannot exhaust the stack.
inline constexpr int kMaxNestingDepth = 64;

class MessageReader {
 public:
  // `source` names the input in errors ("model.onnx"); `path` is the message's path
  // ("ModelProto"). The bytes must outlive the reader and everything borrowed from it.
  MessageReader(std::span<const uint8_t> bytes, std::string source, std::string path);

  // Reads the next field into `field`; returns false at the end of the message. Groups (wire
  // types 3/4, unused by ONNX) are skipped whole.
  bool next(Field& field);

  // Field value accessors. Each checks the wire type and fails naming `name` when it is wrong.
  int64_t read_int64(const Field& field, std::string_view name) const;
  int32_t read_int32(const Field& field, std::string_view name) const;
  uint64_t read_uint64(const Field& field, std::string_view name) const;
  float read_float(const Field& field, std::string_view name) const;
  double read_double(const Field& field, std::string_view name) const;
  std::string read_string(const Field& field, std::string_view name) const;
  std::span<const uint8_t> read_bytes(const Field& field, std::string_view name) const;

  // Repeated scalars: accepts both the packed encoding (one length-delimited field holding all
  // values) and the unpacked one (one field per value); appends to `out`.
  void append_int64s(const Field& field, std::string_view name, std::vector<int64_t>& out) const;
  void append_int32s(const Field& field, std::string_view name, std::vector<int32_t>& out) const;
  void append_uint64s(const Field& field, std::string_view name, std::vector<uint64_t>& out) const;
  void append_floats(const Field& field, std::string_view name, std::vector<float>& out) const;
  void append_doubles(const Field& field, std::string_view name, std::vector<double>& out) const;

  // A reader for an embedded message. `index` >= 0 appends "[index]" to the path (repeated
  // fields). Fails when the nesting depth exceeds kMaxNestingDepth.
  MessageReader child(const Field& field, std::string_view name, int64_t index = -1) const;

  // Throws kiln::Error(kCorruptFile) "<source>: <path>: <message>".
  [[noreturn]] void fail(std::string_view message) const;
  // Same, with ".<name>" appended to the path.
  [[noreturn]] void fail_field(std::string_view name, std::string_view message) const;

  const std::string& source() const { return *source_; }
  const std::string& path() const { return path_; }

 private:
  MessageReader(std::span<const uint8_t> bytes, std::shared_ptr<const std::string> source,
                std::string path, int depth);
  uint64_t read_varint(std::string_view what);
  void skip_group(uint32_t number);
  void expect_wire_type(const Field& field, WireType expected, std::string_view name) const;

  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  std::shared_ptr<const std::string> source_;
  std::string path_;
  int depth_ = 0;
};

std::string_view wire_type_name(WireType type);

}  // namespace kiln::onnx::pb
