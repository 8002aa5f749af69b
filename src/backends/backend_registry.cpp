#include "backends/backend_registry.hpp"

#include <algorithm>
#include <mutex>

#include "base/error.hpp"

namespace kiln::backends {
namespace {

struct Registry {
  std::mutex mutex;
  std::vector<const Backend*> backends;
  std::vector<AbsentBackend> absent;
  const Backend* host = nullptr;
};

// The built-in backends are added on first use, under the lock, before any other registration.
Registry& registry() {
  static Registry* const instance = [] {
    auto* r = new Registry;  // never destroyed: backends may be looked up during exit
    BuiltinBackends builtins = builtin_backends();
    r->backends = std::move(builtins.present);
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

std::string names_locked(const Registry& r) {
  std::string names;
  for (const Backend* b : r.backends) names += (names.empty() ? "" : ", ") + b->name();
  return names.empty() ? "none" : names;
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
}

const Backend* find_backend(std::string_view name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return find_locked(r, name);
}

const Backend& backend_for(const format::Target& target, const std::string& source) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (const Backend* backend = find_locked(r, target.backend)) return *backend;
  for (const AbsentBackend& absent : r.absent) {
    if (absent.name == target.backend) {
      fail(ErrorCode::kDeviceError, source, ": engine targets ", describe_target(target), " but this kiln runtime ",
           absent.reason, " (its backends: ", names_locked(r), ")");
    }
  }
  fail(ErrorCode::kIncompatible, source, ": engine targets unknown backend '", target.backend,
       "'; this runtime has backends: ", names_locked(r));
}

std::vector<std::string> backend_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  for (const Backend* b : r.backends) names.push_back(b->name());
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
