// The plugin calls of the runtime's C API: kiln_register_plugin_creator (include/kiln/plugin.h) and
// kiln_load_plugin_library (include/kiln/kiln.h), plus the C++ kiln::load_plugin_library.
#include "base/error.hpp"
#include "kiln/plugin.h"
#include "kiln/runtime.hpp"
#include "plugins/plugin_registry.hpp"
#include "runtime/c_api_support.hpp"

namespace kiln {

std::string load_plugin_library(const std::string& path) {
  return plugins::load_plugin_library(path);
}

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

}  // extern "C"
