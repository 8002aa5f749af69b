#include "base/json.hpp"

#include <charconv>
#include <cmath>
#include <limits>

#include "base/error.hpp"

namespace kiln::json {

std::string_view type_name(Type type) {
  switch (type) {
    case Type::kNull:
      return "null";
    case Type::kBool:
      return "boolean";
    case Type::kNumber:
      return "number";
    case Type::kString:
      return "string";
    case Type::kArray:
      return "array";
    case Type::kObject:
      return "object";
  }
  return "unknown";
}

Value::Value(uint64_t v) : type_(Type::kNumber), number_(static_cast<double>(v)) {
  if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    is_integer_ = true;
    int_ = static_cast<int64_t>(v);
  }
}

void Value::expect(Type type, std::string_view what) const {
  if (type_ != type) {
    fail(ErrorCode::kInvalidArgument, what, ": expected ", type_name(type), ", got ",
         type_name(type_));
  }
}

bool Value::as_bool(std::string_view what) const {
  expect(Type::kBool, what);
  return bool_;
}

double Value::as_number(std::string_view what) const {
  expect(Type::kNumber, what);
  return number_;
}

int64_t Value::as_int64(std::string_view what) const {
  expect(Type::kNumber, what);
  if (!is_integer_) fail(ErrorCode::kInvalidArgument, what, ": expected an integer, got ", number_);
  return int_;
}

const std::string& Value::as_string(std::string_view what) const {
  expect(Type::kString, what);
  return string_;
}

const Array& Value::as_array(std::string_view what) const {
  expect(Type::kArray, what);
  return array_;
}

Array& Value::as_array(std::string_view what) {
  expect(Type::kArray, what);
  return array_;
}

const Object& Value::as_object(std::string_view what) const {
  expect(Type::kObject, what);
  return object_;
}

Object& Value::as_object(std::string_view what) {
  expect(Type::kObject, what);
  return object_;
}

const Value* Value::find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const auto& [name, member] : object_)
    if (name == key) return &member;
  return nullptr;
}

void Value::set(std::string key, Value value) {
  expect(Type::kObject, "JSON set");
  for (auto& [name, member] : object_) {
    if (name == key) {
      member = std::move(value);
      return;
    }
  }
  object_.emplace_back(std::move(key), std::move(value));
}

bool Value::operator==(const Value& other) const {
  if (type_ != other.type_) return false;
  switch (type_) {
    case Type::kNull:
      return true;
    case Type::kBool:
      return bool_ == other.bool_;
    case Type::kNumber:
      if (is_integer_ && other.is_integer_) return int_ == other.int_;
      return number_ == other.number_;
    case Type::kString:
      return string_ == other.string_;
    case Type::kArray:
      return array_ == other.array_;
    case Type::kObject:
      return object_ == other.object_;
  }
  return false;
}

// ---- serializer (the parser is in json_parse.cpp) ---------------------------------------------

namespace {

void serialize_string(const std::string& s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 15];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void serialize_into(const Value& value, std::string& out) {
  switch (value.type()) {
    case Type::kNull:
      out += "null";
      return;
    case Type::kBool:
      out += value.as_bool() ? "true" : "false";
      return;
    case Type::kNumber: {
      char buffer[64];
      if (value.is_integer()) {
        const auto result = std::to_chars(buffer, buffer + sizeof buffer, value.as_int64());
        out.append(buffer, result.ptr);
        return;
      }
      const double d = value.as_number();
      if (!std::isfinite(d))
        fail(ErrorCode::kInvalidArgument, "JSON cannot represent the number ", d);
      // Shortest text that reads back as the same double.
      const auto result = std::to_chars(buffer, buffer + sizeof buffer, d);
      out.append(buffer, result.ptr);
      return;
    }
    case Type::kString:
      serialize_string(value.as_string(), out);
      return;
    case Type::kArray: {
      out += '[';
      bool first = true;
      for (const Value& element : value.as_array()) {
        if (!first) out += ',';
        first = false;
        serialize_into(element, out);
      }
      out += ']';
      return;
    }
    case Type::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : value.as_object()) {
        if (!first) out += ',';
        first = false;
        serialize_string(key, out);
        out += ':';
        serialize_into(member, out);
      }
      out += '}';
      return;
    }
  }
}

}  // namespace

std::string serialize(const Value& value) {
  std::string out;
  serialize_into(value, out);
  return out;
}

}  // namespace kiln::json
