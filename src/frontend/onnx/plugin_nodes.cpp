#include "frontend/onnx/plugin_nodes.hpp"

#include "base/error.hpp"
#include "plugins/plugin_layer.hpp"
#include "plugins/plugin_registry.hpp"

namespace kiln::onnx {

bool has_plugin_for(std::string_view domain, std::string_view op_type) {
  return plugins::plugin_registry().find_latest(domain, op_type) != nullptr;
}

void convert_to_plugin_node(std::string_view source, const std::string& node_name,
                            std::string& op_type, std::string& domain, AttributeMap& attrs) {
  const std::string where = detail::concat(source, ": node '", node_name, "' (", domain,
                                           domain.empty() ? "" : "::", op_type, ")");
  const plugins::RegisteredCreator* creator = nullptr;
  if (const Attribute* asked = attrs.find(plugins::kVersionAttribute)) {
    if (asked->kind != Attribute::Kind::kInt) {
      fail(ErrorCode::kInvalidArgument, where, ": attribute '", plugins::kVersionAttribute,
           "' must be an int, got ", attribute_kind_name(asked->kind));
    }
    creator = plugins::plugin_registry().find(domain, op_type, static_cast<int32_t>(asked->i));
    if (!creator) {
      std::string versions;
      for (int32_t v : plugins::plugin_registry().versions(domain, op_type)) {
        versions += (versions.empty() ? "" : ", ") + std::to_string(v);
      }
      fail(ErrorCode::kNotFound, where, ": asks for plugin version ", asked->i,
           " but the registered versions are ", versions);
    }
  } else {
    creator = plugins::plugin_registry().find_latest(domain, op_type);
  }
  KILN_ASSERT(creator != nullptr, "convert_to_plugin_node without a plugin for ", op_type);
  const kiln_plugin_creator& c = *creator->creator;
  const std::string plugin =
      detail::concat("plugin ", creator->label(), " (", creator->library_file_name(), ")");

  AttributeMap fields;
  for (const auto& [name, value] : attrs.items()) {
    if (name == plugins::kVersionAttribute) continue;
    const kiln_plugin_field_spec* spec = nullptr;
    for (int32_t i = 0; i < c.num_field_specs; ++i) {
      if (name == c.field_specs[i].name) spec = &c.field_specs[i];
    }
    std::string accepted;
    for (int32_t i = 0; i < c.num_field_specs; ++i)
      accepted += (i ? ", " : "") + std::string(c.field_specs[i].name);
    if (!spec) {
      fail(ErrorCode::kInvalidArgument, where, ": attribute '", name, "' is not a field of ",
           plugin,
           accepted.empty() ? std::string(", which takes none") : ", which takes: " + accepted);
    }
    const auto expected = static_cast<Attribute::Kind>(spec->kind);
    if (value.kind != expected) {
      fail(ErrorCode::kInvalidArgument, where, ": attribute '", name, "' is ",
           attribute_kind_name(value.kind), " but ", plugin, " takes it as ",
           attribute_kind_name(expected));
    }
    fields.set(name, value);
  }
  for (int32_t i = 0; i < c.num_field_specs; ++i) {
    if (c.field_specs[i].required && !fields.has(c.field_specs[i].name)) {
      fail(ErrorCode::kInvalidArgument, where, ": ", plugin, " needs attribute '",
           c.field_specs[i].name, "' (",
           attribute_kind_name(static_cast<Attribute::Kind>(c.field_specs[i].kind)), ")");
    }
  }
  AttributeMap serialised;
  try {
    serialised = plugins::PluginInstance(*creator, fields).fields();
  } catch (const Error& e) {
    throw Error(e.code(), where + ": " + e.what());
  }
  AttributeMap out;
  out.set(plugins::kNamespaceAttribute, Attribute::of_string(creator->plugin_namespace));
  out.set(plugins::kNameAttribute, Attribute::of_string(creator->name));
  out.set(plugins::kVersionAttribute, Attribute::of_int(creator->version));
  out.set(plugins::kLibraryAttribute, Attribute::of_string(creator->library_file_name()));
  for (const auto& [name, value] : serialised.items()) out.set(name, value);
  attrs = std::move(out);
  op_type =
      std::string(c.data_dependent_shapes ? plugins::kDataDependentPluginOp : plugins::kPluginOp);
  domain.clear();
}

}  // namespace kiln::onnx
