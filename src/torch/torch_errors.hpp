// kiln::Error -> c10::Error (Python RuntimeError), so that torch callers see kiln's message.
#pragma once

#include <c10/util/Exception.h>

#include <utility>

#include "kiln/types.hpp"

namespace kiln::torch_integration {

// Runs `body`, turning a kiln::Error into a c10::Error whose message starts with `what` (the op or
// method, e.g. "kiln::execute_engine") and keeps kiln's error class and message.
template <typename Body>
decltype(auto) rethrow_kiln_errors(const char* what, Body&& body) {
  try {
    return std::forward<Body>(body)();
  } catch (const kiln::Error& e) {
    TORCH_CHECK(false, what, ": ", e.what(), " [kiln error: ", error_code_name(e.code()), "]");
  }
}

}  // namespace kiln::torch_integration
