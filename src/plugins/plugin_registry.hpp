// The process-wide registry of plugin creators (include/kiln/plugin.h), in libkiln_runtime.so:
// plugin libraries register into it however they are loaded (constructor, kiln_plugin_init), the
// builder maps ONNX nodes to its creators, and the runtime checks engines' plugin references
// against it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/plugin.h"

namespace kiln::plugins {

// One registered creator and the library file it lives in.
struct RegisteredCreator {
  const kiln_plugin_creator* creator = nullptr;
  std::string plugin_namespace;  // normalised: "ai.onnx" is ""
  std::string name;
  int32_t version = 0;
  std::string library_path;  // as the dynamic loader reports it ("" if unknown)

  // "ns::name v3" (or "name v3" for the default namespace).
  std::string label() const;
  // The library's file name without its directory, e.g. "libkiln_test_plugin.so" ("" if unknown).
  std::string library_file_name() const;
};

// "" for the ONNX default domain ("" or "ai.onnx"), else `ns` itself.
std::string normalize_namespace(std::string_view ns);
// "ns::name v<version>" (or "name v<version>").
std::string plugin_label(std::string_view ns, std::string_view name, std::string_view version);

class PluginRegistry {
 public:
  // Checks the creator (ABI version, required members, field specs) and adds it, remembering
  // `library_path`. Adding the same creator again does nothing. Throws kiln::Error:
  // kIncompatible for another ABI version; kInvalidArgument for a malformed creator or a different
  // creator already registered under the same (namespace, name, version), naming both libraries.
  void add(const kiln_plugin_creator* creator, std::string library_path);
  // The creator registered under exactly (namespace, name, version), or nullptr. The pointer stays
  // valid for the registry's life (creators are never removed).
  const RegisteredCreator* find(std::string_view ns, std::string_view name, int32_t version) const;
  // The highest version registered under (namespace, name), or nullptr.
  const RegisteredCreator* find_latest(std::string_view ns, std::string_view name) const;
  // The versions registered under (namespace, name), ascending.
  std::vector<int32_t> versions(std::string_view ns, std::string_view name) const;
  // Every registered creator's label and library, sorted; for messages and inspect.
  std::vector<std::string> describe() const;

 private:
  void add_checked(const kiln_plugin_creator* creator, std::string library_path);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<RegisteredCreator>> creators_;
};

// The process-wide registry (constructed on first use, thread-safe).
PluginRegistry& plugin_registry();

// Registers `creator` with the library file found from its address (dladdr). Throws as
// PluginRegistry::add.
void register_creator(const kiln_plugin_creator* creator);

// dlopens `path` (RTLD_NOW | RTLD_GLOBAL: kept loaded for the process's life), then calls its
// exported kiln_plugin_init when it has one. Returns the path the loader resolved. Throws
// kNotFound when the file cannot be loaded (with dlerror's text); kInvalidArgument when it
// neither exports kiln_plugin_init nor registered a creator while loading, or (without
// kiln_plugin_init) a registration from its constructors failed; what kiln_plugin_init's failing
// registration reported.
std::string load_plugin_library(const std::string& path);

}  // namespace kiln::plugins
