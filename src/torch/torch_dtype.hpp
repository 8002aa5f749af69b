// Conversions between kiln's DType and torch's ScalarType.
#pragma once

#include <c10/core/ScalarType.h>

#include <optional>

#include "kiln/types.hpp"

namespace kiln::torch_integration {

c10::ScalarType to_torch_dtype(DType dtype);
// nullopt for a torch dtype kiln has no equivalent of (complex, float8e8m0, float4, ...).
std::optional<DType> from_torch_dtype(c10::ScalarType dtype);

}  // namespace kiln::torch_integration
