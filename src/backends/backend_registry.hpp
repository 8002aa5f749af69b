// The backends of this process, by name. The built-in ones (builtin_backends.cpp) are registered
// on first use of any call below, so registration survives static linking (no static
// initialisers to be dropped by the linker). A built-in backend that lives in a library of its own
// (the cuda backend: libkiln_backend_cuda.so, which needs the CUDA libraries) is loaded with
// dlopen the first time a call below names it (backend_for, find_backend), never before, so a
// process that only runs CPU engines never loads it or the CUDA libraries.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"

namespace kiln::backends {

// Adds `backend` (which must live as long as the process) under backend.name(). Throws
// kInvalidArgument when a backend of that name is registered already.
void register_backend(const Backend& backend);

// The backend registered under `name` (loading its library on first use), or null: none of that
// name, or its library cannot be loaded (why_absent says why). Never throws.
const Backend* find_backend(std::string_view name);

// The backend an engine of `target` runs on (loading its library on first use). Throws
// kDeviceError (an absent backend, or one whose library cannot be loaded: the reason, naming the
// library and the loader's message) or kIncompatible (an unknown one), naming `source`, the target
// and the registered backends.
const Backend& backend_for(const format::Target& target, const std::string& source);

// Why no backend named `name` can be used, worded to follow "this kiln runtime " ("was built
// without CUDA", "cannot load its cuda backend: ..."); "" when it is registered or loads. An
// unknown name gives "has no backend '<name>'". Loads the backend's library when not tried yet.
std::string why_absent(std::string_view name);

// The names of the backends this runtime has, in registration order: those registered and those
// whose library is not loaded yet (but not those whose library failed to load). Loads nothing.
std::vector<std::string> backend_names();

// Where `pointer` lives: the first known answer of the loaded backends' locate ({} when none
// knows). Loads nothing: a device pointer is only checked against an engine of that device's
// backend, whose library is loaded by then. Never throws.
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

// The entry point a backend library exports with C linkage (so that dlsym finds it by name): its
// backend when `runtime_version` is the KILN_VERSION the library was built with, else null. Sets
// *library_version to that KILN_VERSION either way. Never throws.
using BackendLibraryEntry = const Backend* (*)(const char* runtime_version, const char** library_version);

// A built-in backend in a shared library of its own, installed beside libkiln_runtime.so.
struct LibraryBackend {
  std::string name;      // the backend's name (an engine target)
  std::string file;      // its file name, looked for in the directory of libkiln_runtime.so
  std::string entry;     // the name of its BackendLibraryEntry
  std::string needs;     // what it needs to load, for the error when it cannot be loaded
};

struct BuiltinBackends {
  std::vector<const Backend*> present;  // registered first, in this order
  std::vector<LibraryBackend> libraries;  // loaded on first use, then registered after those present
  std::vector<AbsentBackend> absent;
  const Backend* host = nullptr;        // host_backend()
};

// The built-in backends of this build. Called once, by the registry.
BuiltinBackends builtin_backends();

}  // namespace kiln::backends
