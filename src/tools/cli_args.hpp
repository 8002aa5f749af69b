// Command-line parsing shared by the kiln subcommands: a cursor over the arguments that
// understands "--flag value" and "--flag=value", and the usage error they raise.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "kiln/types.hpp"

namespace kiln::tools {

// A mistake in how the command was called (unknown flag, missing value, bad number). The CLI
// reports it on stderr and exits with status 2; kiln::Error exits with status 1.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

class ArgCursor {
 public:
  explicit ArgCursor(std::span<const std::string> args) : args_(args) {}

  // Moves to the next argument; false when none is left.
  bool next();
  // The current argument's flag name ("--fp16" for "--fp16" and for "--out=x"), or the whole
  // argument when it is positional.
  const std::string& flag() const { return flag_; }
  bool is_positional() const { return positional_; }
  // The current flag's value: the text after '=', else the next argument. Throws UsageError
  // when there is none.
  std::string value();
  // For flags whose value is optional and a count: the text after '=', else the next argument when
  // it is a decimal number (consumed), else nothing.
  std::optional<std::string> count_value_if_given();
  // For flags without a value: throws UsageError when one was given with '='.
  void expect_no_value() const;
  // Throws UsageError("unknown option ...") or ("unexpected argument ...") for the current one.
  [[noreturn]] void reject() const;

 private:
  std::span<const std::string> args_;
  size_t index_ = 0;
  bool started_ = false;
  std::string flag_;
  std::string inline_value_;
  bool has_inline_value_ = false;
  bool positional_ = false;
};

// Parses a non-negative decimal integer (optionally with a K/M/G binary suffix when
// `allow_suffix`); throws UsageError naming `what`.
uint64_t parse_unsigned(const std::string& text, const std::string& what,
                        bool allow_suffix = false);
// Parses a non-negative decimal number of seconds ("2", "0.5"); throws UsageError naming `what`.
double parse_seconds(const std::string& text, const std::string& what);
// Parses --threads' value: 0 (the default) to kiln::kMaxContextThreads; throws UsageError.
int parse_threads(const std::string& text);
// Parses "1x3x224x224" (a scalar is the empty string or "scalar").
Shape parse_dims(const std::string& text, const std::string& what);

}  // namespace kiln::tools
