#include "backends/backend_registry.hpp"

#include <algorithm>
#include <mutex>

#include "backends/backend_library.hpp"
#include "base/error.hpp"

namespace kiln::backends {
namespace {

// A backend in a library of its own, before and after its one load attempt.
struct LibrarySlot {
  LibraryBackend library;
  bool tried = false;
  std::string error;  // tried and failed: why
};

struct Registry {
  std::mutex mutex;
  // Held while a library loads, so that each loads once; taken before `mutex`, never while
  // holding it (a library's initialisers may run anything).
  std::mutex load_mutex;
  std::vector<const Backend*> backends;
  std::vector<LibrarySlot> libraries;
  std::vector<AbsentBackend> absent;
  const Backend* host = nullptr;
};

// The built-in backends are added on first use, under the lock, before any other registration.
Registry& registry() {
  static Registry* const instance = [] {
    auto* r = new Registry;  // never destroyed: backends may be looked up during exit
    BuiltinBackends builtins = builtin_backends();
    r->backends = std::move(builtins.present);
    for (LibraryBackend& library : builtins.libraries) r->libraries.push_back({std::move(library), false, ""});
    r->absent = std::move(builtins.absent);
    r->host = builtins.host;
    return r;
  }();
  return *instance;
}

const Backend* find_locked(const Registry& r, std::string_view name) {
  const auto found =
      std::find_if(r.backends.begin(), r.backends.end(), [&](const Backend* b) { return b->name() == name; });
  return found == r.backends.end() ? nullptr : *found;
}

LibrarySlot* find_library_locked(Registry& r, std::string_view name) {
  const auto found = std::find_if(r.libraries.begin(), r.libraries.end(),
                                  [&](const LibrarySlot& s) { return s.library.name == name; });
  return found == r.libraries.end() ? nullptr : &*found;
}

// Registered backends, then libraries not tried yet (a failed one is no backend of this runtime).
std::string names_locked(const Registry& r) {
  std::string names;
  for (const Backend* b : r.backends) names += (names.empty() ? "" : ", ") + b->name();
  for (const LibrarySlot& s : r.libraries) {
    if (!s.tried) names += (names.empty() ? "" : ", ") + s.library.name;
  }
  return names.empty() ? "none" : names;
}

// Why `name` is no usable backend, following "this kiln runtime "; "" when it is not known absent.
std::string absent_reason_locked(Registry& r, std::string_view name) {
  if (const LibrarySlot* slot = find_library_locked(r, name); slot && slot->tried && !slot->error.empty()) {
    return "cannot load its " + slot->library.name + " backend: " + slot->error;
  }
  for (const AbsentBackend& absent : r.absent) {
    if (absent.name == name) return absent.reason;
  }
  return "";
}

// The backend `name`: registered, or loaded now from its library (once; a failure is remembered
// and answered the same way afterwards). Null when there is none or its library failed to load.
const Backend* find_or_load(Registry& r, std::string_view name) {
  {
    std::lock_guard lock(r.mutex);
    if (const Backend* backend = find_locked(r, name)) return backend;
    const LibrarySlot* slot = find_library_locked(r, name);
    if (!slot || slot->tried) return nullptr;
  }
  std::lock_guard loading(r.load_mutex);
  LibraryBackend library;
  {
    std::lock_guard lock(r.mutex);
    if (const Backend* backend = find_locked(r, name)) return backend;  // loaded meanwhile
    const LibrarySlot* slot = find_library_locked(r, name);
    if (!slot || slot->tried) return nullptr;
    library = slot->library;
  }
  LoadedBackend loaded = load_backend_library(library);
  std::lock_guard lock(r.mutex);
  LibrarySlot* slot = find_library_locked(r, name);
  if (!slot) return find_locked(r, name);  // register_backend took the name meanwhile
  slot->tried = true;
  slot->error = std::move(loaded.error);
  if (loaded.backend) r.backends.push_back(loaded.backend);
  return loaded.backend;
}

// "cuda sm_90 (NVIDIA H100)", "cpu": the target as its messages name it.
std::string describe_target(const format::Target& target) {
  std::string text = target.backend;
  if (target.sm_arch > 0) text += " sm_" + std::to_string(target.sm_arch);
  if (!target.device_name.empty()) text += " (" + target.device_name + ")";
  return text;
}

}  // namespace

void register_backend(const Backend& backend) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (find_locked(r, backend.name())) {
    fail(ErrorCode::kInvalidArgument, "a backend named '", backend.name(), "' is registered already");
  }
  r.backends.push_back(&backend);
  std::erase_if(r.absent, [&](const AbsentBackend& a) { return a.name == backend.name(); });
  std::erase_if(r.libraries, [&](const LibrarySlot& s) { return s.library.name == backend.name(); });
}

const Backend* find_backend(std::string_view name) { return find_or_load(registry(), name); }

const Backend& backend_for(const format::Target& target, const std::string& source) {
  Registry& r = registry();
  if (const Backend* backend = find_or_load(r, target.backend)) return *backend;
  std::lock_guard lock(r.mutex);
  if (const Backend* backend = find_locked(r, target.backend)) return *backend;
  if (const std::string reason = absent_reason_locked(r, target.backend); !reason.empty()) {
    fail(ErrorCode::kDeviceError, source, ": engine targets ", describe_target(target), " but this kiln runtime ",
         reason, " (its backends: ", names_locked(r), ")");
  }
  fail(ErrorCode::kIncompatible, source, ": engine targets unknown backend '", target.backend,
       "'; this runtime has backends: ", names_locked(r));
}

std::string why_absent(std::string_view name) {
  Registry& r = registry();
  if (find_or_load(r, name)) return "";
  std::lock_guard lock(r.mutex);
  if (find_locked(r, name)) return "";
  const std::string reason = absent_reason_locked(r, name);
  return reason.empty() ? "has no backend '" + std::string(name) + "'" : reason;
}

std::vector<std::string> backend_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const Backend* b : r.backends) names.push_back(b->name());
  for (const LibrarySlot& s : r.libraries) {
    if (!s.tried) names.push_back(s.library.name);
  }
  return names;
}

PointerPlace locate_pointer(const void* pointer) {
  std::vector<const Backend*> backends;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    backends = r.backends;
  }
  for (const Backend* backend : backends) {
    const PointerPlace place = backend->locate(pointer);
    if (place.known) return place;
  }
  return {};
}

const Backend& host_backend() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return *r.host;
}

}  // namespace kiln::backends
