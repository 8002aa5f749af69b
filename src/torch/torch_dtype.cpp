#include "torch/torch_dtype.hpp"

#include "base/error.hpp"

namespace kiln::torch_integration {

c10::ScalarType to_torch_dtype(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return c10::ScalarType::Float;
    case DType::kUInt8:
      return c10::ScalarType::Byte;
    case DType::kInt8:
      return c10::ScalarType::Char;
    case DType::kInt16:
      return c10::ScalarType::Short;
    case DType::kInt32:
      return c10::ScalarType::Int;
    case DType::kInt64:
      return c10::ScalarType::Long;
    case DType::kBool:
      return c10::ScalarType::Bool;
    case DType::kFloat16:
      return c10::ScalarType::Half;
    case DType::kFloat64:
      return c10::ScalarType::Double;
    case DType::kBFloat16:
      return c10::ScalarType::BFloat16;
  }
  fail(ErrorCode::kInternal, "no torch dtype for kiln dtype ", dtype_name(dtype));
}

std::optional<DType> from_torch_dtype(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float:
      return DType::kFloat32;
    case c10::ScalarType::Byte:
      return DType::kUInt8;
    case c10::ScalarType::Char:
      return DType::kInt8;
    case c10::ScalarType::Short:
      return DType::kInt16;
    case c10::ScalarType::Int:
      return DType::kInt32;
    case c10::ScalarType::Long:
      return DType::kInt64;
    case c10::ScalarType::Bool:
      return DType::kBool;
    case c10::ScalarType::Half:
      return DType::kFloat16;
    case c10::ScalarType::Double:
      return DType::kFloat64;
    case c10::ScalarType::BFloat16:
      return DType::kBFloat16;
    default:
      return std::nullopt;
  }
}

}  // namespace kiln::torch_integration
