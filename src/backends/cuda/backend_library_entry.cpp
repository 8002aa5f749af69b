// The entry point of libkiln_backend_cuda.so (backends/backend_registry.hpp's BackendLibraryEntry),
// which libkiln_runtime.so finds with dlsym when it loads this library on the first cuda engine.
#include <cstring>
#include <type_traits>

#include "backends/backend_registry.hpp"
#include "backends/cuda/cuda_backend.hpp"

extern "C" __attribute__((visibility("default"))) const kiln::backends::Backend* kiln_backend_cuda_entry(
    const char* runtime_version, const char** library_version) {
  if (library_version) *library_version = KILN_VERSION;
  if (runtime_version == nullptr || std::strcmp(runtime_version, KILN_VERSION) != 0) return nullptr;
  return &kiln::cuda::cuda_backend();
}

static_assert(std::is_same_v<decltype(&kiln_backend_cuda_entry), kiln::backends::BackendLibraryEntry>,
              "the entry point must have the type the runtime calls it with");
