// Plugin layers: how a layer (or IR node) names its plugin, and the C++ side of a plugin instance.
//
// A plugin layer's op is kPluginOp, or kDataDependentPluginOp when its creator may give
// data-dependent output dims (the runtime then ends a segment after it, as for NonZero). Its
// attributes are the plugin's identity (kNamespaceAttribute, kNameAttribute, kVersionAttribute,
// kLibraryAttribute: the library file name that provided it at build time) and the plugin's
// fields, under their own names (field names never start with "kiln_").
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/attributes.hpp"
#include "kiln/plugin.h"
#include "kiln/types.hpp"
#include "plugins/plugin_registry.hpp"

namespace kiln::plugins {

inline constexpr std::string_view kPluginOp = "Plugin";
inline constexpr std::string_view kDataDependentPluginOp = "PluginDataDependent";
inline constexpr const char* kNamespaceAttribute = "kiln_plugin_namespace";
inline constexpr const char* kNameAttribute = "kiln_plugin_name";
inline constexpr const char* kVersionAttribute = "kiln_plugin_version";
inline constexpr const char* kLibraryAttribute = "kiln_plugin_library";

inline bool is_plugin_op(std::string_view op) {
  return op == kPluginOp || op == kDataDependentPluginOp;
}
// True for the identity attributes above (not plugin fields).
bool is_identity_attribute(std::string_view name);

// The identity a plugin layer's attributes name; throws kCorruptFile naming `layer` when they are
// missing or of the wrong kind.
struct PluginIdentity {
  std::string plugin_namespace;
  std::string name;
  int32_t version = 0;
  std::string library;  // file name recorded at build time ("" if unknown)
  std::string label() const;
};
PluginIdentity identity_of(const AttributeMap& attrs, std::string_view layer);

// The registered creator for `identity`; throws kNotFound "<where>needs plugin ..." naming the
// plugin, its version, the library that provided it at build time and the versions registered
// under its name, if any.
const RegisteredCreator& require_creator(const PluginIdentity& identity, std::string_view where);

// An instance of a creator made from fields (kiln_plugin_create); destroyed with the object.
// Every call throws kiln::Error with the plugin's own message, prefixed by its label and library.
class PluginInstance {
 public:
  // `fields`: the plugin's fields (identity attributes are skipped). Throws kInvalidArgument when
  // create fails.
  PluginInstance(const RegisteredCreator& creator, const AttributeMap& fields);
  ~PluginInstance();
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  const RegisteredCreator& creator() const { return creator_; }
  // The fields as the plugin serialises them (kiln_plugin_fields_fn).
  AttributeMap fields() const;
  // kUnsupported when the plugin refuses these input dtypes (absent inputs: pass kFloat32).
  void check_dtypes(std::span<const DType> input_dtypes) const;
  // Output descriptions for these inputs (absent inputs: ndim -1). kInvalidArgument on failure or
  // on an answer that breaks the contract (rank, input/dim index, a data-dependent dim from a
  // creator that did not declare them).
  std::vector<kiln_plugin_output_desc> infer(std::span<const kiln_plugin_tensor_desc> inputs,
                                             size_t num_outputs) const;
  // Scratch bytes the plugin's execute call for `backend` needs (0 without a workspace function;
  // an ABI version 1 creator is not told the backend). kInvalidArgument on failure or a negative
  // answer.
  int64_t workspace_size(kiln_plugin_backend backend, std::span<const kiln_plugin_tensor_desc> inputs,
                         std::span<const kiln_plugin_tensor_desc> outputs) const;
  // kUnsupported when the plugin has no CPU implementation; else runs it (failures:
  // kInvalidArgument).
  void execute_cpu(std::span<const kiln_plugin_tensor> inputs,
                   std::span<kiln_plugin_tensor> outputs, void* workspace) const;
  // Whether the plugin has a CUDA implementation (execute_cuda is not NULL).
  bool runs_on_cuda() const { return creator_.creator->execute_cuda != nullptr; }
  // kUnsupported when the plugin has no CUDA implementation; else enqueues it on `stream` (a
  // cudaStream_t) with device pointers (failures: kInvalidArgument).
  void execute_cuda(std::span<const kiln_plugin_tensor> inputs,
                    std::span<kiln_plugin_tensor> outputs, void* workspace, void* stream) const;
  // The shape a data-dependent layer's output `output` got: `written` (what execute wrote into
  // the output's shape[]) after checking it against `bound` (the shape its buffer was sized for):
  // same rank, no negative dimension, at most as many elements. Throws kInvalidArgument naming
  // the plugin, the output and both shapes.
  Shape checked_written_shape(size_t output, const Shape& written, const Shape& bound) const;

 private:
  [[noreturn]] void fail_call(ErrorCode code, std::string_view call,
                              const kiln_plugin_error& error) const;
  std::string prefix() const;

  const RegisteredCreator& creator_;
  void* handle_ = nullptr;
};

// The instance for a plugin layer's attributes, made once per distinct identity and fields and
// shared afterwards (thread-safe). Throws as require_creator and PluginInstance; the messages do
// not name the layer (`layer` is only used for malformed identity attributes).
std::shared_ptr<const PluginInstance> instance_of_layer(const AttributeMap& attrs,
                                                        std::string_view layer);

}  // namespace kiln::plugins
