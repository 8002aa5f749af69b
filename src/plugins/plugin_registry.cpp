#include "plugins/plugin_registry.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <set>

#include "base/error.hpp"
#include "runtime/c_api_support.hpp"

namespace kiln::plugins {
namespace {

// Counts add() calls (failed ones and duplicates included), and remembers the last failure, so
// load_plugin_library can tell what a library without kiln_plugin_init did from its constructors.
std::atomic<uint64_t> registrations{0};
std::atomic<uint64_t> failed_registrations{0};
std::mutex last_failure_mutex;
std::string last_failure;

std::string file_name_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string library_label(const std::string& path) {
  return path.empty() ? "an unknown library" : path;
}

void check_creator(const kiln_plugin_creator& c, const std::string& library_path) {
  const std::string where =
      detail::concat("plugin creator ",
                     c.name ? plugin_label(c.plugin_namespace ? c.plugin_namespace : "", c.name,
                                           std::to_string(c.version))
                            : std::string("(unnamed)"),
                     " from ", library_label(library_path));
  if (c.abi_version < KILN_PLUGIN_ABI_OLDEST_VERSION || c.abi_version > KILN_PLUGIN_ABI_VERSION) {
    fail(ErrorCode::kIncompatible, where, " uses plugin ABI version ", c.abi_version,
         " but this kiln runtime (", KILN_VERSION, ") takes ABI versions ", KILN_PLUGIN_ABI_OLDEST_VERSION,
         " to ", KILN_PLUGIN_ABI_VERSION, "; rebuild the plugin against this kiln's ", "include/kiln/plugin.h");
  }
  if (c.name == nullptr || c.name[0] == '\0')
    fail(ErrorCode::kInvalidArgument, where, ": empty name");
  if (c.version < 1)
    fail(ErrorCode::kInvalidArgument, where, ": version must be >= 1, got ", c.version);
  const char* missing = !c.create    ? "create"
                        : !c.destroy ? "destroy"
                        : !c.fields  ? "fields"
                        : !c.infer   ? "infer"
                                     : nullptr;
  if (missing) fail(ErrorCode::kInvalidArgument, where, ": function '", missing, "' is NULL");
  if (!c.execute_cpu && !c.execute_cuda) {
    fail(ErrorCode::kInvalidArgument, where, ": neither execute_cpu nor execute_cuda is set");
  }
  if (c.num_field_specs < 0 || (c.num_field_specs > 0 && !c.field_specs)) {
    fail(ErrorCode::kInvalidArgument, where, ": ", c.num_field_specs,
         " field specs but field_specs is ", c.field_specs ? "set" : "NULL");
  }
  std::set<std::string_view> names;
  for (int32_t i = 0; i < c.num_field_specs; ++i) {
    const kiln_plugin_field_spec& spec = c.field_specs[i];
    const std::string_view name = spec.name ? spec.name : "";
    if (name.empty() || name.starts_with("kiln_")) {
      fail(ErrorCode::kInvalidArgument, where, ": field ", i, " is named '", name,
           "'; names must be non-empty and not start with 'kiln_'");
    }
    if (spec.kind < KILN_PLUGIN_FIELD_INT || spec.kind > KILN_PLUGIN_FIELD_STRINGS) {
      fail(ErrorCode::kInvalidArgument, where, ": field '", name, "' has unknown kind ",
           static_cast<int>(spec.kind));
    }
    if (!names.insert(name).second)
      fail(ErrorCode::kInvalidArgument, where, ": field '", name, "' is listed twice");
  }
}

}  // namespace

std::string normalize_namespace(std::string_view ns) {
  return ns == "ai.onnx" ? std::string() : std::string(ns);
}

std::string plugin_label(std::string_view ns, std::string_view name, std::string_view version) {
  return detail::concat(ns, ns.empty() ? "" : "::", name, " v", version);
}

std::string RegisteredCreator::label() const {
  return plugin_label(plugin_namespace, name, std::to_string(version));
}

std::string RegisteredCreator::library_file_name() const {
  return file_name_of(library_path);
}

void PluginRegistry::add(const kiln_plugin_creator* creator, std::string library_path) {
  ++registrations;
  try {
    add_checked(creator, std::move(library_path));
  } catch (const Error& e) {
    ++failed_registrations;
    std::lock_guard lock(last_failure_mutex);
    last_failure = e.what();
    throw;
  }
}

void PluginRegistry::add_checked(const kiln_plugin_creator* creator, std::string library_path) {
  if (creator == nullptr)
    fail(ErrorCode::kInvalidArgument, "kiln_register_plugin_creator: creator is NULL");
  check_creator(*creator, library_path);
  auto entry = std::make_unique<RegisteredCreator>();
  entry->creator = creator;
  entry->plugin_namespace =
      normalize_namespace(creator->plugin_namespace ? creator->plugin_namespace : "");
  entry->name = creator->name;
  entry->version = creator->version;
  entry->library_path = std::move(library_path);
  std::lock_guard lock(mutex_);
  for (const auto& existing : creators_) {
    if (existing->creator == creator) return;  // the same creator again (constructor + init)
    if (existing->plugin_namespace == entry->plugin_namespace && existing->name == entry->name &&
        existing->version == entry->version) {
      fail(ErrorCode::kInvalidArgument, "plugin ", entry->label(), " from ",
           library_label(entry->library_path),
           " conflicts with the different creator of the same name and version already registered "
           "from ",
           library_label(existing->library_path));
    }
  }
  creators_.push_back(std::move(entry));
}

const RegisteredCreator* PluginRegistry::find(std::string_view ns, std::string_view name,
                                              int32_t version) const {
  const std::string normalized = normalize_namespace(ns);
  std::lock_guard lock(mutex_);
  for (const auto& c : creators_) {
    if (c->plugin_namespace == normalized && c->name == name && c->version == version)
      return c.get();
  }
  return nullptr;
}

const RegisteredCreator* PluginRegistry::find_latest(std::string_view ns,
                                                     std::string_view name) const {
  const std::string normalized = normalize_namespace(ns);
  std::lock_guard lock(mutex_);
  const RegisteredCreator* best = nullptr;
  for (const auto& c : creators_) {
    if (c->plugin_namespace == normalized && c->name == name &&
        (!best || c->version > best->version))
      best = c.get();
  }
  return best;
}

std::vector<int32_t> PluginRegistry::versions(std::string_view ns, std::string_view name) const {
  const std::string normalized = normalize_namespace(ns);
  std::lock_guard lock(mutex_);
  std::vector<int32_t> out;
  for (const auto& c : creators_) {
    if (c->plugin_namespace == normalized && c->name == name) out.push_back(c->version);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> PluginRegistry::describe() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (const auto& c : creators_)
    out.push_back(c->label() + " (" + library_label(c->library_path) + ")");
  std::sort(out.begin(), out.end());
  return out;
}

PluginRegistry& plugin_registry() {
  static PluginRegistry registry;
  return registry;
}

void register_creator(const kiln_plugin_creator* creator) {
  std::string library;
  Dl_info info{};
  if (creator != nullptr && dladdr(static_cast<const void*>(creator), &info) != 0 &&
      info.dli_fname) {
    library = info.dli_fname;
  }
  plugin_registry().add(creator, std::move(library));
}

std::string load_plugin_library(const std::string& path) {
  if (path.empty()) fail(ErrorCode::kInvalidArgument, "load_plugin_library: empty path");
  const uint64_t before = registrations.load();
  const uint64_t failures_before = failed_registrations.load();
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    fail(ErrorCode::kNotFound, "cannot load plugin library ", path, ": ",
         why ? why : "dlopen failed");
  }
  std::string resolved = path;
  if (void* init = dlsym(handle, KILN_PLUGIN_INIT_SYMBOL)) {
    Dl_info info{};
    if (dladdr(init, &info) != 0 && info.dli_fname) resolved = info.dli_fname;
    const auto init_fn = reinterpret_cast<kiln_plugin_init_fn>(init);
    capi::clear_last_error();
    const kiln_status status = init_fn(KILN_PLUGIN_ABI_VERSION);
    if (status != KILN_OK) {
      // A failing kiln_register_plugin_creator left its message in this thread's last error.
      const std::string why = capi::last_error();
      const auto code = status >= KILN_ERROR_INVALID_ARGUMENT && status <= KILN_ERROR_INTERNAL
                            ? static_cast<ErrorCode>(status)
                            : ErrorCode::kInternal;
      fail(code, "plugin library ", resolved, ": ", KILN_PLUGIN_INIT_SYMBOL, " failed with status ",
           static_cast<int>(status), why.empty() ? std::string() : ": " + why);
    }
  } else if (failed_registrations.load() != failures_before) {
    std::lock_guard lock(last_failure_mutex);
    fail(ErrorCode::kInvalidArgument, "plugin library ", path,
         " failed to register a plugin creator while loading: ", last_failure);
  } else if (registrations.load() == before) {
    fail(ErrorCode::kInvalidArgument, "plugin library ", path, " exports no ",
         KILN_PLUGIN_INIT_SYMBOL,
         " and registered no plugin creator when loaded; is it a kiln plugin?");
  }
  return resolved;
}

}  // namespace kiln::plugins
