#include "runtime/c_api_handles.hpp"

#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "base/error.hpp"

namespace kiln::capi {
namespace {

// Leaked on purpose: handles may be released from static destructors of the caller's program.
struct Registry {
  std::shared_mutex mutex;
  std::unordered_map<const void*, HandleKind> live;
};

Registry& registry() {
  static Registry* instance = new Registry;
  return *instance;
}

const char* kind_name(HandleKind kind) {
  return kind == HandleKind::kEngine ? "kiln_engine" : "kiln_context";
}

}  // namespace

void register_handle(const void* handle, HandleKind kind) {
  Registry& r = registry();
  std::unique_lock lock(r.mutex);
  r.live[handle] = kind;
}

bool unregister_handle(const void* handle, HandleKind kind) noexcept {
  Registry& r = registry();
  std::unique_lock lock(r.mutex);
  const auto it = r.live.find(handle);
  if (it == r.live.end() || it->second != kind) return false;
  r.live.erase(it);
  return true;
}

void require_live_handle(const void* handle, HandleKind kind, const char* call, const char* what) {
  if (!handle) fail(ErrorCode::kInvalidArgument, call, ": ", what, " must not be NULL");
  Registry& r = registry();
  std::shared_lock lock(r.mutex);
  const auto it = r.live.find(handle);
  if (it == r.live.end()) {
    fail(ErrorCode::kInvalidArgument, call, ": ", what, " is not a live ", kind_name(kind),
         " (released already, or never returned by kiln)");
  }
  if (it->second != kind) {
    fail(ErrorCode::kInvalidArgument, call, ": ", what, " is a ", kind_name(it->second), ", not a ",
         kind_name(kind));
  }
}

}  // namespace kiln::capi
