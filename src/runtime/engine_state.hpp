// Internal state behind kiln::Engine and kiln::ExecutionContext.
#pragma once

#include <memory>
#include <string>

#include "backends/backend.hpp"
#include "backends/engine_plan.hpp"
#include "format/engine_model.hpp"
#include "kiln/runtime.hpp"

namespace kiln::detail {

using backends::kArenaAlignment;
using backends::PreparedLayer;

// Immutable after load; shared by every context and thread. The prepared engine (what backends
// read) and the backend it runs on, bound.
struct EngineState : backends::EnginePlan {
  const backends::Backend* backend = nullptr;         // from the registry, by model.target.backend
  std::shared_ptr<const backends::BoundEngine> bound;  // what backend->bind made of it
};

// The checks a load makes that need no device, on an engine built for another machine (a
// cross-compiled cuda engine): every op known, the host kernels of the layers the host runs, and
// the target backend's Backend::check_loadable when this runtime has that backend. Throws what
// Engine::load_bytes would (kUnsupported listing the layers). Returns the layers that backend would
// run on the host (Backend::host_layers; empty without the backend).
std::vector<std::string> check_loadable_off_device(const format::EngineModel& model, const std::string& source);

}  // namespace kiln::detail
