#include "backends/backend_library.hpp"

#include <dlfcn.h>

namespace kiln::backends {

std::string runtime_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&runtime_directory), &info) == 0 || info.dli_fname == nullptr) return "";
  const std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

namespace {

std::string loader_message() {
  const char* message = dlerror();
  return message ? message : "unknown loader error";
}

}  // namespace

LoadedBackend load_backend_library(const LibraryBackend& library) {
  LoadedBackend loaded;
  const std::string directory = runtime_directory();
  const std::string path = library.file.find('/') == std::string::npos ? directory + library.file : library.file;
  const std::string where = directory.empty() ? "on the loader's path" : "beside " + directory + "libkiln_runtime.so";
  const std::string help = "; kiln's " + library.name + " backend is " + library.file + ", looked for " + where +
                           ", and it needs " + library.needs;
  // RTLD_NOW: a missing symbol is reported here, not as a crash at the first call into it.
  // RTLD_LOCAL: its symbols (and those of the libraries it needs) stay out of the global scope.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    loaded.error = loader_message() + help;
    return loaded;
  }
  dlerror();
  const auto entry = reinterpret_cast<BackendLibraryEntry>(dlsym(handle, library.entry.c_str()));
  if (entry == nullptr) {
    loaded.error = path + " has no entry point " + library.entry + " (" + loader_message() + ")" + help;
    dlclose(handle);
    return loaded;
  }
  const char* library_version = "unknown";
  loaded.backend = entry(KILN_VERSION, &library_version);
  if (loaded.backend == nullptr) {
    loaded.error = path + " is of kiln " + std::string(library_version ? library_version : "unknown") +
                   ", this runtime is kiln " KILN_VERSION ": install the two from the same build";
    dlclose(handle);
  } else if (loaded.backend->name() != library.name) {
    loaded.error = path + " holds a backend named '" + loaded.backend->name() + "', not '" + library.name + "'";
    loaded.backend = nullptr;
  }
  // A loaded backend's library stays loaded: the backend lives as long as the process.
  return loaded;
}

}  // namespace kiln::backends
