// The plugin calls of the runtime's C API: kiln_register_plugin_creator (include/kiln/plugin.h),
// kiln_load_plugin_library and kiln_describe_plugin (include/kiln/kiln.h), plus the C++
// kiln::load_plugin_library.
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.hpp"
#include "kiln/plugin.h"
#include "kiln/runtime.hpp"
#include "plugins/plugin_registry.hpp"
#include "runtime/c_api_support.hpp"

namespace kiln {

std::string load_plugin_library(const std::string& path) {
  return plugins::load_plugin_library(path);
}

namespace {

const char* field_kind_name(int32_t kind) {
  switch (kind) {
    case KILN_PLUGIN_FIELD_INT:
      return "int";
    case KILN_PLUGIN_FIELD_FLOAT:
      return "float";
    case KILN_PLUGIN_FIELD_STRING:
      return "string";
    case KILN_PLUGIN_FIELD_INTS:
      return "ints";
    case KILN_PLUGIN_FIELD_FLOATS:
      return "floats";
    case KILN_PLUGIN_FIELD_STRINGS:
      return "strings";
    default:
      return "unknown";
  }
}

std::string describe_plugin(const char* plugin_namespace, const char* name, int32_t version) {
  if (plugin_namespace == nullptr || name == nullptr)
    fail(ErrorCode::kInvalidArgument, "kiln_describe_plugin: namespace or name is NULL");
  if (version < 0)
    fail(ErrorCode::kInvalidArgument, "kiln_describe_plugin: version ", version, " is negative");
  const plugins::PluginRegistry& registry = plugins::plugin_registry();
  const plugins::RegisteredCreator* found = version == 0
                                                ? registry.find_latest(plugin_namespace, name)
                                                : registry.find(plugin_namespace, name, version);
  if (found == nullptr) {
    std::string registered;
    for (int32_t v : registry.versions(plugin_namespace, name))
      registered += (registered.empty() ? "" : ", ") + std::to_string(v);
    const std::string ns = plugins::normalize_namespace(plugin_namespace);
    fail(ErrorCode::kNotFound, "no plugin ",
         version == 0 ? ns + (ns.empty() ? "" : "::") + name
                      : plugins::plugin_label(ns, name, std::to_string(version)),
         " is registered",
         registered.empty() ? std::string() : " (registered versions: " + registered + ")");
  }
  const kiln_plugin_creator& c = *found->creator;
  nlohmann::json fields = nlohmann::json::array();
  for (int32_t i = 0; i < c.num_field_specs; ++i) {
    fields.push_back({{"name", c.field_specs[i].name},
                      {"kind", field_kind_name(c.field_specs[i].kind)},
                      {"required", c.field_specs[i].required != 0}});
  }
  return nlohmann::json{{"namespace", found->plugin_namespace},
                        {"name", found->name},
                        {"version", found->version},
                        {"library", found->library_file_name()},
                        {"data_dependent_shapes", c.data_dependent_shapes != 0},
                        {"fields", fields}}
      .dump();
}

}  // namespace

}  // namespace kiln

extern "C" {

kiln_status kiln_register_plugin_creator(const kiln_plugin_creator* creator) {
  return kiln::capi::guarded(__func__, [&] { kiln::plugins::register_creator(creator); });
}

kiln_status kiln_load_plugin_library(const char* path) {
  return kiln::capi::guarded(__func__, [&] {
    if (path == nullptr)
      kiln::fail(kiln::ErrorCode::kInvalidArgument, "kiln_load_plugin_library: path is NULL");
    kiln::plugins::load_plugin_library(path);
  });
}

kiln_status kiln_describe_plugin(const char* plugin_namespace, const char* name, int32_t version,
                                 const char** json) {
  thread_local std::string description;
  return kiln::capi::guarded(__func__, [&] {
    if (json == nullptr)
      kiln::fail(kiln::ErrorCode::kInvalidArgument, "kiln_describe_plugin: json is NULL");
    description = kiln::describe_plugin(plugin_namespace, name, version);
    *json = description.c_str();
  });
}

}  // extern "C"
