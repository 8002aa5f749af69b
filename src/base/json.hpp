// A small JSON value type with a strict parser (RFC 8259; nlohmann/json lexes, json_parse.cpp)
// and a serializer (json.cpp). Used for builder configuration and engine metadata; not meant for
// large documents.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::json {

class Value;
using Array = std::vector<Value>;
// Objects keep their members in document order; keys are unique (the parser rejects duplicates).
using Object = std::vector<std::pair<std::string, Value>>;

enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
std::string_view type_name(Type type);

class Value {
 public:
  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::kBool), bool_(b) {}
  Value(int v) : Value(static_cast<int64_t>(v)) {}
  Value(int64_t v)
      : type_(Type::kNumber), is_integer_(true), int_(v), number_(static_cast<double>(v)) {}
  Value(uint64_t v);
  Value(double v) : type_(Type::kNumber), number_(v) {}
  Value(const char* s) : type_(Type::kString), string_(s) {}
  Value(std::string s) : type_(Type::kString), string_(std::move(s)) {}
  Value(std::string_view s) : type_(Type::kString), string_(s) {}
  Value(Array a) : type_(Type::kArray), array_(std::move(a)) {}
  Value(Object o) : type_(Type::kObject), object_(std::move(o)) {}

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  // A number written without fraction or exponent that fits int64 (or constructed from an integer).
  bool is_integer() const { return type_ == Type::kNumber && is_integer_; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }

  // Typed accessors throw kiln::Error(kInvalidArgument) "expected <type>, got <type>" on a
  // mismatch; `what` (e.g. "config key 'device'") prefixes the message.
  bool as_bool(std::string_view what = "JSON value") const;
  double as_number(std::string_view what = "JSON value") const;
  int64_t as_int64(std::string_view what = "JSON value") const;
  const std::string& as_string(std::string_view what = "JSON value") const;
  const Array& as_array(std::string_view what = "JSON value") const;
  Array& as_array(std::string_view what = "JSON value");
  const Object& as_object(std::string_view what = "JSON value") const;
  Object& as_object(std::string_view what = "JSON value");

  // Object member lookup; null when absent or when this is not an object.
  const Value* find(std::string_view key) const;
  // Sets (replaces or appends) an object member. Requires an object.
  void set(std::string key, Value value);

  bool operator==(const Value& other) const;

 private:
  void expect(Type type, std::string_view what) const;

  Type type_ = Type::kNull;
  bool bool_ = false;
  bool is_integer_ = false;
  int64_t int_ = 0;
  double number_ = 0.0;
  std::string string_;
  Array array_;
  Object object_;
};

struct ParseOptions {
  size_t max_depth = 128;       // nesting of arrays/objects
  std::string source = "JSON";  // names the document in error messages
};

// Parses exactly one JSON value (surrounding whitespace allowed). Throws kiln::Error
// (kInvalidArgument) "<source>: line L, column C: <problem>" for anything that is not strict JSON:
// trailing commas, comments, single quotes, control characters in strings, invalid escapes or
// UTF-8, lone surrogates, leading zeros, NaN/Infinity, duplicate object keys, trailing content,
// nesting deeper than max_depth.
Value parse(std::string_view text, const ParseOptions& options = {});

// Compact JSON text. Non-ASCII is written as UTF-8. Throws kInvalidArgument for a non-finite
// number (JSON cannot express it).
std::string serialize(const Value& value);

}  // namespace kiln::json
