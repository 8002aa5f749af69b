// The sub-byte element types on the host: int4, uint4, int2, uint2 and float4e2m1. kiln holds
// one element per byte (see DType): int4/int2 as sign-extended int8 values, uint4/uint2 as uint8
// values, float4e2m1 as its code (S.EE.M) in the low 4 bits. Readers mask the low 4 (2) bits, so
// a byte holding only the nibble (as ml_dtypes' arrays do) reads the same as a sign-extended one.
// The conversions are bit-exact with ONNX's reference Cast (numpy with ml_dtypes).
#pragma once

#include <cstdint>
#include <utility>

#include "kiln/types.hpp"

namespace kiln {

// The integer value of `byte` as `dtype` (int4, uint4, int2 or uint2; other dtypes: needs not).
int sub_byte_int_value(uint8_t byte, DType dtype);

// [lowest, highest] of int4 (-8, 7), uint4 (0, 15), int2 (-2, 1) or uint2 (0, 3).
std::pair<int, int> sub_byte_int_range(DType dtype);

// The kiln byte of `value`'s low 4 (2) bits as `dtype`: integer casts discard the higher bits and
// reinterpret them (two's complement), as ONNX's Cast defines for fixed-point targets.
uint8_t sub_byte_int_wrap(int64_t value, DType dtype);

// `value` truncated toward zero; NaN and values whose truncation is out of `dtype`'s range give 0
// (ONNX leaves these undefined; 0 is what its reference, ml_dtypes, gives).
uint8_t sub_byte_int_from_double(double value, DType dtype);

// The value of float4e2m1 code `code` (low 4 bits): ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}.
float float4e2m1_to_float(uint8_t code);

// `value` rounded to nearest even in float4e2m1, keeping its sign; magnitudes past 6 (Inf too)
// saturate to ±6. NaN, which float4e2m1 lacks, gives a zero of the opposite sign (ml_dtypes').
uint8_t double_to_float4e2m1(double value);

// Any sub-byte element as a double (exact).
double sub_byte_to_double(uint8_t byte, DType dtype);

// ONNX's packed layout: element i in bits [b*(i % k), b*(i % k) + b) of byte i / k, where b =
// dtype_bits(dtype) and k = 8 / b (the first element in the low bits). Unpacks `count` elements
// from `packed` (ceil(count / k) bytes) into kiln's one-per-byte form in `out`.
void unpack_sub_byte(const uint8_t* packed, int64_t count, DType dtype, uint8_t* out);

// The bytes ONNX packs `count` elements of `dtype` into: ceil(count * bits / 8).
int64_t packed_sub_byte_size(int64_t count, DType dtype);

}  // namespace kiln
