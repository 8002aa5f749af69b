// float8 <-> float32 conversions (base/float8.hpp) against values from the ONNX spec's format
// definitions; tests/python/test_float8_and_qdq.py checks all codes against ml_dtypes and ONNX.
#include <gtest/gtest.h>

#include <cmath>

#include "base/float8.hpp"
#include "base/half.hpp"

namespace kiln {
namespace {

constexpr Float8Format kFormats[] = {Float8Format::kE4M3FN, Float8Format::kE4M3FNUZ,
                                     Float8Format::kE5M2, Float8Format::kE5M2FNUZ};

bool is_fnuz(Float8Format f) { return f == Float8Format::kE4M3FNUZ || f == Float8Format::kE5M2FNUZ; }

TEST(Float8, DtypesMapToFormats) {
  EXPECT_EQ(float8_format(DType::kFloat8E4M3FN), Float8Format::kE4M3FN);
  EXPECT_EQ(float8_format(DType::kFloat8E4M3FNUZ), Float8Format::kE4M3FNUZ);
  EXPECT_EQ(float8_format(DType::kFloat8E5M2), Float8Format::kE5M2);
  EXPECT_EQ(float8_format(DType::kFloat8E5M2FNUZ), Float8Format::kE5M2FNUZ);
  EXPECT_FALSE(float8_format(DType::kUInt8).has_value());
  for (int raw = 17; raw <= 20; ++raw) {
    EXPECT_TRUE(is_valid_dtype(raw));
    EXPECT_EQ(dtype_size(static_cast<DType>(raw)), 1u);
    EXPECT_TRUE(is_float8(static_cast<DType>(raw)));
    EXPECT_FALSE(is_floating(static_cast<DType>(raw)));
  }
  EXPECT_EQ(dtype_name(DType::kFloat8E5M2FNUZ), "float8e5m2fnuz");
}

TEST(Float8, DecodesLandmarkCodes) {
  EXPECT_EQ(float8_to_float(0x7E, Float8Format::kE4M3FN), 448.0f);
  EXPECT_EQ(float8_to_float(0x01, Float8Format::kE4M3FN), std::ldexp(1.0f, -9));
  EXPECT_EQ(float8_to_float(0x08, Float8Format::kE4M3FN), std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(float8_to_float(0x7F, Float8Format::kE4M3FN)));
  EXPECT_TRUE(std::isnan(float8_to_float(0xFF, Float8Format::kE4M3FN)));
  EXPECT_TRUE(std::signbit(float8_to_float(0x80, Float8Format::kE4M3FN)));
  EXPECT_EQ(float8_to_float(0x7F, Float8Format::kE4M3FNUZ), 240.0f);
  EXPECT_EQ(float8_to_float(0x01, Float8Format::kE4M3FNUZ), std::ldexp(1.0f, -10));
  EXPECT_TRUE(std::isnan(float8_to_float(0x80, Float8Format::kE4M3FNUZ)));
  EXPECT_EQ(float8_to_float(0xFF, Float8Format::kE4M3FNUZ), -240.0f);
  EXPECT_EQ(float8_to_float(0x7B, Float8Format::kE5M2), 57344.0f);
  EXPECT_EQ(float8_to_float(0x7C, Float8Format::kE5M2), INFINITY);
  EXPECT_EQ(float8_to_float(0xFC, Float8Format::kE5M2), -INFINITY);
  EXPECT_TRUE(std::isnan(float8_to_float(0x7D, Float8Format::kE5M2)));
  EXPECT_EQ(float8_to_float(0x01, Float8Format::kE5M2), std::ldexp(1.0f, -16));
  EXPECT_EQ(float8_to_float(0x7F, Float8Format::kE5M2FNUZ), 57344.0f);
  EXPECT_EQ(float8_to_float(0x01, Float8Format::kE5M2FNUZ), std::ldexp(1.0f, -17));
  EXPECT_TRUE(std::isnan(float8_to_float(0x80, Float8Format::kE5M2FNUZ)));
}

// Every code that is not NaN encodes back to itself, and decoded values rise with the code.
TEST(Float8, EveryFiniteCodeRoundTrips) {
  for (const Float8Format f : kFormats) {
    float previous = -1.0f;
    for (int code = 0; code < 256; ++code) {
      const float value = float8_to_float(static_cast<uint8_t>(code), f);
      if (std::isnan(value)) continue;
      for (const bool saturate : {true, false}) {
        if (std::isinf(value) && saturate) continue;
        EXPECT_EQ(float_to_float8(value, f, saturate), code) << "format " << int(f) << " value " << value;
      }
      if (code < 128) {
        EXPECT_GT(value, previous) << "format " << int(f) << " code " << code;
        previous = value;
      }
    }
  }
}

// Midpoints between neighbours round to the even code; just above or below, to the nearer one.
TEST(Float8, RoundsToNearestEvenAtEveryBoundary) {
  for (const Float8Format f : kFormats) {
    for (int code = 0; code < 127; ++code) {
      const float low = float8_to_float(static_cast<uint8_t>(code), f);
      const float high = float8_to_float(static_cast<uint8_t>(code + 1), f);
      if (std::isnan(high) || std::isinf(high)) continue;
      const float mid = (low + high) / 2;  // exact: float8 values have few bits
      const int even = (code % 2 == 0) ? code : code + 1;
      EXPECT_EQ(float_to_float8(mid, f, true), even) << "format " << int(f) << " mid " << mid;
      EXPECT_EQ(float_to_float8(std::nextafter(mid, 0.0f), f, true), code);
      EXPECT_EQ(float_to_float8(std::nextafter(mid, INFINITY), f, true), code + 1);
      // The negative side mirrors it (FNUZ has no -0: the code 0 stays positive).
      const int negative_code = (code == 0 && is_fnuz(f)) ? 0 : (code | 0x80);
      EXPECT_EQ(float_to_float8(-std::nextafter(mid, 0.0f), f, true), negative_code);
    }
  }
}

TEST(Float8, OverflowInfinityAndNaNFollowSaturate) {
  // saturate: beyond max (and ±Inf) clamps to ±max.
  EXPECT_EQ(float_to_float8(1e9f, Float8Format::kE4M3FN, true), 0x7E);
  EXPECT_EQ(float_to_float8(-INFINITY, Float8Format::kE4M3FN, true), 0xFE);
  EXPECT_EQ(float_to_float8(INFINITY, Float8Format::kE4M3FNUZ, true), 0x7F);
  EXPECT_EQ(float_to_float8(INFINITY, Float8Format::kE5M2, true), 0x7B);
  EXPECT_EQ(float_to_float8(-1e9f, Float8Format::kE5M2FNUZ, true), 0xFF);
  // 464 lies halfway between 448 and the next step (480): it rounds to even, 448.
  EXPECT_EQ(float_to_float8(464.0f, Float8Format::kE4M3FN, false), 0x7E);
  EXPECT_EQ(float_to_float8(465.0f, Float8Format::kE4M3FN, false), 0x7F);  // NaN
  // no saturate: Inf for E5M2, NaN for the others.
  EXPECT_EQ(float_to_float8(1e9f, Float8Format::kE5M2, false), 0x7C);
  EXPECT_EQ(float_to_float8(-INFINITY, Float8Format::kE5M2, false), 0xFC);
  EXPECT_EQ(float_to_float8(INFINITY, Float8Format::kE4M3FN, false), 0x7F);
  EXPECT_EQ(float_to_float8(-1e9f, Float8Format::kE4M3FNUZ, false), 0x80);
  EXPECT_EQ(float_to_float8(INFINITY, Float8Format::kE5M2FNUZ, false), 0x80);
  for (const Float8Format f : kFormats) {
    for (const bool saturate : {true, false}) {
      EXPECT_TRUE(std::isnan(float8_to_float(float_to_float8(NAN, f, saturate), f)));
      EXPECT_TRUE(std::isnan(float8_to_float(float_to_float8(-NAN, f, saturate), f)));
    }
  }
}

TEST(Float8, ZerosAndTinyValues) {
  EXPECT_EQ(float_to_float8(-0.0f, Float8Format::kE4M3FN, true), 0x80);
  EXPECT_EQ(float_to_float8(-0.0f, Float8Format::kE5M2, true), 0x80);
  EXPECT_EQ(float_to_float8(-0.0f, Float8Format::kE4M3FNUZ, true), 0x00);
  EXPECT_EQ(float_to_float8(-0.0f, Float8Format::kE5M2FNUZ, true), 0x00);
  // float32 denormals and values below half the smallest subnormal become (signed) zero.
  const float denormal = std::ldexp(1.0f, -140);
  EXPECT_EQ(float_to_float8(-denormal, Float8Format::kE4M3FN, true), 0x80);
  EXPECT_EQ(float_to_float8(-denormal, Float8Format::kE4M3FNUZ, true), 0x00);
  EXPECT_EQ(float_to_float8(std::ldexp(1.0f, -10), Float8Format::kE4M3FN, true), 0x00);  // tie to 0
  EXPECT_EQ(float_to_float8(std::ldexp(1.5f, -10), Float8Format::kE4M3FN, true), 0x01);
}

}  // namespace
}  // namespace kiln
