// Optional C++17 helpers for writing a kiln plugin against include/kiln/plugin.h. Header-only and
// inline: nothing here crosses the C boundary, so a plugin using it still loads into a kiln built
// with another compiler or standard library. docs/plugins.md shows them in use.
#pragma once

#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/plugin.h"

namespace kiln::plugin {

// Writes `message` (truncated to fit) into `error` and returns `status`.
inline kiln_status fail(kiln_plugin_error* error, kiln_status status,
                        std::string_view message) noexcept {
  if (error) {
    const size_t n = message.size() < KILN_PLUGIN_ERROR_CAPACITY - 1
                         ? message.size()
                         : KILN_PLUGIN_ERROR_CAPACITY - 1;
    for (size_t i = 0; i < n; ++i) error->message[i] = message[i];
    error->message[n] = '\0';
  }
  return status;
}

// An exception a plugin's code may throw inside guard() to fail with a chosen status.
struct Failure : std::exception {
  Failure(kiln_status status, std::string message) : status(status), message(std::move(message)) {}
  const char* what() const noexcept override { return message.c_str(); }
  kiln_status status;
  std::string message;
};

// Runs `body` (returning void) and turns what it throws into a status and message, so that no
// exception crosses into kiln: Failure gives its status, std::bad_alloc KILN_ERROR_OUT_OF_MEMORY,
// any other std::exception KILN_ERROR_INVALID_ARGUMENT, anything else KILN_ERROR_INTERNAL.
template <typename Body>
kiln_status guard(kiln_plugin_error* error, Body&& body) noexcept {
  try {
    body();
    return KILN_OK;
  } catch (const Failure& e) {
    return fail(error, e.status, e.message);
  } catch (const std::bad_alloc&) {
    return fail(error, KILN_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(error, KILN_ERROR_INVALID_ARGUMENT, e.what());
  } catch (...) {
    return fail(error, KILN_ERROR_INTERNAL, "unknown exception");
  }
}

// The field named `name`, or nullptr.
inline const kiln_plugin_field* find_field(const kiln_plugin_field* fields, int32_t count,
                                           std::string_view name) {
  for (int32_t i = 0; i < count; ++i) {
    if (fields[i].name && name == fields[i].name) return &fields[i];
  }
  return nullptr;
}

// Typed reads with a fallback for an absent field. kiln has checked kinds against the creator's
// field specs before create, so a kind mismatch here is a plugin bug: it throws Failure.
inline const kiln_plugin_field* typed_field(const kiln_plugin_field* fields, int32_t count,
                                            std::string_view name, kiln_plugin_field_kind kind) {
  const kiln_plugin_field* f = find_field(fields, count, name);
  if (f && f->kind != kind)
    throw Failure(KILN_ERROR_INVALID_ARGUMENT,
                  "field '" + std::string(name) + "' has another kind");
  return f;
}
inline int64_t int_field(const kiln_plugin_field* fields, int32_t count, std::string_view name,
                         int64_t fallback) {
  const kiln_plugin_field* f = typed_field(fields, count, name, KILN_PLUGIN_FIELD_INT);
  return f ? f->i : fallback;
}
inline float float_field(const kiln_plugin_field* fields, int32_t count, std::string_view name,
                         float fallback) {
  const kiln_plugin_field* f = typed_field(fields, count, name, KILN_PLUGIN_FIELD_FLOAT);
  return f ? f->f : fallback;
}
inline std::string string_field(const kiln_plugin_field* fields, int32_t count,
                                std::string_view name, std::string fallback) {
  const kiln_plugin_field* f = typed_field(fields, count, name, KILN_PLUGIN_FIELD_STRING);
  return f && f->s ? std::string(f->s) : fallback;
}
inline std::vector<int64_t> ints_field(const kiln_plugin_field* fields, int32_t count,
                                       std::string_view name, std::vector<int64_t> fallback) {
  const kiln_plugin_field* f = typed_field(fields, count, name, KILN_PLUGIN_FIELD_INTS);
  return f ? std::vector<int64_t>(f->ints, f->ints + f->count) : fallback;
}

// Output dimensions (kiln_plugin_output_desc.dims).
inline kiln_plugin_dim value_dim(int64_t size) {
  return {KILN_PLUGIN_DIM_VALUE, size, 0, 0};
}
inline kiln_plugin_dim copy_dim(int32_t input, int32_t input_dim) {
  return {KILN_PLUGIN_DIM_COPY, 0, input, input_dim};
}
inline kiln_plugin_dim data_dependent_dim(int64_t upper_bound) {
  return {KILN_PLUGIN_DIM_DATA_DEPENDENT, upper_bound, 0, 0};
}

// Elements of a run-time tensor (every dimension known).
inline int64_t numel(const kiln_plugin_tensor& t) {
  int64_t n = 1;
  for (int32_t d = 0; d < t.ndim; ++d) n *= t.shape[d];
  return n;
}

}  // namespace kiln::plugin
