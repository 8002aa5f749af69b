#include "base/host_tensor.hpp"

#include <cstring>

#include "base/error.hpp"
#include "base/float8.hpp"
#include "base/half.hpp"
#include "base/sub_byte.hpp"

namespace kiln {

int64_t read_index(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kInt64: return t.as<const int64_t>()[i];
    case DType::kInt32: return t.as<const int32_t>()[i];
    default:
      fail(ErrorCode::kInvalidArgument, "expected an int32 or int64 tensor, got ", dtype_name(t.dtype));
  }
}

std::vector<int64_t> read_indices(const TensorView& t) {
  const int64_t n = t.numel();
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = read_index(t, i);
  return out;
}

double read_as_double(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kFloat32: return t.as<const float>()[i];
    case DType::kFloat64: return t.as<const double>()[i];
    case DType::kFloat16: return half_to_float(t.as<const uint16_t>()[i]);
    case DType::kBFloat16: return bfloat16_to_float(t.as<const uint16_t>()[i]);
    case DType::kInt64: return static_cast<double>(t.as<const int64_t>()[i]);
    case DType::kInt32: return t.as<const int32_t>()[i];
    case DType::kInt16: return t.as<const int16_t>()[i];
    case DType::kInt8: return t.as<const int8_t>()[i];
    case DType::kUInt8: return t.as<const uint8_t>()[i];
    case DType::kUInt16: return t.as<const uint16_t>()[i];
    case DType::kUInt32: return t.as<const uint32_t>()[i];
    case DType::kUInt64: return static_cast<double>(t.as<const uint64_t>()[i]);
    case DType::kBool: return t.as<const uint8_t>()[i] ? 1.0 : 0.0;
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2:
    case DType::kFloat8E5M2FNUZ:
      return float8_to_float(t.as<const uint8_t>()[i], *float8_format(t.dtype));
    case DType::kFloat8E8M0: return float8e8m0_to_float(t.as<const uint8_t>()[i]);
    case DType::kUInt4:
    case DType::kInt4:
    case DType::kFloat4E2M1:
    case DType::kUInt2:
    case DType::kInt2: return sub_byte_to_double(t.as<const uint8_t>()[i], t.dtype);
  }
  fail(ErrorCode::kInvalidArgument, "unknown dtype");
}

std::vector<uint8_t> scalar_bytes(DType dtype, double value) {
  std::vector<uint8_t> bytes(dtype_size(dtype), 0);
  auto put = [&](auto v) { std::memcpy(bytes.data(), &v, sizeof(v)); };
  switch (dtype) {
    case DType::kFloat32: put(static_cast<float>(value)); break;
    case DType::kFloat64: put(value); break;
    case DType::kFloat16: put(float_to_half(static_cast<float>(value))); break;
    case DType::kBFloat16: put(float_to_bfloat16(static_cast<float>(value))); break;
    case DType::kInt8: put(static_cast<int8_t>(value)); break;
    case DType::kUInt8: put(static_cast<uint8_t>(value)); break;
    case DType::kBool: put(static_cast<uint8_t>(value != 0.0)); break;
    case DType::kInt16: put(static_cast<int16_t>(value)); break;
    case DType::kInt32: put(static_cast<int32_t>(value)); break;
    case DType::kInt64: put(static_cast<int64_t>(value)); break;
    case DType::kUInt16: put(static_cast<uint16_t>(value)); break;
    case DType::kUInt32: put(static_cast<uint32_t>(value)); break;
    case DType::kUInt64: put(static_cast<uint64_t>(value)); break;
    case DType::kFloat8E4M3FN:
    case DType::kFloat8E4M3FNUZ:
    case DType::kFloat8E5M2:
    case DType::kFloat8E5M2FNUZ:
      put(float_to_float8(static_cast<float>(value), *float8_format(dtype), true));
      break;
    case DType::kFloat8E8M0:
      put(float_to_float8e8m0(static_cast<float>(value), true, E8M0Rounding::kUp));
      break;
    case DType::kFloat4E2M1: put(double_to_float4e2m1(value)); break;
    case DType::kUInt4:
    case DType::kInt4:
    case DType::kUInt2:
    case DType::kInt2: put(sub_byte_int_from_double(value, dtype)); break;
  }
  return bytes;
}

}  // namespace kiln
