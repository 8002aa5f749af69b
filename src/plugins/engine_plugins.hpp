// What an engine needs from the plugin registry: the runtime's check at load, and the builder's
// list of the plugins an engine's layers use (format section 6, docs/engine-format.md).
#pragma once

#include <string_view>
#include <vector>

#include "format/engine_model.hpp"

namespace kiln::plugins {

// At engine load: every plugin the engine names (model.plugins, and every plugin layer) must be
// registered, and its fields must make an instance. Throws kNotFound naming `source`, the plugin,
// its version and the library that provided it at build time; the plugin's own error (naming it)
// when its fields are refused; kCorruptFile for a malformed plugin layer.
void check_engine_plugins(const format::EngineModel& model, std::string_view source);

// At build time: one reference per distinct (namespace, name, version, library, fields) among the
// model's plugin layers, in layer order.
std::vector<format::PluginRef> plugin_refs_of_layers(const format::EngineModel& model);

}  // namespace kiln::plugins
