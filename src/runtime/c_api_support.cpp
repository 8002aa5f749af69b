#include "runtime/c_api_support.hpp"

#include <cstring>

namespace kiln::capi {
namespace {
thread_local std::string g_last_error;
}  // namespace

void set_last_error(std::string message) { g_last_error = std::move(message); }
void clear_last_error() { g_last_error.clear(); }
const char* last_error() { return g_last_error.c_str(); }

void set_message_noexcept(const char* a, const char* b, const char* c, const char* d) noexcept {
  try {
    g_last_error.clear();
    for (const char* part : {a, b, c, d}) g_last_error += part ? part : "";
  } catch (...) {
    // The message's own allocation failed: keep the call's name if that fits (no allocation
    // when the string's capacity already holds it), else nothing.
    g_last_error.clear();
    const size_t length = a ? std::strlen(a) : 0;
    if (a && length <= g_last_error.capacity()) g_last_error.append(a, length);
  }
}

kiln_status to_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return KILN_OK;
    case ErrorCode::kInvalidArgument: return KILN_ERROR_INVALID_ARGUMENT;
    case ErrorCode::kNotFound: return KILN_ERROR_NOT_FOUND;
    case ErrorCode::kUnsupported: return KILN_ERROR_UNSUPPORTED;
    case ErrorCode::kCorruptFile: return KILN_ERROR_CORRUPT_FILE;
    case ErrorCode::kIncompatible: return KILN_ERROR_INCOMPATIBLE;
    case ErrorCode::kDeviceError: return KILN_ERROR_DEVICE;
    case ErrorCode::kOutOfMemory: return KILN_ERROR_OUT_OF_MEMORY;
    case ErrorCode::kIoError: return KILN_ERROR_IO;
    case ErrorCode::kInternal: return KILN_ERROR_INTERNAL;
  }
  return KILN_ERROR_INTERNAL;
}

}  // namespace kiln::capi
