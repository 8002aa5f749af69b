// ONNX nodes that become plugin layers: a node whose (domain, op type) names a registered plugin
// creator (domain -> namespace, op type -> name), when kiln's core does not implement it.
#pragma once

#include <string>
#include <string_view>

#include "base/attributes.hpp"

namespace kiln::onnx {

// True when a plugin creator is registered under (domain, op_type) (any version).
bool has_plugin_for(std::string_view domain, std::string_view op_type);

// Turns a node that has_plugin_for into a plugin layer (src/plugins/plugin_layer.hpp): picks the
// creator (the highest version, or the one the node's int attribute kiln_plugin_version names),
// checks the node's attributes against the creator's fields, lets the plugin make an instance from
// them and stores the fields it serialises with the plugin's identity. Rewrites `op_type`, `domain`
// and `attrs`. Throws kInvalidArgument naming `source`, the node, the plugin and the attribute for
// an unknown attribute, a wrong kind or a missing required field; kNotFound for a version that is
// not registered; the plugin's own error when it refuses the values.
void convert_to_plugin_node(std::string_view source, const std::string& node_name,
                            std::string& op_type, std::string& domain, AttributeMap& attrs);

}  // namespace kiln::onnx
