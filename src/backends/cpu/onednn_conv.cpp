#include "backends/cpu/onednn_conv.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string_view>

#include "backends/backend_library.hpp"
#include "backends/cpu/onednn/onednn_library.hpp"

namespace kiln::cpu::onednn {

namespace {

ConvChoice requested_choice(const char* variable) {
  const char* value = std::getenv(variable);
  if (value == nullptr || *value == '\0') return ConvChoice::kAuto;
  const std::string_view choice(value);
  if (choice == "reference") return ConvChoice::kReference;
  if (choice == "onednn") return ConvChoice::kOnednn;
  fail(ErrorCode::kInvalidArgument, variable, "=\"", choice,
       "\": expected \"reference\" or \"onednn\" (or unset for the default, oneDNN where available)");
}

}  // namespace

ConvChoice requested_conv_choice() { return requested_choice("KILN_CPU_CONV"); }

ConvChoice requested_matmul_choice() { return requested_choice("KILN_CPU_MATMUL"); }

namespace {

constexpr const char* kLibraryFile = "libkiln_cpu_onednn.so";

struct LoadedLibrary {
  const LibraryEntry* entry = nullptr;
  std::string why_not;  // set when entry is null
};

// Loaded once per process, from the runtime's directory; never unloaded (layer states it made
// live in contexts). A missing library is not an error: the reference convolution runs.
const LoadedLibrary& library() {
  static LoadedLibrary loaded;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string path = backends::runtime_directory() + kLibraryFile;
    // libdnnl's OpenMP runtime (libgomp) reads its waiting policy from the environment when it
    // loads, with this dlopen. Its default spins a thread for milliseconds after each parallel
    // region, which on cores shared with other busy processes made a 2-thread ResNet-18 call ~30x
    // slower; OMP_WAIT_POLICY=passive sleeps at once, which made a 2-thread MobileNetV2 call slower
    // than a 1-thread one (every layer waits for a thread to wake). Unless the user chose
    // (OMP_WAIT_POLICY or GOMP_SPINCOUNT set), threads poll about 0.1-0.3 ms, the gap between
    // layers, then sleep; the variable is removed again so the process environment is unchanged.
    const bool choose_spin = std::getenv("OMP_WAIT_POLICY") == nullptr && std::getenv("GOMP_SPINCOUNT") == nullptr;
    if (choose_spin) setenv("GOMP_SPINCOUNT", "10000", 0);
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (choose_spin) unsetenv("GOMP_SPINCOUNT");
    if (handle == nullptr) {
      const char* why = dlerror();
      loaded.why_not = why ? why : "cannot load " + path;
      return;
    }
    using EntryFn = const LibraryEntry* (*)(const char*);
    const auto entry_fn = reinterpret_cast<EntryFn>(dlsym(handle, "kiln_cpu_onednn_entry"));
    loaded.entry = entry_fn ? entry_fn(KILN_VERSION) : nullptr;
    if (loaded.entry == nullptr) {
      loaded.why_not = path + " has no kiln_cpu_onednn_entry of kiln " KILN_VERSION;
      dlclose(handle);
    } else if (loaded.entry->run_on_team != nullptr) {
      install_shared_team(loaded.entry->run_on_team);  // one thread team for the whole process
    }
  });
  return loaded;
}

}  // namespace

bool available() { return library().entry != nullptr; }

std::string describe() {
  const LoadedLibrary& loaded = library();
  return loaded.entry ? loaded.entry->describe() : "oneDNN: not available (" + loaded.why_not + ")";
}

bool try_run_conv(KernelContext& ctx) {
  const LoadedLibrary& loaded = library();
  return loaded.entry != nullptr && loaded.entry->try_run_conv(ctx);
}

bool try_run_matmul(KernelContext& ctx) {
  const LoadedLibrary& loaded = library();
  return loaded.entry != nullptr && loaded.entry->try_run_matmul(ctx);
}

}  // namespace kiln::cpu::onednn
