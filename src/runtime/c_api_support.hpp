// Shared by the runtime's and the builder's C APIs: the thread-local last-error message and the
// translation of exceptions into status codes, so no exception crosses the C boundary.
#pragma once

#include <string>

#include "kiln/kiln.h"
#include "kiln/types.hpp"

namespace kiln::capi {

void set_last_error(std::string message);
void clear_last_error();
// The calling thread's last message ("" when the last call succeeded).
const char* last_error();
kiln_status to_status(ErrorCode code);

// Runs `body` (returning void); maps kiln::Error to its status, std::bad_alloc to
// KILN_ERROR_OUT_OF_MEMORY and anything else to KILN_ERROR_INTERNAL, recording the message.
template <typename Body>
kiln_status guarded(Body&& body) noexcept {
  try {
    clear_last_error();
    body();
    return KILN_OK;
  } catch (const Error& e) {
    set_last_error(e.what());
    return to_status(e.code());
  } catch (const std::bad_alloc&) {
    set_last_error("out of memory");
    return KILN_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(std::string("internal error: ") + e.what());
    return KILN_ERROR_INTERNAL;
  } catch (...) {
    set_last_error("internal error: unknown exception");
    return KILN_ERROR_INTERNAL;
  }
}

}  // namespace kiln::capi
