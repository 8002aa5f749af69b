#include "tools/cli_args.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <limits>

#include "kiln/runtime.hpp"

namespace kiln::tools {

bool ArgCursor::next() {
  if (started_) ++index_;
  started_ = true;
  if (index_ >= args_.size()) return false;
  const std::string& arg = args_[index_];
  has_inline_value_ = false;
  inline_value_.clear();
  positional_ = arg.size() < 2 || arg[0] != '-' || arg == "-";
  if (positional_) {
    flag_ = arg;
    return true;
  }
  const size_t eq = arg.find('=');
  if (eq != std::string::npos && arg.rfind("--", 0) == 0) {
    flag_ = arg.substr(0, eq);
    inline_value_ = arg.substr(eq + 1);
    has_inline_value_ = true;
  } else {
    flag_ = arg;
  }
  return true;
}

std::string ArgCursor::value() {
  if (has_inline_value_) return inline_value_;
  if (index_ + 1 >= args_.size()) throw UsageError("option " + flag_ + " needs a value");
  ++index_;
  return args_[index_];
}

std::optional<std::string> ArgCursor::count_value_if_given() {
  if (has_inline_value_) return inline_value_;
  if (index_ + 1 >= args_.size()) return std::nullopt;
  const std::string& next = args_[index_ + 1];
  if (next.empty() || !std::all_of(next.begin(), next.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  ++index_;
  return next;
}

void ArgCursor::expect_no_value() const {
  if (has_inline_value_) throw UsageError("option " + flag_ + " takes no value");
}

void ArgCursor::reject() const {
  if (positional_) throw UsageError("unexpected argument '" + flag_ + "'");
  throw UsageError("unknown option '" + flag_ + "'");
}

uint64_t parse_unsigned(const std::string& text, const std::string& what, bool allow_suffix) {
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      throw UsageError(what + ": '" + text + "' is too large");
    }
    value = value * 10 + digit;
  }
  if (i == 0) throw UsageError(what + ": expected a non-negative integer, got '" + text + "'");
  if (i < text.size()) {
    uint64_t scale = 0;
    if (allow_suffix && i + 1 == text.size()) {
      switch (std::toupper(static_cast<unsigned char>(text[i]))) {
        case 'K':
          scale = uint64_t{1} << 10;
          break;
        case 'M':
          scale = uint64_t{1} << 20;
          break;
        case 'G':
          scale = uint64_t{1} << 30;
          break;
        default:
          break;
      }
    }
    if (scale == 0)
      throw UsageError(what + ": expected a non-negative integer, got '" + text + "'");
    if (value > std::numeric_limits<uint64_t>::max() / scale) {
      throw UsageError(what + ": '" + text + "' is too large");
    }
    value *= scale;
  }
  return value;
}

double parse_seconds(const std::string& text, const std::string& what) {
  const bool plain = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.';
  }) && std::count(text.begin(), text.end(), '.') <= 1 && text != ".";
  if (!plain) throw UsageError(what + ": expected a number of seconds, got '" + text + "'");
  const double seconds = std::strtod(text.c_str(), nullptr);
  if (seconds > 1e7) throw UsageError(what + ": '" + text + "' is too long");
  return seconds;
}

int parse_threads(const std::string& text) {
  const uint64_t threads = parse_unsigned(text, "--threads");
  if (threads > static_cast<uint64_t>(kMaxContextThreads)) {
    throw UsageError("--threads: expected 0 to " + std::to_string(kMaxContextThreads) + ", got " + text);
  }
  return static_cast<int>(threads);
}

Shape parse_dims(const std::string& text, const std::string& what) {
  Shape dims;
  if (text.empty() || text == "scalar") return dims;
  size_t start = 0;
  while (true) {
    const size_t end = text.find('x', start);
    const std::string part = text.substr(start, end == std::string::npos ? end : end - start);
    const uint64_t dim = parse_unsigned(part, what);
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw UsageError(what + ": dimension '" + part + "' is too large");
    }
    dims.push_back(static_cast<int64_t>(dim));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return dims;
}

}  // namespace kiln::tools
