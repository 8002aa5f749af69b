#include "plugins/engine_plugins.hpp"

#include <charconv>

#include "base/error.hpp"
#include "plugins/plugin_layer.hpp"

namespace kiln::plugins {

void check_engine_plugins(const format::EngineModel& model, std::string_view source) {
  const std::string where = detail::concat(source, ": engine ");
  for (const format::PluginRef& ref : model.plugins) {
    PluginIdentity identity;
    identity.plugin_namespace = normalize_namespace(ref.plugin_namespace);
    identity.name = ref.name;
    identity.library = ref.library;
    const char* end = ref.version.data() + ref.version.size();
    const auto [ptr, ec] = std::from_chars(ref.version.data(), end, identity.version);
    if (ec != std::errc() || ptr != end || identity.version < 1) {
      // The format allows any version text; plugins registered here have integer versions.
      fail(ErrorCode::kNotFound, where, "needs plugin ",
           plugin_label(identity.plugin_namespace, ref.name, ref.version),
           ref.library.empty() ? std::string() : ", provided at build time by " + ref.library,
           "; no plugin registered in this process has that version (plugin versions are integers "
           ">= 1)");
    }
    const RegisteredCreator& creator = require_creator(identity, where);
    PluginInstance check(creator, ref.fields);  // the plugin refuses fields it cannot run with
  }
  for (const format::Layer& layer : model.layers) {
    if (!is_plugin_op(layer.op)) continue;
    require_creator(identity_of(layer.attrs, layer.name), where);
    instance_of_layer(layer.attrs, layer.name);
  }
}

std::vector<format::PluginRef> plugin_refs_of_layers(const format::EngineModel& model) {
  std::vector<format::PluginRef> refs;
  for (const format::Layer& layer : model.layers) {
    if (!is_plugin_op(layer.op)) continue;
    const PluginIdentity identity = identity_of(layer.attrs, layer.name);
    format::PluginRef ref;
    ref.plugin_namespace = identity.plugin_namespace;
    ref.name = identity.name;
    ref.version = std::to_string(identity.version);
    ref.library = identity.library;
    for (const auto& [name, value] : layer.attrs.items()) {
      if (!is_identity_attribute(name)) ref.fields.set(name, value);
    }
    bool seen = false;
    for (const format::PluginRef& r : refs) {
      seen |= r.plugin_namespace == ref.plugin_namespace && r.name == ref.name &&
              r.version == ref.version && r.library == ref.library && r.fields == ref.fields;
    }
    if (!seen) refs.push_back(std::move(ref));
  }
  return refs;
}

}  // namespace kiln::plugins
