// Encoding and decoding of the tagged fields that engine file sections are made of (see
// engine_schema.hpp). The decoder treats its input as hostile: every length is checked against the
// bytes that remain before anything is read or allocated.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "format/engine_schema.hpp"

namespace kiln::format {

// ---- little-endian scalars ----------------------------------------------------------------------
// Written with shifts so that the file layout does not depend on the host's byte order.
template <typename T>
T load_le(const uint8_t* p) {
  T v = 0;
  for (size_t i = sizeof(T); i-- > 0;) v = static_cast<T>((v << 8) | p[i]);
  return v;
}

template <typename T>
void store_le(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// ---- writing ------------------------------------------------------------------------------------
class WireWriter {
 public:
  explicit WireWriter(std::vector<uint8_t>& out) : out_(out) {}

  void int_field(const schema::Field& field, int64_t value);
  void f32_field(const schema::Field& field, float value);
  void bytes_field(const schema::Field& field, std::span<const uint8_t> bytes);
  void string_field(const schema::Field& field, std::string_view text);
  void ints_field(const schema::Field& field, std::span<const int64_t> values);
  void floats_field(const schema::Field& field, std::span<const float> values);
  void strings_field(const schema::Field& field, std::span<const std::string> values);

  // A kMessage field whose payload `write(WireWriter&)` produces.
  template <typename WriteFn>
  void message_field(const schema::Field& field, WriteFn&& write) {
    const size_t start = begin_field(field);
    write(*this);
    end_field(field, start);
  }

  // A kList field with one item per element of `items`; `write(WireWriter&, item)` writes one.
  template <typename Items, typename WriteFn>
  void list_field(const schema::Field& field, const Items& items, WriteFn&& write) {
    const size_t start = begin_field(field);
    put_u32(checked_u32(items.size(), field));
    for (const auto& item : items) {
      const size_t item_start = out_.size();
      put_u32(0);
      write(*this, item);
      store_le<uint32_t>(out_.data() + item_start,
                         checked_u32(out_.size() - item_start - 4, field));
    }
    end_field(field, start);
  }

 private:
  size_t begin_field(const schema::Field& field);
  void end_field(const schema::Field& field, size_t start);
  void put_u32(uint32_t v);
  void put_bytes(const void* data, size_t size);
  static uint32_t checked_u32(uint64_t value, const schema::Field& field);

  std::vector<uint8_t>& out_;
};

// ---- reading ------------------------------------------------------------------------------------

// Names where a decoding error happened: "<source>: section 'layers', layer 3: <what broke>".
class Where {
 public:
  Where(const std::string& source, std::string path) : source_(&source), path_(std::move(path)) {}

  template <typename... Parts>
  Where child(Parts&&... parts) const {
    return Where(*source_, detail::concat(path_, ", ", std::forward<Parts>(parts)...));
  }
  template <typename... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    kiln::fail(ErrorCode::kCorruptFile, *source_, ": ", path_, ": ", std::forward<Parts>(parts)...);
  }
  const std::string& source() const { return *source_; }

 private:
  const std::string* source_;
  std::string path_;
};

// Walks the fields of one message. Usage:
//   MessageDecoder m(bytes, where);
//   while (m.next()) {
//     if (m.is(schema::tensor::kName)) name = m.as_string();
//     else if ...            // fields of unknown tags are skipped
//   }
//   m.require(schema::tensor::kDType);
class MessageDecoder {
 public:
  MessageDecoder(std::span<const uint8_t> body, Where where)
      : rest_(body), where_(std::move(where)) {}

  // Moves to the next field; false at the end of the message. Fails on a field that overruns it.
  bool next();
  // True when the current field has `field`'s tag; then checks its wire type and that it did not
  // appear before in this message.
  bool is(const schema::Field& field);
  bool seen(const schema::Field& field) const;
  // Fails naming the message and the field when `field` never appeared.
  void require(const schema::Field& field) const;

  // Typed views of the current field (the one `is` matched).
  int64_t as_int() const;
  // as_int() checked to lie in [lo, hi].
  int64_t as_int_in(int64_t lo, int64_t hi) const;
  float as_f32() const;
  std::span<const uint8_t> as_bytes() const { return payload_; }
  std::string as_string() const;
  std::vector<int64_t> as_ints() const;
  std::vector<float> as_floats() const;
  std::vector<std::string> as_strings() const;
  // The items of a kList field. Their count is checked against the payload size first.
  std::vector<std::span<const uint8_t>> as_list() const;

  const Where& where() const { return where_; }
  // Fails naming the current field.
  template <typename... Parts>
  [[noreturn]] void fail_field(Parts&&... parts) const {
    where_.fail("field '", current_->name, "' (tag ", current_->tag,
                "): ", std::forward<Parts>(parts)...);
  }

 private:
  std::span<const uint8_t> rest_;
  Where where_;
  uint16_t tag_ = 0;
  schema::Wire wire_ = schema::Wire::kInt;
  std::span<const uint8_t> payload_;
  const schema::Field* current_ = nullptr;
  uint64_t seen_mask_ = 0;
};

}  // namespace kiln::format
