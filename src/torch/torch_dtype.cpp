#include "torch/torch_dtype.hpp"

#include <utility>

#include "base/error.hpp"

namespace kiln::torch_integration {

namespace {

// Each kiln dtype with its torch counterpart: the one table both directions read.
constexpr std::pair<DType, c10::ScalarType> kDtypePairs[] = {
    {DType::kFloat32, c10::ScalarType::Float},   {DType::kFloat16, c10::ScalarType::Half},
    {DType::kBFloat16, c10::ScalarType::BFloat16}, {DType::kFloat64, c10::ScalarType::Double},
    {DType::kUInt8, c10::ScalarType::Byte},      {DType::kInt8, c10::ScalarType::Char},
    {DType::kInt16, c10::ScalarType::Short},     {DType::kInt32, c10::ScalarType::Int},
    {DType::kInt64, c10::ScalarType::Long},      {DType::kBool, c10::ScalarType::Bool},
    // torch's "limited support" unsigned types (torch.uint16/32/64, since torch 2.3).
    {DType::kUInt16, c10::ScalarType::UInt16},   {DType::kUInt32, c10::ScalarType::UInt32},
    {DType::kUInt64, c10::ScalarType::UInt64},
    {DType::kFloat8E4M3FN, c10::ScalarType::Float8_e4m3fn},
    {DType::kFloat8E4M3FNUZ, c10::ScalarType::Float8_e4m3fnuz},
    {DType::kFloat8E5M2, c10::ScalarType::Float8_e5m2},
    {DType::kFloat8E5M2FNUZ, c10::ScalarType::Float8_e5m2fnuz},
};

}  // namespace

c10::ScalarType to_torch_dtype(DType dtype) {
  for (const auto& [kiln_dtype, torch_dtype] : kDtypePairs) {
    if (kiln_dtype == dtype) return torch_dtype;
  }
  fail(ErrorCode::kInternal, "no torch dtype for kiln dtype ", dtype_name(dtype));
}

std::optional<DType> from_torch_dtype(c10::ScalarType dtype) {
  for (const auto& [kiln_dtype, torch_dtype] : kDtypePairs) {
    if (torch_dtype == dtype) return kiln_dtype;
  }
  return std::nullopt;
}

}  // namespace kiln::torch_integration
