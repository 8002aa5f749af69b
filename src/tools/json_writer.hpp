// A small streaming JSON writer for the CLI's machine-readable output (inspect --json,
// bench --json), and a syntax check for JSON text taken from engine files before embedding it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::tools {

class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // The key of the next value inside an object.
  JsonWriter& key(std::string_view name);
  JsonWriter& value(std::string_view text);
  JsonWriter& value(const char* text) { return value(std::string_view(text)); }
  JsonWriter& value(int64_t number);
  JsonWriter& value(uint64_t number);
  JsonWriter& value(int number) { return value(static_cast<int64_t>(number)); }
  JsonWriter& value(double number);  // NaN and infinities become null
  JsonWriter& value(bool flag);
  JsonWriter& null();
  // Inserts already-valid JSON text as one value.
  JsonWriter& raw(std::string_view json);

  const std::string& str() const { return out_; }

 private:
  void before_value();
  std::string out_;
  std::vector<bool> has_items_;  // one entry per open object/array
  bool after_key_ = false;
};

// `text` as a JSON string literal, quotes included.
std::string json_quote(std::string_view text);
// True when `text` is one syntactically valid JSON value (surrounding whitespace allowed).
bool is_valid_json(std::string_view text);

}  // namespace kiln::tools
