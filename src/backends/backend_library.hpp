// Loading a backend that lives in a shared library of its own (backend_registry.hpp's
// LibraryBackend): dlopen from the directory of libkiln_runtime.so, then its C entry point.
#pragma once

#include <string>

#include "backends/backend_registry.hpp"

namespace kiln::backends {

struct LoadedBackend {
  const Backend* backend = nullptr;  // null when the library could not be loaded
  std::string error;                 // why not (set when backend is null), naming the library
};

// The directory libkiln_runtime.so (the library holding this code) was loaded from, with a
// trailing '/'; "" when the loader cannot tell. Where kiln's optional libraries are looked for.
// Never throws.
std::string runtime_directory();

// Loads `library` and returns its backend (the registry calls it once per library; another call
// gets the library the loader already has).
// Looks for library.file in the directory libkiln_runtime.so was loaded from, else (when that
// directory cannot be told) where the loader looks; a file name with a '/' is used as it is. The
// error names the file, the loader's message (dlerror: e.g. the CUDA library it needs that is
// missing) and library.needs. Never throws.
LoadedBackend load_backend_library(const LibraryBackend& library);

}  // namespace kiln::backends
