// The backends of this process, by name. The built-in ones (builtin_backends.cpp) are registered
// on first use of any call below, so registration survives static linking (no static
// initialisers to be dropped by the linker).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"

namespace kiln::backends {

// Adds `backend` (which must live as long as the process) under backend.name(). Throws
// kInvalidArgument when a backend of that name is registered already.
void register_backend(const Backend& backend);

// The backend registered under `name`, or null.
const Backend* find_backend(std::string_view name);

// The backend an engine of `target` runs on. Throws kDeviceError (an absent backend: its reason)
// or kIncompatible (an unknown one), naming `source`, the target and the registered backends.
const Backend& backend_for(const format::Target& target, const std::string& source);

// The names of the registered backends, in registration order.
std::vector<std::string> backend_names();

// Where `pointer` lives: the first known answer of the registered backends' locate ({} when none
// knows). Never throws.
PointerPlace locate_pointer(const void* pointer);

// The backend whose kernels run on the host during shape propagation (shape-value layers of
// every engine): the cpu backend. Its supports() decides which of those layers can run.
const Backend& host_backend();

// ---- for the registry: the list in builtin_backends.cpp, the one file that knows the build ----

// A backend this kiln knows of that is not part of this build, and why ("was built without CUDA"):
// an engine targeting it fails with that reason.
struct AbsentBackend {
  std::string name;
  std::string reason;
};

struct BuiltinBackends {
  std::vector<const Backend*> present;  // registered first, in this order
  std::vector<AbsentBackend> absent;
  const Backend* host = nullptr;        // host_backend()
};

// The built-in backends of this build. Called once, by the registry.
BuiltinBackends builtin_backends();

}  // namespace kiln::backends
