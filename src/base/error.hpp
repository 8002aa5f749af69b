// Internal helpers for raising kiln::Error with a formatted message.
#pragma once

#include <sstream>
#include <string>
#include <utility>

#include "kiln/types.hpp"

namespace kiln {

namespace detail {
template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

// Throws kiln::Error(code, parts joined with operator<<).
template <typename... Parts>
[[noreturn]] void fail(ErrorCode code, Parts&&... parts) {
  throw Error(code, detail::concat(std::forward<Parts>(parts)...));
}

}  // namespace kiln

// Internal invariant check: a failure is a kiln bug, reported as ErrorCode::kInternal.
#define KILN_ASSERT(cond, ...)                                                                 \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      ::kiln::fail(::kiln::ErrorCode::kInternal, "internal error at ", __FILE__, ":", __LINE__, \
                   ": ", #cond, " ", ##__VA_ARGS__);                                           \
    }                                                                                          \
  } while (0)
