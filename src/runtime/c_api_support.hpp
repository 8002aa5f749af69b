// Shared by the runtime's and the builder's C APIs: the thread-local last-error message and the
// translation of exceptions into status codes, so no exception crosses the C boundary.
#pragma once

#include <new>
#include <stdexcept>
#include <string>

#include "kiln/kiln.h"
#include "kiln/types.hpp"

namespace kiln::capi {

void set_last_error(std::string message);
void clear_last_error();
// The last error becomes a + b + c + d. Never throws: when memory is short it keeps as much as fits
// (at worst `a` alone, or nothing), because it runs while an out-of-memory error is reported.
void set_message_noexcept(const char* a, const char* b, const char* c, const char* d) noexcept;
// The calling thread's last message ("" when the last call succeeded).
const char* last_error();
kiln_status to_status(ErrorCode code);

// Runs `body` (returning void) for the C entry point `call` (its name, e.g. "kiln_context_execute"),
// so that no exception crosses the C boundary: kiln::Error gives its status and message;
// std::bad_alloc, and std::length_error (a size past what a container can hold), give
// KILN_ERROR_OUT_OF_MEMORY; any other exception KILN_ERROR_INTERNAL. The messages of the latter name
// `call` first and keep the exception's own text after it.
template <typename Body>
kiln_status guarded(const char* call, Body&& body) noexcept {
  try {
    clear_last_error();
    body();
    return KILN_OK;
  } catch (const Error& e) {
    set_message_noexcept(e.what(), "", "", "");
    return to_status(e.code());
  } catch (const std::bad_alloc& e) {
    set_message_noexcept(call, ": out of memory (", e.what(), ")");
    return KILN_ERROR_OUT_OF_MEMORY;
  } catch (const std::length_error& e) {
    set_message_noexcept(call, ": a size too large to allocate (std::length_error: ", e.what(), ")");
    return KILN_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_message_noexcept(call, ": internal error: ", e.what(), "");
    return KILN_ERROR_INTERNAL;
  } catch (...) {
    set_message_noexcept(call, ": internal error: unknown exception", "", "");
    return KILN_ERROR_INTERNAL;
  }
}

}  // namespace kiln::capi
