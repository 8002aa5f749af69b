// Validation of BuilderConfig: which target and precision an engine is built for, and its
// user metadata. Kept apart from the pipeline so that adding a target (cuda) touches one place.
#pragma once

#include <string_view>

#include "base/json.hpp"
#include "format/engine_model.hpp"
#include "kiln/builder.hpp"

namespace kiln::builder {

struct ResolvedConfig {
  format::Target target;
  DType precision = DType::kFloat32;  // the engine's compute precision
  json::Value metadata;               // the user's metadata object
};

// Throws kiln::Error: kInvalidArgument for an unknown target, a negative device, or metadata that
// is not a JSON object; kUnsupported for a target or precision this kiln cannot build.
ResolvedConfig resolve_config(const BuilderConfig& config);

// "fp32", "tf32", "fp16", "bf16".
std::string_view precision_name(Precision precision);

}  // namespace kiln::builder
