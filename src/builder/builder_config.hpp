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
  // Where compiled generated kernels are cached: BuilderConfig::kernel_cache resolved ("" when
  // the cache is off). See codegen/kernel_cache.hpp.
  std::string kernel_cache_dir;
};

// Throws kiln::Error: kInvalidArgument for an unknown target, a negative device, or metadata that
// is not a JSON object; kUnsupported for a target or precision this kiln cannot build.
// The kernel cache directory is resolved for every target (it costs a few getenv calls).
ResolvedConfig resolve_config(const BuilderConfig& config);

// "fp32", "tf32", "fp16", "bf16".
std::string_view precision_name(Precision precision);

}  // namespace kiln::builder
