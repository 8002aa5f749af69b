// float8 <-> float32 conversions on the host, bit-exact with ONNX's Cast (opset 19+): round to
// nearest even; with saturate, values beyond the largest finite value (±Inf included) become
// ±max; without it they become Inf (E5M2) or NaN (the other three formats). The FNUZ formats
// have no -0 (it encodes NaN) and one NaN code, 0x80.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "kiln/types.hpp"

namespace kiln {

enum class Float8Format : uint8_t {
  kE4M3FN,    // bias 7, no Inf, NaN = S.1111.111, max 448
  kE4M3FNUZ,  // bias 8, no Inf, no -0, NaN = 0x80, max 240
  kE5M2,      // bias 15, IEEE-like: Inf = S.11111.00, NaN = S.11111.xx, max 57344
  kE5M2FNUZ,  // bias 16, no Inf, no -0, NaN = 0x80, max 57344
};

// The format of a float8 dtype; nullopt for every other dtype.
std::optional<Float8Format> float8_format(DType dtype);

// The value of float8 code `code` (exact: every float8 value is a float32 value).
float float8_to_float(uint8_t code, Float8Format format);

// `value` rounded to nearest even in `format`. NaN gives NaN; ±0 keeps its sign except in the
// FNUZ formats (+0). Magnitudes that round beyond the format's largest finite value give ±max
// when `saturate`, else ±Inf (E5M2) or NaN.
uint8_t float_to_float8(float value, Float8Format format, bool saturate);

// float8e8m0 (the OCP MX scale type): a biased exponent alone, 2^(code - 127); code 0xFF is NaN.
// Cast's `round_mode` (opset 24) picks how a float32 between two powers of two rounds.
enum class E8M0Rounding : uint8_t {
  kUp,       // "up": any mantissa bits round up (the default)
  kDown,     // "down": the mantissa is dropped
  kNearest,  // "nearest": by the first dropped bit, a tie rounding up unless the exponent is 0
};

// "up", "down" or "nearest"; nullopt for another name.
std::optional<E8M0Rounding> e8m0_rounding_from_name(std::string_view name);

// The value of float8e8m0 code `code` (code 0 is 2^-127, a float32 subnormal).
float float8e8m0_to_float(uint8_t code);

// `value`'s exponent field rounded per `rounding`, as ONNX's reference (onnx.numpy_helper.
// to_float8e8m0) computes it: the sign is ignored; NaN and ±Inf give 0xFF (NaN); zero and
// subnormals have exponent 0 (rounding up to 1 when any mantissa bit is set, for kUp). A value
// rounding past 2^127 gives 2^127 (0xFE) when `saturate`, else NaN.
uint8_t float_to_float8e8m0(float value, bool saturate, E8M0Rounding rounding);

}  // namespace kiln
