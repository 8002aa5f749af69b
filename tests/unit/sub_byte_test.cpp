// The sub-byte dtypes (int4, uint4, int2, uint2, float4e2m1) and float8e8m0: conversions
// (base/sub_byte.hpp, base/float8.hpp), ONNX's packed initializers, Cast and QuantizeLinear /
// DequantizeLinear on the CPU. tests/python/test_sub_byte_dtypes.py checks every code and the
// edge cases against ONNX's reference (ml_dtypes).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/float8.hpp"
#include "base/sub_byte.hpp"
#include "frontend/onnx/tensor_decoder.hpp"

namespace kiln {
namespace {

constexpr DType kSubByteInts[] = {DType::kInt4, DType::kUInt4, DType::kInt2, DType::kUInt2};

TEST(SubByteDtypes, NumbersSizesNamesAndBits) {
  for (int raw = 21; raw <= 26; ++raw) {
    EXPECT_TRUE(is_valid_dtype(raw)) << raw;
    EXPECT_EQ(dtype_size(static_cast<DType>(raw)), 1u) << raw;
    EXPECT_FALSE(is_floating(static_cast<DType>(raw))) << raw;
    EXPECT_FALSE(is_float8(static_cast<DType>(raw))) << raw;
  }
  EXPECT_FALSE(is_valid_dtype(27));  // float6e2m3
  EXPECT_EQ(dtype_name(DType::kUInt4), "uint4");
  EXPECT_EQ(dtype_name(DType::kInt4), "int4");
  EXPECT_EQ(dtype_name(DType::kFloat4E2M1), "float4e2m1");
  EXPECT_EQ(dtype_name(DType::kFloat8E8M0), "float8e8m0");
  EXPECT_EQ(dtype_name(DType::kUInt2), "uint2");
  EXPECT_EQ(dtype_name(DType::kInt2), "int2");
  EXPECT_TRUE(is_sub_byte(DType::kFloat4E2M1));
  EXPECT_FALSE(is_sub_byte(DType::kFloat8E8M0));
  EXPECT_FALSE(is_sub_byte(DType::kInt8));
  EXPECT_EQ(dtype_bits(DType::kInt4), 4);
  EXPECT_EQ(dtype_bits(DType::kFloat4E2M1), 4);
  EXPECT_EQ(dtype_bits(DType::kUInt2), 2);
  EXPECT_EQ(dtype_bits(DType::kFloat8E8M0), 8);
  EXPECT_EQ(dtype_bits(DType::kFloat32), 32);
}

// Only the low bits count: ml_dtypes' nibble-only bytes and kiln's sign-extended ones agree.
TEST(SubByteDtypes, IntegerValuesReadTheLowBits) {
  EXPECT_EQ(sub_byte_int_value(0x08, DType::kInt4), -8);
  EXPECT_EQ(sub_byte_int_value(0xF8, DType::kInt4), -8);
  EXPECT_EQ(sub_byte_int_value(0x0F, DType::kInt4), -1);
  EXPECT_EQ(sub_byte_int_value(0x07, DType::kInt4), 7);
  EXPECT_EQ(sub_byte_int_value(0xFF, DType::kUInt4), 15);
  EXPECT_EQ(sub_byte_int_value(0x02, DType::kInt2), -2);
  EXPECT_EQ(sub_byte_int_value(0xFE, DType::kInt2), -2);
  EXPECT_EQ(sub_byte_int_value(0x07, DType::kUInt2), 3);
  EXPECT_EQ(sub_byte_int_range(DType::kInt4), std::make_pair(-8, 7));
  EXPECT_EQ(sub_byte_int_range(DType::kUInt4), std::make_pair(0, 15));
  EXPECT_EQ(sub_byte_int_range(DType::kInt2), std::make_pair(-2, 1));
  EXPECT_EQ(sub_byte_int_range(DType::kUInt2), std::make_pair(0, 3));
  // Written values are sign-extended, so an int4 byte is also the int8 of its value.
  EXPECT_EQ(static_cast<int8_t>(sub_byte_int_wrap(-3, DType::kInt4)), -3);
  EXPECT_EQ(static_cast<int8_t>(sub_byte_int_from_double(-1.5, DType::kInt2)), -1);
}

TEST(SubByteDtypes, IntegerCastsWrapAndFloatsTruncate) {
  // Integers keep their low bits (ONNX: discard the higher bits, two's complement).
  EXPECT_EQ(sub_byte_int_value(sub_byte_int_wrap(200, DType::kInt4), DType::kInt4), -8);
  EXPECT_EQ(sub_byte_int_value(sub_byte_int_wrap(-9, DType::kInt4), DType::kInt4), 7);
  EXPECT_EQ(sub_byte_int_value(sub_byte_int_wrap(17, DType::kUInt4), DType::kUInt4), 1);
  EXPECT_EQ(sub_byte_int_value(sub_byte_int_wrap(5, DType::kInt2), DType::kInt2), 1);
  EXPECT_EQ(sub_byte_int_value(sub_byte_int_wrap(-1, DType::kUInt2), DType::kUInt2), 3);
  EXPECT_EQ(sub_byte_int_value(sub_byte_int_wrap(std::numeric_limits<int64_t>::min(), DType::kInt4),
                               DType::kInt4),
            0);
  // Floats truncate toward zero; NaN and out-of-range values give 0.
  for (const DType t : kSubByteInts) {
    const auto [lowest, highest] = sub_byte_int_range(t);
    EXPECT_EQ(sub_byte_int_value(sub_byte_int_from_double(highest + 0.9, t), t), highest);
    EXPECT_EQ(sub_byte_int_value(sub_byte_int_from_double(lowest - 0.9, t), t), lowest == 0 ? 0 : lowest);
    EXPECT_EQ(sub_byte_int_from_double(highest + 1.0, t), 0);
    EXPECT_EQ(sub_byte_int_from_double(lowest - 1.0, t), 0);
    EXPECT_EQ(sub_byte_int_from_double(std::nan(""), t), 0);
    EXPECT_EQ(sub_byte_int_from_double(INFINITY, t), 0);
    EXPECT_EQ(sub_byte_int_from_double(-1e30, t), 0);
  }
}

TEST(SubByteDtypes, Float4DecodesEveryCode) {
  const float magnitudes[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int code = 0; code < 16; ++code) {
    const float value = float4e2m1_to_float(static_cast<uint8_t>(code));
    EXPECT_EQ(std::fabs(value), magnitudes[code & 7]) << code;
    EXPECT_EQ(std::signbit(value), code >= 8) << code;
    // Every code encodes back to itself (-0 included).
    EXPECT_EQ(double_to_float4e2m1(value), code) << code;
    // The high bits of the byte are ignored.
    EXPECT_EQ(float4e2m1_to_float(static_cast<uint8_t>(code | 0xF0)), value) << code;
  }
}

TEST(SubByteDtypes, Float4RoundsToNearestEvenAndSaturates) {
  // Midpoints go to the even code: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2,
  // 3.5 -> 4, 5 -> 4.
  const double mids[] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
  const double want[] = {0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0};
  for (size_t k = 0; k < std::size(mids); ++k) {
    EXPECT_EQ(float4e2m1_to_float(double_to_float4e2m1(mids[k])), want[k]) << mids[k];
    EXPECT_EQ(float4e2m1_to_float(double_to_float4e2m1(-mids[k])), -want[k]) << mids[k];
    EXPECT_GT(float4e2m1_to_float(double_to_float4e2m1(std::nextafter(mids[k], 10.0))), mids[k]);
    EXPECT_LT(float4e2m1_to_float(double_to_float4e2m1(std::nextafter(mids[k], 0.0))), mids[k]);
  }
  EXPECT_EQ(double_to_float4e2m1(7.0), 0x7);
  EXPECT_EQ(double_to_float4e2m1(1e30), 0x7);
  EXPECT_EQ(double_to_float4e2m1(INFINITY), 0x7);
  EXPECT_EQ(double_to_float4e2m1(-INFINITY), 0xF);
  EXPECT_EQ(double_to_float4e2m1(-0.1), 0x8);  // -0
  // NaN has no code: like ml_dtypes, a zero of the opposite sign.
  EXPECT_EQ(double_to_float4e2m1(std::nan("")), 0x8);
  EXPECT_EQ(double_to_float4e2m1(-std::nan("")), 0x0);
}

TEST(Float8E8M0, DecodesPowersOfTwo) {
  EXPECT_EQ(float8e8m0_to_float(127), 1.0f);
  EXPECT_EQ(float8e8m0_to_float(130), 8.0f);
  EXPECT_EQ(float8e8m0_to_float(0xFE), std::ldexp(1.0f, 127));
  EXPECT_EQ(float8e8m0_to_float(0), std::ldexp(1.0f, -127));
  EXPECT_EQ(float8e8m0_to_float(1), std::ldexp(1.0f, -126));
  EXPECT_TRUE(std::isnan(float8e8m0_to_float(0xFF)));
  for (int code = 0; code < 255; ++code) {
    const float value = float8e8m0_to_float(static_cast<uint8_t>(code));
    for (const E8M0Rounding r : {E8M0Rounding::kUp, E8M0Rounding::kDown, E8M0Rounding::kNearest}) {
      // 2^-127 is a float32 subnormal (exponent field 0, a mantissa bit set): "up" rounds it up.
      const int want = code == 0 && r == E8M0Rounding::kUp ? 1 : code;
      EXPECT_EQ(float_to_float8e8m0(value, true, r), want) << code;
    }
  }
}

TEST(Float8E8M0, RoundingModesAndSaturate) {
  const auto up = E8M0Rounding::kUp, down = E8M0Rounding::kDown, nearest = E8M0Rounding::kNearest;
  EXPECT_EQ(float_to_float8e8m0(1.1f, true, up), 128);  // 2
  EXPECT_EQ(float_to_float8e8m0(1.1f, true, down), 127);
  EXPECT_EQ(float_to_float8e8m0(1.1f, true, nearest), 127);
  EXPECT_EQ(float_to_float8e8m0(1.5f, true, nearest), 128);  // a tie rounds up
  EXPECT_EQ(float_to_float8e8m0(1.75f, true, nearest), 128);
  EXPECT_EQ(float_to_float8e8m0(0.124f, true, up), 124);  // 0.125
  EXPECT_EQ(float_to_float8e8m0(-4.0f, true, up), 129);    // the sign is ignored
  EXPECT_EQ(float_to_float8e8m0(0.0f, true, up), 0);
  EXPECT_EQ(float_to_float8e8m0(std::ldexp(1.0f, -130), true, up), 1);  // a subnormal rounds up
  EXPECT_EQ(float_to_float8e8m0(std::ldexp(1.0f, -130), true, down), 0);
  EXPECT_EQ(float_to_float8e8m0(NAN, true, up), 0xFF);
  EXPECT_EQ(float_to_float8e8m0(INFINITY, true, up), 0xFF);
  EXPECT_EQ(float_to_float8e8m0(std::numeric_limits<float>::max(), true, up), 0xFE);
  EXPECT_EQ(float_to_float8e8m0(std::numeric_limits<float>::max(), false, up), 0xFF);
  EXPECT_EQ(float_to_float8e8m0(std::numeric_limits<float>::max(), false, down), 0xFE);
  EXPECT_EQ(e8m0_rounding_from_name("nearest"), nearest);
  EXPECT_FALSE(e8m0_rounding_from_name("even").has_value());
}

TEST(SubByteDtypes, UnpacksOnnxLayoutLowBitsFirst) {
  // int4 [1, -2, 7] packs as 0xE1, 0x07 (the odd element's partner is padding).
  const uint8_t packed4[] = {0xE1, 0x07};
  uint8_t out[4] = {};
  unpack_sub_byte(packed4, 3, DType::kInt4, out);
  EXPECT_EQ(static_cast<int8_t>(out[0]), 1);
  EXPECT_EQ(static_cast<int8_t>(out[1]), -2);
  EXPECT_EQ(static_cast<int8_t>(out[2]), 7);
  unpack_sub_byte(packed4, 3, DType::kFloat4E2M1, out);
  EXPECT_EQ(out[1], 0x0E);  // codes stay codes
  // uint2 [1, 2, 3, 0, 3] packs as 0b00111001, 0b00000011.
  const uint8_t packed2[] = {0x39, 0x03};
  unpack_sub_byte(packed2, 4, DType::kUInt2, out);
  EXPECT_EQ(std::vector<uint8_t>(out, out + 4), (std::vector<uint8_t>{1, 2, 3, 0}));
  unpack_sub_byte(packed2, 4, DType::kInt2, out);
  EXPECT_EQ(static_cast<int8_t>(out[1]), -2);
  EXPECT_EQ(packed_sub_byte_size(3, DType::kInt4), 2);
  EXPECT_EQ(packed_sub_byte_size(5, DType::kUInt2), 2);
  EXPECT_EQ(packed_sub_byte_size(0, DType::kUInt2), 0);
}

onnx::proto::Tensor onnx_tensor(int32_t type, std::vector<int64_t> dims) {
  onnx::proto::Tensor t;
  t.name.push_back('w');  // not = "w": GCC 12 misreads that as an overlapping memcpy (-Wrestrict)
  t.data_type = type;
  t.dims = std::move(dims);
  return t;
}

TEST(SubByteDtypes, ImporterUnpacksRawAndInt32Data) {
  const onnx::ImportOptions options;
  const std::vector<uint8_t> raw = {0xE1, 0x07};
  onnx::proto::Tensor t = onnx_tensor(22, {3});  // INT4
  t.has_raw_data = true;
  t.raw_data = raw;
  const auto decoded = onnx::decode_tensor(t, options);
  EXPECT_EQ(decoded->dtype, DType::kInt4);
  EXPECT_EQ(decoded->bytes.size(), 3u);
  EXPECT_EQ(static_cast<int8_t>(decoded->bytes[1]), -2);
  EXPECT_EQ(decoded->bytes[2], 7);
  // Typed: int32_data holds the packed bytes, one per int32.
  onnx::proto::Tensor typed = onnx_tensor(25, {2, 3});  // UINT2, 6 elements in 2 bytes
  typed.int32_data = {0x39, 0x0B};
  const auto u2 = onnx::decode_tensor(typed, options);
  EXPECT_EQ(u2->bytes, (std::vector<uint8_t>{1, 2, 3, 0, 3, 2}));
  onnx::proto::Tensor e8m0 = onnx_tensor(24, {2});
  e8m0.int32_data = {127, 255};
  EXPECT_EQ(onnx::decode_tensor(e8m0, options)->bytes, (std::vector<uint8_t>{127, 255}));
  // An unpacked (one per byte) raw_data is refused, naming the packed size.
  const std::vector<uint8_t> unpacked = {1, 2, 3};
  t.raw_data = unpacked;
  try {
    onnx::decode_tensor(t, options);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
    EXPECT_NE(std::string(e.what()).find("expected 2 for shape [3] of int4 (packed)"), std::string::npos)
        << e.what();
  }
}

AttributeMap attrs_of(std::initializer_list<std::pair<std::string, Attribute>> items) {
  AttributeMap map;
  for (const auto& [name, value] : items) map.set(name, value);
  return map;
}

HostTensor run1(std::string_view name, std::string_view op, const AttributeMap& attrs,
                std::vector<const HostTensor*> inputs) {
  return cpu::run_node_on_cpu(name, op, attrs, inputs, 1).at(0);
}

HostTensor cast(const HostTensor& x, DType to, AttributeMap attrs = {}) {
  attrs.set("to", Attribute::of_int(static_cast<int64_t>(to)));
  return run1("the_cast", "Cast", attrs, {&x});
}

HostTensor floats(std::vector<float> values) {
  HostTensor t(DType::kFloat32, {static_cast<int64_t>(values.size())});
  for (size_t i = 0; i < values.size(); ++i) t.data<float>()[i] = values[i];
  return t;
}

std::vector<double> values_of(const HostTensor& t) {
  std::vector<double> out;
  const TensorView view{t.dtype, t.shape, const_cast<uint8_t*>(t.bytes.data())};
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(read_as_double(view, i));
  return out;
}

TEST(SubByteCast, FloatAndIntegerSourcesFollowOnnxReference) {
  const HostTensor f = floats({-9, -8, -1.5f, 0, 7.9f, 8, NAN});
  EXPECT_EQ(values_of(cast(f, DType::kInt4)), (std::vector<double>{0, -8, -1, 0, 7, 0, 0}));
  EXPECT_EQ(values_of(cast(f, DType::kUInt4)), (std::vector<double>{0, 0, 0, 0, 7, 8, 0}));
  EXPECT_EQ(values_of(cast(f, DType::kInt2)), (std::vector<double>{0, 0, -1, 0, 0, 0, 0}));
  HostTensor ints(DType::kInt32, {3});
  ints.data<int32_t>()[0] = 200, ints.data<int32_t>()[1] = -9, ints.data<int32_t>()[2] = 5;
  EXPECT_EQ(values_of(cast(ints, DType::kInt4)), (std::vector<double>{-8, 7, 5}));
  EXPECT_EQ(values_of(cast(ints, DType::kUInt2)), (std::vector<double>{0, 3, 1}));
  // Back out: int4 -> int8/float/uint8 and between sub-byte types.
  const HostTensor i4 = cast(floats({-8, -1, 7}), DType::kInt4);
  EXPECT_EQ(values_of(cast(i4, DType::kInt8)), (std::vector<double>{-8, -1, 7}));
  EXPECT_EQ(values_of(cast(i4, DType::kFloat16)), (std::vector<double>{-8, -1, 7}));
  EXPECT_EQ(values_of(cast(i4, DType::kUInt8)), (std::vector<double>{248, 255, 7}));
  EXPECT_EQ(values_of(cast(i4, DType::kInt2)), (std::vector<double>{0, -1, -1}));
  EXPECT_EQ(values_of(cast(i4, DType::kFloat4E2M1)), (std::vector<double>{-6, -1, 6}));
}

TEST(SubByteCast, Float4AndE8M0) {
  const HostTensor f = floats({0.25f, 0.75f, -3.5f, 9, -INFINITY, 1.1f});
  EXPECT_EQ(values_of(cast(f, DType::kFloat4E2M1)), (std::vector<double>{0, 1, -4, 6, -6, 1}));
  const HostTensor scales = floats({0.124f, 1.1f, 1.5f, 8});
  EXPECT_EQ(values_of(cast(scales, DType::kFloat8E8M0)), (std::vector<double>{0.125, 2, 2, 8}));
  EXPECT_EQ(values_of(cast(scales, DType::kFloat8E8M0,
                           attrs_of({{"round_mode", Attribute::of_string("down")}}))),
            (std::vector<double>{0.0625, 1, 1, 8}));
  EXPECT_EQ(values_of(cast(scales, DType::kFloat8E8M0,
                           attrs_of({{"round_mode", Attribute::of_string("nearest")}}))),
            (std::vector<double>{0.125, 1, 2, 8}));
  const HostTensor e8m0 = cast(scales, DType::kFloat8E8M0);
  EXPECT_EQ(values_of(cast(e8m0, DType::kFloat32)), (std::vector<double>{0.125, 2, 2, 8}));
}

TEST(SubByteQuantize, IntegersClampAndFloat4Rounds) {
  HostTensor scale(DType::kFloat32, {});
  scale.data<float>()[0] = 2.0f;
  const HostTensor x = floats({-30, -3, 5, 9, 30});
  for (const DType t : kSubByteInts) {
    HostTensor zero(t, {});
    zero.bytes[0] = sub_byte_int_wrap(t == DType::kUInt4 || t == DType::kUInt2 ? 1 : 0, t);
    const HostTensor q = run1("q", "QuantizeLinear", {}, {&x, &scale, &zero});
    ASSERT_EQ(q.dtype, t);
    const auto [lowest, highest] = sub_byte_int_range(t);
    const double z = t == DType::kUInt4 || t == DType::kUInt2 ? 1 : 0;
    std::vector<double> want;
    for (const double v : {-15.0, -2.0, 2.0, 4.0, 15.0}) {  // round half to even of x / 2
      want.push_back(std::fmin(std::fmax(v + z, lowest), highest));
    }
    EXPECT_EQ(values_of(q), want) << dtype_name(t);
    const HostTensor dq = run1("dq", "DequantizeLinear", {}, {&q, &scale, &zero});
    std::vector<double> back;
    for (const double v : want) back.push_back((v - z) * 2.0);
    EXPECT_EQ(values_of(dq), back) << dtype_name(t);
  }
  HostTensor zero4(DType::kFloat4E2M1, {});
  const HostTensor q4 = run1("q", "QuantizeLinear", {}, {&x, &scale, &zero4});
  EXPECT_EQ(values_of(q4), (std::vector<double>{-6, -1.5, 2, 4, 6}));
  zero4.bytes[0] = double_to_float4e2m1(0.5);
  try {
    run1("the_q", "QuantizeLinear", {}, {&x, &scale, &zero4});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the_q"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("float4e2m1 y_zero_point must be 0"), std::string::npos)
        << e.what();
  }
}

// MX-style: int4 values with float8e8m0 block scales, dequantized to float32.
TEST(SubByteQuantize, Float8E8M0ScalesDequantize) {
  HostTensor x(DType::kInt4, {1, 4});
  for (int i = 0; i < 4; ++i) x.bytes[static_cast<size_t>(i)] = sub_byte_int_wrap(i - 2, DType::kInt4);
  HostTensor scale(DType::kFloat8E8M0, {1, 2});
  scale.bytes = {126, 129};  // 0.5, 4
  const AttributeMap attrs = attrs_of({{"axis", Attribute::of_int(1)},
                                       {"block_size", Attribute::of_int(2)},
                                       {"output_dtype", Attribute::of_int(1)}});
  const HostTensor y = run1("dq", "DequantizeLinear", attrs, {&x, &scale});
  ASSERT_EQ(y.dtype, DType::kFloat32);
  EXPECT_EQ(values_of(y), (std::vector<double>{-1, -0.5, 0, 4}));
}

}  // namespace
}  // namespace kiln
