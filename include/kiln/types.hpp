// Basic value types shared by every kiln library: element types, shapes and the error type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// Element types. The numeric values equal ONNX's TensorProto.DataType so that the importer, the
// engine file and the Python bindings can pass them through unchanged; they are part of the engine
// format and must never be renumbered.
enum class DType : uint8_t {
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
  // 8-bit floats (ONNX opset 19): exponent/mantissa bits; FN = no Inf, UZ = no -0 (one NaN).
  kFloat8E4M3FN = 17,
  kFloat8E4M3FNUZ = 18,
  kFloat8E5M2 = 19,
  kFloat8E5M2FNUZ = 20,
  // Sub-byte types (ONNX opsets 21-25) and the MX scale type. Held one element per byte in kiln
  // (in engines, host tensors and I/O): int4/int2 as int8 values, uint4/uint2 as uint8 values,
  // float4e2m1 as its 4-bit code in the low bits. ONNX initializers pack them two (4-bit) or four
  // (2-bit) per byte; the importer unpacks them. Readers look at the low 4 (2) bits only.
  kUInt4 = 21,
  kInt4 = 22,
  kFloat4E2M1 = 23,  // sign, 2 exponent bits (bias 1), 1 mantissa bit; no Inf/NaN; max 6
  kFloat8E8M0 = 24,  // exponent only (bias 127): 2^(code - 127); 0xFF is NaN; no zero, no sign
  kUInt2 = 25,
  kInt2 = 26,
};

// Size in bytes of one element. Throws kiln::Error (kInvalidArgument) for a value that is not a
// DType enumerator (e.g. read from a hostile file).
size_t dtype_size(DType dtype);
// Lower-case name ("float32", "float16", "int64", ...); "dtype(N)" for an unknown value.
std::string_view dtype_name(DType dtype);
// True when `raw` is the numeric value of a DType enumerator.
bool is_valid_dtype(int raw);
// float32, float16, bfloat16, float64 (the float8 types are storage formats: is_float8).
bool is_floating(DType dtype);
// float8e4m3fn, float8e4m3fnuz, float8e5m2, float8e5m2fnuz (not float8e8m0, a scale format).
bool is_float8(DType dtype);
// int4, uint4, int2, uint2 and float4e2m1: the types ONNX packs several to a byte.
bool is_sub_byte(DType dtype);
// Bits of one element's value: 4 or 2 for the sub-byte types, 8 * dtype_size otherwise. (kiln
// still stores every element in dtype_size bytes; ONNX packs 8 / dtype_bits elements per byte.)
int dtype_bits(DType dtype);

// A dimension of -1 means "not known until run time" (a dynamic dimension).
inline constexpr int64_t kDynamicDim = -1;
using Shape = std::vector<int64_t>;

// Product of the dimensions (1 for a scalar). Requires every dimension to be >= 0. Throws
// kiln::Error (kInvalidArgument) for a dynamic dimension, and when the product of the non-zero
// dimensions does not fit in int64 (so that no stride of the shape can overflow either).
int64_t shape_numel(const Shape& shape);
// "[1, 3, 224, 224]" with "?" for dynamic dimensions.
std::string shape_to_string(const Shape& shape);
// True when no dimension is dynamic.
bool shape_is_static(const Shape& shape);

enum class ErrorCode : int {
  kOk = 0,
  kInvalidArgument = 1,   // wrong name, shape, dtype, value given by the caller
  kNotFound = 2,          // file, binding, op or plugin that does not exist
  kUnsupported = 3,       // valid input kiln cannot handle (op, attribute, dtype)
  kCorruptFile = 4,       // engine or model bytes that fail verification
  kIncompatible = 5,      // version, target architecture or device mismatch
  kDeviceError = 6,       // a device or driver call failed, or no device is available
  kOutOfMemory = 7,
  kIoError = 8,
  kInternal = 9,          // a kiln bug: please report it
};

std::string_view error_code_name(ErrorCode code);

// The one exception type kiln throws. The message names what went wrong and where (file, op,
// node, tensor, expected vs got). The C API turns it into a status code and message.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace kiln
