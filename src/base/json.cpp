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

// ---- parser
// --------------------------------------------------------------------------------------

namespace {

class Parser {
 public:
  Parser(std::string_view text, const ParseOptions& options) : text_(text), options_(options) {}

  Value parse_document() {
    skip_whitespace();
    Value value = parse_value(0);
    skip_whitespace();
    if (pos_ != text_.size()) error("unexpected content after the JSON value");
    return value;
  }

 private:
  template <typename... Parts>
  [[noreturn]] void error(Parts&&... parts) const {
    error_at(pos_, std::forward<Parts>(parts)...);
  }

  template <typename... Parts>
  [[noreturn]] void error_at(size_t pos, Parts&&... parts) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    fail(ErrorCode::kInvalidArgument, options_.source, ": line ", line, ", column ", column, ": ",
         std::forward<Parts>(parts)...);
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  void skip_whitespace() {
    while (!at_end()) {
      const char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  void expect_literal(std::string_view literal) {
    if (text_.substr(pos_, literal.size()) != literal)
      error("invalid literal (expected '", literal, "')");
    pos_ += literal.size();
  }

  Value parse_value(size_t depth) {
    if (at_end()) error("unexpected end of input, expected a value");
    switch (peek()) {
      case '{':
        return parse_object(depth + 1);
      case '[':
        return parse_array(depth + 1);
      case '"':
        return Value(parse_string());
      case 't':
        expect_literal("true");
        return Value(true);
      case 'f':
        expect_literal("false");
        return Value(false);
      case 'n':
        expect_literal("null");
        return Value(nullptr);
      default:
        break;
    }
    if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number();
    error("unexpected character '", describe(peek()), "', expected a value");
  }

  static std::string describe(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      return std::string("\\x") + kHex[u >> 4] + kHex[u & 15];
    }
    return std::string(1, c);
  }

  void check_depth(size_t depth) const {
    if (depth > options_.max_depth) error("nesting deeper than ", options_.max_depth, " levels");
  }

  Value parse_object(size_t depth) {
    check_depth(depth);
    ++pos_;  // '{'
    Object object;
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
      return Value(std::move(object));
    }
    while (true) {
      skip_whitespace();
      if (peek() != '"') error("expected a string key");
      const size_t key_pos = pos_;
      std::string key = parse_string();
      for (const auto& member : object)
        if (member.first == key) error_at(key_pos, "duplicate key \"", key, "\"");
      skip_whitespace();
      if (peek() != ':') error("expected ':' after an object key");
      ++pos_;
      skip_whitespace();
      Value member = parse_value(depth);
      object.emplace_back(std::move(key), std::move(member));
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return Value(std::move(object));
      }
      error(at_end() ? "unexpected end of input in an object" : "expected ',' or '}' in an object");
    }
  }

  Value parse_array(size_t depth) {
    check_depth(depth);
    ++pos_;  // '['
    Array array;
    skip_whitespace();
    if (peek() == ']') {
      ++pos_;
      return Value(std::move(array));
    }
    while (true) {
      skip_whitespace();
      array.push_back(parse_value(depth));
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return Value(std::move(array));
      }
      error(at_end() ? "unexpected end of input in an array" : "expected ',' or ']' in an array");
    }
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > text_.size()) error("truncated \\u escape");
    uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_];
      uint32_t digit;
      if (c >= '0' && c <= '9') {
        digit = static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = static_cast<uint32_t>(c - 'A' + 10);
      } else {
        error("invalid hex digit in \\u escape");
      }
      code = code * 16 + digit;
      ++pos_;
    }
    return code;
  }

  static void append_utf8(std::string& out, uint32_t code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xC0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xE0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }

  // Copies one UTF-8 encoded character starting at pos_, rejecting malformed, overlong and
  // surrogate encodings.
  void copy_utf8_char(std::string& out) {
    const auto lead = static_cast<unsigned char>(text_[pos_]);
    size_t length;
    uint32_t code;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      code = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      code = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      code = lead & 0x07;
    } else {
      error("invalid UTF-8 byte in a string");
    }
    if (pos_ + length > text_.size()) error("truncated UTF-8 sequence in a string");
    for (size_t i = 1; i < length; ++i) {
      const auto c = static_cast<unsigned char>(text_[pos_ + i]);
      if ((c & 0xC0) != 0x80) error("invalid UTF-8 sequence in a string");
      code = (code << 6) | (c & 0x3F);
    }
    const bool overlong = (length == 3 && code < 0x800) || (length == 4 && code < 0x10000);
    if (overlong || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      error("invalid UTF-8 sequence in a string");
    }
    out.append(text_.substr(pos_, length));
    pos_ += length;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (at_end()) error("unterminated string");
      const char c = text_[pos_];
      const auto u = static_cast<unsigned char>(c);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (u < 0x20) error("control character ", describe(c), " in a string (escape it)");
      if (u >= 0x80) {
        copy_utf8_char(out);
        continue;
      }
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;  // backslash
      if (at_end()) error("unterminated escape in a string");
      const char escape = text_[pos_++];
      switch (escape) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const size_t escape_pos = pos_ - 2;
          uint32_t code = parse_hex4();
          if (code >= 0xDC00 && code <= 0xDFFF)
            error_at(escape_pos, "lone low surrogate in \\u escape");
          if (code >= 0xD800 && code <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u")
              error_at(escape_pos, "high surrogate without a low surrogate");
            pos_ += 2;
            const uint32_t low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF)
              error_at(escape_pos, "high surrogate without a low surrogate");
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, code);
          break;
        }
        default:
          --pos_;
          error("invalid escape '\\", describe(escape), "' in a string");
      }
    }
  }

  Value parse_number() {
    const size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9')
        error_at(start, "leading zeros are not allowed in numbers");
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      error("expected a digit");
    }
    bool integral = true;
    if (peek() == '.') {
      integral = false;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) error("expected a digit after the decimal point");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) error("expected a digit in the exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    const std::string_view literal = text_.substr(start, pos_ - start);
    if (integral) {
      int64_t v = 0;
      const auto [end, ec] = std::from_chars(literal.data(), literal.data() + literal.size(), v);
      if (ec == std::errc() && end == literal.data() + literal.size()) return Value(v);
      // Too large for int64: keep it as a double.
    }
    // std::from_chars for double is locale independent and exact.
    double d = 0.0;
    const auto [end, ec] = std::from_chars(literal.data(), literal.data() + literal.size(), d);
    if (ec == std::errc::result_out_of_range || !std::isfinite(d)) {
      error_at(start, "number ", literal, " is out of range");
    }
    if (ec != std::errc() || end != literal.data() + literal.size())
      error_at(start, "invalid number ", literal);
    return Value(d);
  }

  std::string_view text_;
  const ParseOptions& options_;
  size_t pos_ = 0;
};

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

Value parse(std::string_view text, const ParseOptions& options) {
  return Parser(text, options).parse_document();
}

std::string serialize(const Value& value) {
  std::string out;
  serialize_into(value, out);
  return out;
}

}  // namespace kiln::json
