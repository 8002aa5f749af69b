// kiln::json::parse on nlohmann/json's SAX parser: the library does the lexing and the strictness
// of RFC 8259 (escapes, UTF-8, surrogates, number forms, no comments or trailing commas); this
// file builds kiln's Value from its events and adds what the library leaves to its caller:
// duplicate object keys are refused, nesting is bounded, errors name where they are.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "base/json.hpp"

namespace kiln::json {
namespace {

// "line L, column C" of the byte at `offset` (1-based, columns in bytes).
std::string line_and_column(std::string_view text, size_t offset) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// The library's message without its "[json.exception.parse_error.101] parse error at line L,
// column C: " prefix (kiln writes the place itself).
std::string library_problem(const std::string& what) {
  std::string problem = what;
  if (const size_t bracket = problem.find("] "); problem.rfind("[json.exception.", 0) == 0 &&
                                                 bracket != std::string::npos) {
    problem.erase(0, bracket + 2);
  }
  if (const size_t colon = problem.find(": "); problem.rfind("parse error", 0) == 0 &&
                                               colon != std::string::npos) {
    problem.erase(0, colon + 2);
  }
  // The message quotes the input it read, which may be any bytes: kiln's messages stay printable
  // ASCII (callers decode them as UTF-8).
  static constexpr char kHex[] = "0123456789abcdef";
  std::string printable;
  for (const char c : problem) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) {
      printable += c;
    } else {
      printable += "\\x";
      printable += kHex[byte >> 4];
      printable += kHex[byte & 15];
    }
  }
  return printable;
}

// Receives the library's SAX events. Returning false stops the parse; `problem_` then says why.
class ValueBuilder {
 public:
  explicit ValueBuilder(const ParseOptions& options) : options_(options) {}

  bool null() { return put(Value(nullptr)); }
  bool boolean(bool value) { return put(Value(value)); }
  bool number_integer(nlohmann::json::number_integer_t value) { return put(Value(static_cast<int64_t>(value))); }
  // Above int64's range the value stays a number, not an integer (Value(uint64_t) decides).
  bool number_unsigned(nlohmann::json::number_unsigned_t value) { return put(Value(static_cast<uint64_t>(value))); }
  bool number_float(nlohmann::json::number_float_t value, const std::string&) { return put(Value(value)); }
  bool string(std::string& value) { return put(Value(std::move(value))); }
  bool binary(nlohmann::json::binary_t&) { return stop("binary values are not JSON"); }

  bool start_object(size_t) { return open(Value(Object{})); }
  bool key(std::string& key) {
    Frame& frame = frames_.back();
    if (!frame.keys.insert(key).second) {
      return stop("duplicate key \"" + key + "\" in the object at " + path(frames_.size() - 1));
    }
    frame.key = std::move(key);
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(size_t) { return open(Value(Array{})); }
  bool end_array() { return close(); }

  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception& error) {
    error_position_ = position;
    problem_ = library_problem(error.what());
    return false;
  }

  Value take_root() { return std::move(root_); }
  const std::string& problem() const { return problem_; }
  // Where the library reported its error (bytes read, so the offending byte is the one before);
  // npos for the builder's own refusals.
  size_t error_position() const { return error_position_; }

 private:
  struct Frame {
    Value value;                           // the array or object being filled
    std::string key;                       // objects: the key of the next member
    std::unordered_set<std::string> keys;  // objects: keys seen so far
  };

  bool stop(std::string problem) {
    problem_ = std::move(problem);
    return false;
  }

  bool open(Value container) {
    if (frames_.size() >= options_.max_depth) {
      return stop("arrays and objects nest deeper than " + std::to_string(options_.max_depth) + " at " +
                  path(frames_.size()));
    }
    frames_.push_back(Frame{std::move(container), {}, {}});
    return true;
  }

  bool close() {
    Value done = std::move(frames_.back().value);
    frames_.pop_back();
    return put(std::move(done));
  }

  bool put(Value value) {
    if (frames_.empty()) {
      root_ = std::move(value);
      return true;
    }
    Frame& frame = frames_.back();
    if (frame.value.is_array()) {
      frame.value.as_array().push_back(std::move(value));
    } else {
      frame.value.as_object().emplace_back(std::move(frame.key), std::move(value));
    }
    return true;
  }

  // The JSONPath-like place ($ is the document) of the value that the first `count` frames lead
  // to: each frame's next element or member.
  std::string path(size_t count) const {
    std::string out = "$";
    for (size_t i = 0; i < count; ++i) {
      const Frame& frame = frames_[i];
      // Appended piece by piece: gcc 12 at -O3 warns falsely (-Wrestrict) on "[" + std::string.
      if (frame.value.is_array()) {
        out += '[';
        out += std::to_string(frame.value.as_array().size());
        out += ']';
      } else {
        out += '.';
        out += frame.key;
      }
    }
    return out;
  }

  const ParseOptions& options_;
  std::vector<Frame> frames_;
  Value root_;
  std::string problem_;
  size_t error_position_ = std::string::npos;
};

}  // namespace

Value parse(std::string_view text, const ParseOptions& options) {
  // The library reads a NUL byte as the end of the input and would ignore what follows; JSON text
  // never holds one (a string escapes it as \u0000).
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos) {
    fail(ErrorCode::kInvalidArgument, options.source, ": ", line_and_column(text, nul),
         ": a NUL byte, which JSON text never contains");
  }
  ValueBuilder builder(options);
  bool parsed = false;
  try {
    parsed = nlohmann::json::sax_parse(text.begin(), text.end(), &builder, nlohmann::json::input_format_t::json,
                                       /*strict=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& error) {  // the library's own refusals outside the SAX path
    fail(ErrorCode::kInvalidArgument, options.source, ": ", library_problem(error.what()));
  }
  if (!parsed) {
    if (builder.error_position() == std::string::npos) {
      fail(ErrorCode::kInvalidArgument, options.source, ": ", builder.problem());
    }
    const size_t offset = builder.error_position() > 0 ? builder.error_position() - 1 : 0;
    fail(ErrorCode::kInvalidArgument, options.source, ": ", line_and_column(text, offset), ": ",
         builder.problem());
  }
  return builder.take_root();
}

}  // namespace kiln::json
