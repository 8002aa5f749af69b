// Maps a runtime DType to the C++ element type a templated kernel body is instantiated for.
#pragma once

#include <cstdint>

#include "kiln/types.hpp"

namespace kiln::cpu {

// Storage types for the dtypes that have no native C++ arithmetic type.
struct Float16Bits {
  uint16_t bits;
};
struct BFloat16Bits {
  uint16_t bits;
};
struct BoolByte {
  uint8_t value;
};

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::kFloat32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::kFloat64;
}
template <>
constexpr DType dtype_of<int8_t>() {
  return DType::kInt8;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::kUInt8;
}
template <>
constexpr DType dtype_of<int16_t>() {
  return DType::kInt16;
}
template <>
constexpr DType dtype_of<uint16_t>() {
  return DType::kUInt16;
}
template <>
constexpr DType dtype_of<uint32_t>() {
  return DType::kUInt32;
}
template <>
constexpr DType dtype_of<uint64_t>() {
  return DType::kUInt64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kInt32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::kInt64;
}
template <>
constexpr DType dtype_of<BoolByte>() {
  return DType::kBool;
}
template <>
constexpr DType dtype_of<Float16Bits>() {
  return DType::kFloat16;
}
template <>
constexpr DType dtype_of<BFloat16Bits>() {
  return DType::kBFloat16;
}

// Calls fn(TypeTag<T>{}) for the T among Ts whose dtype is `dtype`; false when none matches.
template <typename... Ts, typename Fn>
bool dispatch_among(DType dtype, Fn&& fn) {
  return ((dtype == dtype_of<Ts>() ? (fn(TypeTag<Ts>{}), true) : false) || ...);
}

// The dtype groups kernels are instantiated for. fp16/bf16 reach float_compute kernels as float32.
#define KILN_FLOAT_TYPES float, double
#define KILN_SIGNED_INT_TYPES int8_t, int16_t, int32_t, int64_t
#define KILN_UNSIGNED_INT_TYPES uint8_t, uint16_t, uint32_t, uint64_t
#define KILN_INT_TYPES KILN_UNSIGNED_INT_TYPES, KILN_SIGNED_INT_TYPES
#define KILN_NUMERIC_TYPES KILN_FLOAT_TYPES, KILN_INT_TYPES
#define KILN_ALL_TYPES KILN_NUMERIC_TYPES, BoolByte, Float16Bits, BFloat16Bits

}  // namespace kiln::cpu
