#include "base/float8.hpp"

#include <cmath>
#include <limits>

#include "base/half.hpp"

namespace kiln {
namespace {

struct Float8Layout {
  int mantissa_bits;
  int bias;
  uint8_t max_code;  // largest finite magnitude
  bool fnuz;         // 0x80 is the only NaN; no -0, no Inf
  bool has_inf;      // E5M2 only
};

Float8Layout layout_of(Float8Format format) {
  switch (format) {
    case Float8Format::kE4M3FN: return {3, 7, 0x7E, false, false};
    case Float8Format::kE4M3FNUZ: return {3, 8, 0x7F, true, false};
    case Float8Format::kE5M2: return {2, 15, 0x7B, false, true};
    case Float8Format::kE5M2FNUZ: return {2, 16, 0x7F, true, false};
  }
  return {3, 7, 0x7E, false, false};
}

uint8_t nan_code(const Float8Layout& l, uint8_t sign) {
  if (l.fnuz) return 0x80;
  return static_cast<uint8_t>(sign | (l.has_inf ? 0x7E : 0x7F));
}

uint8_t overflow_code(const Float8Layout& l, uint8_t sign, bool saturate) {
  if (saturate) return static_cast<uint8_t>(sign | l.max_code);
  if (l.has_inf) return static_cast<uint8_t>(sign | 0x7C);
  return nan_code(l, sign);
}

}  // namespace

std::optional<Float8Format> float8_format(DType dtype) {
  switch (dtype) {
    case DType::kFloat8E4M3FN: return Float8Format::kE4M3FN;
    case DType::kFloat8E4M3FNUZ: return Float8Format::kE4M3FNUZ;
    case DType::kFloat8E5M2: return Float8Format::kE5M2;
    case DType::kFloat8E5M2FNUZ: return Float8Format::kE5M2FNUZ;
    default: return std::nullopt;
  }
}

float float8_to_float(uint8_t code, Float8Format format) {
  const Float8Layout l = layout_of(format);
  const bool negative = (code & 0x80) != 0;
  const int magnitude = code & 0x7F;
  if (l.fnuz && code == 0x80) return std::numeric_limits<float>::quiet_NaN();
  if (!l.fnuz) {
    if (l.has_inf && magnitude >= 0x7C) {
      if (magnitude == 0x7C) return negative ? -INFINITY : INFINITY;
      return std::numeric_limits<float>::quiet_NaN();
    }
    if (!l.has_inf && magnitude == 0x7F) return std::numeric_limits<float>::quiet_NaN();
  }
  const int exponent = magnitude >> l.mantissa_bits;
  const int mantissa = magnitude & ((1 << l.mantissa_bits) - 1);
  // Subnormals (exponent 0) share the scale of exponent 1 without the implicit one.
  const float significand = exponent == 0 ? static_cast<float>(mantissa)
                                          : static_cast<float>(mantissa + (1 << l.mantissa_bits));
  const int scale = (exponent == 0 ? 1 : exponent) - l.bias - l.mantissa_bits;
  const float value = std::ldexp(significand, scale);
  return negative ? -value : value;
}

uint8_t float_to_float8(float value, Float8Format format, bool saturate) {
  const Float8Layout l = layout_of(format);
  const uint32_t bits = float_to_bits(value);
  const auto sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return nan_code(l, sign);
  if (abs == 0x7F800000u) return overflow_code(l, sign, saturate);
  // Codes are monotonic in magnitude: subnormals count quanta of 2^(1 - bias - mantissa_bits) and
  // a normal's code is (exponent << mantissa_bits) + mantissa, so a mantissa carry rolls into the
  // exponent and rounding can work on codes directly.
  const int float_exponent = static_cast<int>(abs >> 23) - 127;
  const int min_normal_exponent = 1 - l.bias;
  uint32_t code = 0;
  if (float_exponent < min_normal_exponent) {
    // |value| * 2^(bias - 1 + mantissa_bits) is exact in float32; nearbyint rounds half to even
    // under the default rounding mode.
    const float quanta = std::ldexp(std::fabs(value), l.bias - 1 + l.mantissa_bits);
    code = static_cast<uint32_t>(std::nearbyint(quanta));
  } else {
    const int exponent = float_exponent + l.bias;
    if (exponent > 0x7F >> l.mantissa_bits) return overflow_code(l, sign, saturate);
    const int shift = 23 - l.mantissa_bits;
    const uint32_t mantissa = abs & 0x7FFFFFu;
    uint32_t kept = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1u))) ++kept;
    code = (static_cast<uint32_t>(exponent) << l.mantissa_bits) + kept;
  }
  if (code > l.max_code) return overflow_code(l, sign, saturate);
  if (code == 0 && l.fnuz) return 0;
  return static_cast<uint8_t>(sign | code);
}

std::optional<E8M0Rounding> e8m0_rounding_from_name(std::string_view name) {
  if (name == "up") return E8M0Rounding::kUp;
  if (name == "down") return E8M0Rounding::kDown;
  if (name == "nearest") return E8M0Rounding::kNearest;
  return std::nullopt;
}

float float8e8m0_to_float(uint8_t code) {
  if (code == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  if (code == 0) return bits_to_float(0x00400000u);  // 2^-127
  return bits_to_float(static_cast<uint32_t>(code) << 23);
}

uint8_t float_to_float8e8m0(float value, bool saturate, E8M0Rounding rounding) {
  const uint32_t bits = float_to_bits(value);
  const uint32_t exponent = (bits >> 23) & 0xFFu;
  if (exponent == 0xFFu) return 0xFF;
  bool round_up = false;
  switch (rounding) {
    case E8M0Rounding::kUp: round_up = (bits & 0x7FFFFFu) != 0; break;
    case E8M0Rounding::kDown: break;
    case E8M0Rounding::kNearest: {
      const bool guard = (bits & 0x400000u) != 0;
      const bool round_bit = (bits & 0x200000u) != 0;
      const bool sticky = (bits & 0x1FFFFFu) != 0;
      round_up = guard && (round_bit || sticky || exponent > 0);
      break;
    }
  }
  if (round_up && saturate && exponent == 0xFEu) round_up = false;
  return static_cast<uint8_t>(exponent + (round_up ? 1 : 0));  // 0xFE + 1 = 0xFF, NaN
}

}  // namespace kiln
