// The peak DRAM bandwidth of the engine's device, for the per-layer profile: its backend knows.
#include "backends/backend_registry.hpp"
#include "kiln/runtime.hpp"

namespace kiln {

double peak_memory_bandwidth_gb_per_s(const Engine& engine) {
  int device = -1;
  try {
    device = engine.device_index();
  } catch (const Error&) {
    return 0.0;  // a moved-from Engine: documented never to throw
  }
  if (device < 0) return 0.0;
  const backends::Backend* backend = backends::find_backend(engine.backend());
  return backend ? backend->peak_memory_bandwidth_gb_per_s(device) : 0.0;
}

}  // namespace kiln
