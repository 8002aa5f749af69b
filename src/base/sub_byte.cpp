#include "base/sub_byte.hpp"

#include <cmath>

namespace kiln {
namespace {

constexpr float kFloat4Magnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

bool is_signed_sub_byte(DType dtype) { return dtype == DType::kInt4 || dtype == DType::kInt2; }

}  // namespace

int sub_byte_int_value(uint8_t byte, DType dtype) {
  const int bits = dtype_bits(dtype);
  const int mask = (1 << bits) - 1;
  const int low = byte & mask;
  if (!is_signed_sub_byte(dtype)) return low;
  const int sign = 1 << (bits - 1);
  return (low ^ sign) - sign;  // sign-extends the top bit of the field
}

std::pair<int, int> sub_byte_int_range(DType dtype) {
  const int bits = dtype_bits(dtype);
  if (is_signed_sub_byte(dtype)) return {-(1 << (bits - 1)), (1 << (bits - 1)) - 1};
  return {0, (1 << bits) - 1};
}

uint8_t sub_byte_int_wrap(int64_t value, DType dtype) {
  const int value_bits = static_cast<int>(static_cast<uint64_t>(value) & 0xFFu);
  return static_cast<uint8_t>(sub_byte_int_value(static_cast<uint8_t>(value_bits), dtype));
}

uint8_t sub_byte_int_from_double(double value, DType dtype) {
  if (std::isnan(value)) return 0;
  const double truncated = std::trunc(value);
  const auto [lowest, highest] = sub_byte_int_range(dtype);
  if (truncated < lowest || truncated > highest) return 0;
  return static_cast<uint8_t>(static_cast<int>(truncated));
}

float float4e2m1_to_float(uint8_t code) {
  const float magnitude = kFloat4Magnitudes[code & 0x7];
  return (code & 0x8) != 0 ? -magnitude : magnitude;
}

uint8_t double_to_float4e2m1(double value) {
  const uint8_t sign = std::signbit(value) ? 0x8 : 0x0;
  if (std::isnan(value)) return sign ^ 0x8;
  const double magnitude = std::fabs(value);
  // The nearest of the 8 magnitudes; a tie goes to the even code (its mantissa bit 0).
  uint8_t best = 7;
  for (uint8_t code = 0; code < 7; ++code) {
    const double midpoint = (kFloat4Magnitudes[code] + kFloat4Magnitudes[code + 1]) / 2.0;
    if (magnitude < midpoint || (magnitude == midpoint && code % 2 == 0)) {
      best = code;
      break;
    }
  }
  return static_cast<uint8_t>(sign | best);
}

double sub_byte_to_double(uint8_t byte, DType dtype) {
  if (dtype == DType::kFloat4E2M1) return float4e2m1_to_float(byte);
  return sub_byte_int_value(byte, dtype);
}

void unpack_sub_byte(const uint8_t* packed, int64_t count, DType dtype, uint8_t* out) {
  const int bits = dtype_bits(dtype);
  const int per_byte = 8 / bits;
  const int mask = (1 << bits) - 1;
  for (int64_t i = 0; i < count; ++i) {
    const int shift = bits * static_cast<int>(i % per_byte);
    const auto field = static_cast<uint8_t>((packed[i / per_byte] >> shift) & mask);
    out[i] = dtype == DType::kFloat4E2M1 ? field
                                         : static_cast<uint8_t>(sub_byte_int_value(field, dtype));
  }
}

int64_t packed_sub_byte_size(int64_t count, DType dtype) {
  const int64_t per_byte = 8 / dtype_bits(dtype);
  return (count + per_byte - 1) / per_byte;
}

}  // namespace kiln
