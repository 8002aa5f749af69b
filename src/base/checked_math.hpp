// Size arithmetic that cannot overflow. Dims come from untrusted engine files, ONNX models and
// input values, so every element count, byte size and stride kiln derives from them goes through
// these helpers: an overflow becomes a kiln::Error instead of a wrapped (wrong, often tiny) size.
//
// The rule for a shape is stricter than "the element count fits": the product of its *non-zero*
// dims, times the element size, must fit in int64. Then every stride, every partial product and
// every byte offset inside the tensor fits too, also for a shape with a zero dim such as
// [0, 2^40, 2^40] (whose count is 0 but whose stride along dim 0 would overflow).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include "base/error.hpp"
#include "kiln/types.hpp"

namespace kiln {

// The largest element count or byte size kiln represents: 2^63 - 1.
inline constexpr int64_t kMaxSize = std::numeric_limits<int64_t>::max();

// a + b, or nullopt when it does not fit in int64.
[[nodiscard]] inline std::optional<int64_t> add_no_overflow(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

// a * b, or nullopt when it does not fit in int64.
[[nodiscard]] inline std::optional<int64_t> mul_no_overflow(int64_t a, int64_t b) {
  int64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// a + b. Throws kInvalidArgument "<what>: <a> + <b> overflows 64-bit arithmetic" when it does not
// fit; `what` names the node/tensor/dimension being computed.
inline int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  if (const auto sum = add_no_overflow(a, b)) return *sum;
  fail(ErrorCode::kInvalidArgument, what, ": ", a, " + ", b, " overflows 64-bit arithmetic");
}

// a * b, failing like checked_add.
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  if (const auto product = mul_no_overflow(a, b)) return *product;
  fail(ErrorCode::kInvalidArgument, what, ": ", a, " * ", b, " overflows 64-bit arithmetic");
}

// Needs every dim >= 0 (kDynamicDim dims are skipped: they count as unknown, not as -1).
// Returns the element count, or nullopt when the product of the non-zero dims times
// `element_size` exceeds kMaxSize (see the rule above). Dynamic dims make the count meaningless
// but the check still useful: a shape whose static part already overflows can never be run.
[[nodiscard]] inline std::optional<int64_t> element_count_no_overflow(const Shape& shape,
                                                                      int64_t element_size = 1) {
  int64_t nonzero = element_size;
  int64_t count = 1;
  for (const int64_t d : shape) {
    if (d == kDynamicDim) continue;
    if (d < 0) return std::nullopt;
    if (d == 0) {
      count = 0;
      continue;
    }
    const auto next = mul_no_overflow(nonzero, d);
    if (!next) return std::nullopt;
    nonzero = *next;
    count *= d;  // |count| <= nonzero / element_size, so this cannot overflow
  }
  return count;
}

// Byte size of a static shape of `dtype`, or nullopt when it breaks the rule above.
[[nodiscard]] inline std::optional<int64_t> byte_size_no_overflow(const Shape& shape, DType dtype) {
  const auto element_size = static_cast<int64_t>(dtype_size(dtype));
  const auto count = element_count_no_overflow(shape, element_size);
  if (!count) return std::nullopt;
  return *count * element_size;
}

// True when the static dims of `shape` (dynamic dims skipped) obey the rule for `dtype`.
[[nodiscard]] inline bool static_dims_fit(const Shape& shape, DType dtype) {
  return element_count_no_overflow(shape, static_cast<int64_t>(dtype_size(dtype))).has_value();
}

// Element count of a static shape. Throws kInvalidArgument "<what>: shape [..] has a dynamic
// dimension" or "<what>: shape [..] has more elements than 64-bit sizes can count".
inline int64_t checked_element_count(const Shape& shape, std::string_view what) {
  if (!shape_is_static(shape)) {
    fail(ErrorCode::kInvalidArgument, what, ": shape ", shape_to_string(shape), " is not static");
  }
  if (const auto count = element_count_no_overflow(shape)) return *count;
  fail(ErrorCode::kInvalidArgument, what, ": shape ", shape_to_string(shape),
       " has more elements than 64-bit sizes can count");
}

// Byte size of a static shape of `dtype`. Throws kInvalidArgument naming `what`, the dtype and
// the dims when it is not static or its byte size (or a stride) does not fit in int64.
inline int64_t checked_byte_size(const Shape& shape, DType dtype, std::string_view what) {
  if (!shape_is_static(shape)) {
    fail(ErrorCode::kInvalidArgument, what, ": shape ", shape_to_string(shape), " is not static");
  }
  if (const auto bytes = byte_size_no_overflow(shape, dtype)) return *bytes;
  fail(ErrorCode::kInvalidArgument, what, ": ", dtype_name(dtype), shape_to_string(shape),
       " is larger than 2^63 - 1 bytes");
}

}  // namespace kiln
