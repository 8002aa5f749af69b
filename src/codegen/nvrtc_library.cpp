#include "codegen/nvrtc_library.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <optional>

#include "base/error.hpp"

namespace kiln::codegen {
namespace {

constexpr const char* kSoname = "libnvrtc.so.13";

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

// dlsym into `slot`; false when the symbol is missing.
template <typename Fn>
bool resolve(void* handle, const char* symbol, Fn& slot) {
  slot = reinterpret_cast<Fn>(dlsym(handle, symbol));
  return slot != nullptr;
}

// The library at `path` with every entry point, or nullopt with `why` set.
std::optional<NvrtcLibrary> try_load(const std::string& path, std::string& why) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = dlerror();
    why = error != nullptr ? error : "dlopen failed";
    return std::nullopt;
  }
  NvrtcLibrary lib;
  lib.path = path;
  NvrtcLibrary::Result (*version)(int*, int*) = nullptr;
  const char* missing = nullptr;
  auto need = [&](const char* symbol, auto& slot) {
    if (missing == nullptr && !resolve(handle, symbol, slot)) missing = symbol;
  };
  need("nvrtcVersion", version);
  need("nvrtcGetErrorString", lib.get_error_string);
  need("nvrtcCreateProgram", lib.create_program);
  need("nvrtcDestroyProgram", lib.destroy_program);
  need("nvrtcCompileProgram", lib.compile_program);
  need("nvrtcGetProgramLogSize", lib.get_program_log_size);
  need("nvrtcGetProgramLog", lib.get_program_log);
  need("nvrtcGetCUBINSize", lib.get_cubin_size);
  need("nvrtcGetCUBIN", lib.get_cubin);
  if (missing != nullptr) {
    why = detail::concat("loaded, but it has no ", missing, " (not an NVRTC library?)");
    dlclose(handle);
    return std::nullopt;
  }
  if (version(&lib.major, &lib.minor) != NvrtcLibrary::kSuccess) {
    why = "loaded, but nvrtcVersion failed";
    dlclose(handle);
    return std::nullopt;
  }
  // The handle stays open for the life of the process: programs and function pointers use it.
  return lib;
}

}  // namespace

std::vector<std::string> nvrtc_search_paths() {
  const std::string chosen = environment("KILN_NVRTC_LIBRARY");
  if (!chosen.empty()) return {chosen};
  std::vector<std::string> paths = {kSoname};
  auto add = [&paths](const std::string& dir) {
    if (dir.empty()) return;
    std::string path = dir + "/" + kSoname;
    if (std::find(paths.begin(), paths.end(), path) == paths.end()) {
      paths.push_back(std::move(path));
    }
  };
  const std::string cuda_home = environment("CUDA_HOME");
  if (!cuda_home.empty()) add(cuda_home + "/lib64");
  add("/usr/local/cuda/lib64");
#ifdef KILN_NVRTC_CONFIGURED_DIR
  add(KILN_NVRTC_CONFIGURED_DIR);
#endif
  return paths;
}

std::shared_ptr<const NvrtcLibrary> load_nvrtc(const std::vector<std::string>& candidates) {
  std::string tried;
  for (const std::string& path : candidates) {
    std::string why;
    if (std::optional<NvrtcLibrary> lib = try_load(path, why)) {
      return std::make_shared<const NvrtcLibrary>(std::move(*lib));
    }
    tried += detail::concat("\n  ", path, ": ", why);
  }
  fail(ErrorCode::kUnsupported,
       "NVRTC (the CUDA runtime compiler, libnvrtc.so.13) is needed to compile generated kernels "
       "and could not be loaded; tried:",
       tried.empty() ? std::string("\n  (nothing)") : tried,
       "\ninstall the CUDA toolkit or `pip install nvidia-cuda-nvrtc==13.*` "
       "(requirements-cuda.txt), or set KILN_NVRTC_LIBRARY to the library's full path");
}

const NvrtcLibrary& nvrtc_library() {
  static std::once_flag once;
  static std::shared_ptr<const NvrtcLibrary> library;
  static std::optional<Error> failure;
  std::call_once(once, [] {
    try {
      library = load_nvrtc(nvrtc_search_paths());
    } catch (const Error& e) {
      failure = e;
    }
  });
  if (failure) throw *failure;
  return *library;
}

}  // namespace kiln::codegen
