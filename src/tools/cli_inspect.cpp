// kiln inspect: describe an engine file without running it.
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "base/json.hpp"
#include "format/engine_io.hpp"
#include "tools/cli_args.hpp"
#include "tools/commands.hpp"
#include "tools/json_writer.hpp"

namespace kiln::tools {
namespace {

constexpr std::string_view kInspectHelp =
    R"(usage: kiln inspect ENGINE.kiln [--json] [--kernels [--source] | --kernel NAME]

Describe an engine file: format version, producer, target, precision, input and output bindings
(dtype, shape, dynamic dimension ranges), layers (op, input and output tensors with shapes),
weights, memory plan, plugins, generated kernel modules and metadata. The file is verified but
not run (no GPU is needed, and cubins are not loaded).

options:
  --json          print one JSON document instead of text
  --kernels       list only the generated kernel modules: name, architecture, compiler, cubin
                  size and the layers that use each
  --source        with --kernels: also print each module's CUDA source; with --json: include
                  the sources in the document
  --kernel NAME   print the CUDA source of module NAME (with --json: the module as JSON)
  -h, --help      show this help
)";

using format::EngineModel;

std::string_view tensor_kind_name(format::TensorKind kind) {
  switch (kind) {
    case format::TensorKind::kInput:
      return "input";
    case format::TensorKind::kOutput:
      return "output";
    case format::TensorKind::kWeight:
      return "weight";
    case format::TensorKind::kActivation:
      return "activation";
  }
  return "?";
}

const format::TensorDesc* tensor_at(const EngineModel& model, int64_t index) {
  if (index < 0 || static_cast<size_t>(index) >= model.tensors.size()) return nullptr;
  return &model.tensors[static_cast<size_t>(index)];
}

template <typename T>
std::string join_list(const std::vector<T>& values) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < values.size(); ++i) out << (i > 0 ? ", " : "") << values[i];
  out << ']';
  return out.str();
}

std::string attribute_text(const Attribute& attr) {
  switch (attr.kind) {
    case Attribute::Kind::kInt:
      return std::to_string(attr.i);
    case Attribute::Kind::kFloat: {
      std::ostringstream out;
      out << attr.f;
      return out.str();
    }
    case Attribute::Kind::kString:
      return json_quote(attr.s);
    case Attribute::Kind::kInts:
      return join_list(attr.ints);
    case Attribute::Kind::kFloats:
      return join_list(attr.floats);
    case Attribute::Kind::kStrings: {
      std::vector<std::string> quoted;
      for (const std::string& s : attr.strings) quoted.push_back(json_quote(s));
      return join_list(quoted);
    }
    case Attribute::Kind::kTensor:
      if (!attr.tensor) return "tensor(null)";
      return "tensor(" + std::string(dtype_name(attr.tensor->dtype)) + " " +
             shape_to_string(attr.tensor->shape) + ")";
  }
  return "?";
}

void write_attribute_json(JsonWriter& out, const Attribute& attr) {
  switch (attr.kind) {
    case Attribute::Kind::kInt:
      out.value(attr.i);
      return;
    case Attribute::Kind::kFloat:
      out.value(static_cast<double>(attr.f));
      return;
    case Attribute::Kind::kString:
      out.value(attr.s);
      return;
    case Attribute::Kind::kInts:
      out.begin_array();
      for (int64_t v : attr.ints) out.value(v);
      out.end_array();
      return;
    case Attribute::Kind::kFloats:
      out.begin_array();
      for (float v : attr.floats) out.value(static_cast<double>(v));
      out.end_array();
      return;
    case Attribute::Kind::kStrings:
      out.begin_array();
      for (const std::string& v : attr.strings) out.value(v);
      out.end_array();
      return;
    case Attribute::Kind::kTensor:
      out.begin_object();
      if (attr.tensor) {
        out.key("dtype").value(dtype_name(attr.tensor->dtype));
        out.key("shape").begin_array();
        for (int64_t d : attr.tensor->shape) out.value(d);
        out.end_array();
      }
      out.end_object();
      return;
  }
}

void write_shape_json(JsonWriter& out, const Shape& shape) {
  out.begin_array();
  for (int64_t d : shape) {
    if (d == kDynamicDim) {
      out.null();
    } else {
      out.value(d);
    }
  }
  out.end_array();
}

uint64_t weight_tensor_count(const EngineModel& model) {
  uint64_t count = 0;
  for (const format::TensorDesc& t : model.tensors) count += t.kind == format::TensorKind::kWeight;
  return count;
}

std::string target_text(const format::Target& target) {
  std::string text = target.backend;
  if (target.sm_arch != 0) text += ", sm_" + std::to_string(target.sm_arch);
  if (!target.device_name.empty()) text += ", built on " + target.device_name;
  return text;
}

// The layers that name `module` in their "kiln_kernel" attribute.
std::vector<std::string> layers_using(const EngineModel& model, const std::string& module) {
  std::vector<std::string> names;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const format::Layer& layer = model.layers[i];
    const Attribute* kernel = layer.attrs.find(format::kKernelModuleAttribute);
    if (kernel == nullptr || kernel->kind != Attribute::Kind::kString || kernel->s != module) {
      continue;
    }
    names.push_back(layer.name.empty() ? detail::concat("[", i, "]") : layer.name);
  }
  return names;
}

const format::KernelModule& find_kernel_module(const EngineModel& model, const std::string& name,
                                               const std::string& path) {
  for (const format::KernelModule& module : model.kernels) {
    if (module.name == name) return module;
  }
  std::string names;
  for (const format::KernelModule& module : model.kernels) {
    names += detail::concat(names.empty() ? "'" : ", '", module.name, "'");
  }
  fail(ErrorCode::kNotFound, path, " has no kernel module '", name, "' (its modules: ",
       names.empty() ? std::string("none") : names, ")");
}

void print_kernel_modules(const EngineModel& model, bool with_source) {
  std::cout << "kernels (" << model.kernels.size() << "):\n";
  for (const format::KernelModule& module : model.kernels) {
    const std::vector<std::string> layers = layers_using(model, module.name);
    std::cout << "  " << module.name << ": sm_" << module.sm_arch << ", "
              << (module.compiler.empty() ? "unknown compiler" : module.compiler) << ", cubin "
              << module.cubin.size() << " bytes, source " << module.source.size()
              << " bytes; layers (" << layers.size() << "):";
    for (const std::string& layer : layers) std::cout << ' ' << layer;
    std::cout << '\n';
    if (with_source) {
      std::cout << "  ---- source of " << module.name << " ----\n" << module.source;
      if (!module.source.empty() && module.source.back() != '\n') std::cout << '\n';
      std::cout << "  ---- end of " << module.name << " ----\n";
    }
  }
}

void write_kernel_module_json(JsonWriter& out, const EngineModel& model,
                              const format::KernelModule& module, bool with_source) {
  out.begin_object();
  out.key("name").value(module.name);
  out.key("sm_arch").value(static_cast<int64_t>(module.sm_arch));
  out.key("compiler").value(module.compiler);
  out.key("cubin_bytes").value(static_cast<uint64_t>(module.cubin.size()));
  out.key("source_bytes").value(static_cast<uint64_t>(module.source.size()));
  out.key("layers").begin_array();
  for (const std::string& layer : layers_using(model, module.name)) out.value(layer);
  out.end_array();
  if (with_source) out.key("source").value(module.source);
  out.end_object();
}

std::string version_text(const format::FormatVersion& v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor);
}

std::string tensor_text(const EngineModel& model, int32_t index) {
  const format::TensorDesc* t = tensor_at(model, index);
  if (t == nullptr) return "<absent>";
  return t->name + " " + std::string(dtype_name(t->dtype)) + " " + shape_to_string(t->shape);
}

void print_bindings(const EngineModel& model, const std::vector<format::Binding>& bindings) {
  for (const format::Binding& binding : bindings) {
    const format::TensorDesc* t = tensor_at(model, binding.tensor);
    std::cout << "  " << binding.name << ": ";
    if (t == nullptr) {
      std::cout << "<bad tensor index>\n";
      continue;
    }
    std::cout << dtype_name(t->dtype) << ' ' << shape_to_string(t->shape);
    for (size_t d = 0; d < binding.ranges.size(); ++d) {
      const format::DimRange& r = binding.ranges[d];
      if (r.min == r.max) continue;
      std::cout << "  dim " << d << ": " << r.min << ".." << r.max << " (opt " << r.opt << ")";
    }
    std::cout << '\n';
  }
}

// The layers a cuda engine runs on the host, as its build recorded them (kiln_build.host_layers).
void print_host_layers(const EngineModel& model) {
  const json::Value metadata = json::parse(model.metadata_json);
  const json::Value* build = metadata.find("kiln_build");
  const json::Value* host = build ? build->find("host_layers") : nullptr;
  if (host == nullptr) return;
  std::cout << "host layers (" << host->as_array().size() << "; no cuda kernel takes them):\n";
  for (const json::Value& layer : host->as_array()) std::cout << "  " << layer.as_string("host layer") << '\n';
}

void print_text(const std::string& path, const EngineModel& model) {
  std::cout << "engine:         " << path << '\n'
            << "format version: " << version_text(model.version) << '\n'
            << "producer:       " << model.producer << '\n'
            << "target:         " << target_text(model.target) << '\n'
            << "precision:      " << dtype_name(model.precision) << '\n';
  std::cout << "inputs (" << model.inputs.size() << "):\n";
  print_bindings(model, model.inputs);
  std::cout << "outputs (" << model.outputs.size() << "):\n";
  print_bindings(model, model.outputs);
  std::cout << "layers (" << model.layers.size() << "):\n";
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const format::Layer& layer = model.layers[i];
    std::cout << "  [" << i << "] " << layer.op << " '" << layer.name << "'\n";
    for (int32_t index : layer.inputs)
      std::cout << "      in:  " << tensor_text(model, index) << '\n';
    for (int32_t index : layer.outputs)
      std::cout << "      out: " << tensor_text(model, index) << '\n';
    if (layer.attrs.size() > 0) {
      std::cout << "      attrs:";
      for (const auto& [name, attr] : layer.attrs.items()) {
        std::cout << ' ' << name << '=' << attribute_text(attr);
      }
      std::cout << '\n';
    }
  }
  std::cout << "weights:        " << model.weights.size() << " bytes in "
            << weight_tensor_count(model) << " tensors\n";
  const format::MemoryPlan& plan = model.memory_plan;
  std::cout << "memory plan:    arena " << plan.arena_size << " bytes, alignment " << plan.alignment
            << ", " << (plan.is_static ? "static" : "dynamic (re-planned at run time)") << '\n';
  std::cout << "plugins (" << model.plugins.size() << "):\n";
  for (const format::PluginRef& plugin : model.plugins) {
    std::cout << "  " << plugin.plugin_namespace << (plugin.plugin_namespace.empty() ? "" : "::") << plugin.name
              << " v" << plugin.version << " from " << (plugin.library.empty() ? "(unknown library)" : plugin.library);
    if (plugin.fields.size() > 0) {
      std::cout << "\n      fields:";
      for (const auto& [name, attr] : plugin.fields.items()) std::cout << ' ' << name << '=' << attribute_text(attr);
    }
    std::cout << '\n';
  }
  print_kernel_modules(model, /*with_source=*/false);
  print_host_layers(model);
  std::cout << "metadata:       " << model.metadata_json << '\n';
}

void write_bindings_json(JsonWriter& out, const EngineModel& model,
                         const std::vector<format::Binding>& bindings) {
  out.begin_array();
  for (const format::Binding& binding : bindings) {
    const format::TensorDesc* t = tensor_at(model, binding.tensor);
    out.begin_object();
    out.key("name").value(binding.name);
    if (t != nullptr) {
      out.key("dtype").value(dtype_name(t->dtype));
      out.key("shape");
      write_shape_json(out, t->shape);
    }
    if (!binding.ranges.empty()) {
      out.key("ranges").begin_array();
      for (const format::DimRange& r : binding.ranges) {
        out.begin_object().key("min").value(r.min).key("opt").value(r.opt).key("max").value(r.max);
        out.end_object();
      }
      out.end_array();
    }
    out.end_object();
  }
  out.end_array();
}

void write_tensor_ref_json(JsonWriter& out, const EngineModel& model, int32_t index) {
  const format::TensorDesc* t = tensor_at(model, index);
  if (t == nullptr) {
    out.null();
    return;
  }
  out.begin_object();
  out.key("name").value(t->name);
  out.key("dtype").value(dtype_name(t->dtype));
  out.key("shape");
  write_shape_json(out, t->shape);
  out.key("kind").value(tensor_kind_name(t->kind));
  out.end_object();
}

void print_json(const std::string& path, const EngineModel& model, bool with_source) {
  JsonWriter out;
  out.begin_object();
  out.key("engine").value(path);
  out.key("format_version").value(version_text(model.version));
  out.key("producer").value(model.producer);
  out.key("target").begin_object();
  out.key("backend").value(model.target.backend);
  out.key("sm_arch").value(static_cast<int64_t>(model.target.sm_arch));
  out.key("device_name").value(model.target.device_name);
  out.end_object();
  out.key("precision").value(dtype_name(model.precision));
  out.key("inputs");
  write_bindings_json(out, model, model.inputs);
  out.key("outputs");
  write_bindings_json(out, model, model.outputs);
  out.key("layers").begin_array();
  for (const format::Layer& layer : model.layers) {
    out.begin_object();
    out.key("name").value(layer.name);
    out.key("op").value(layer.op);
    out.key("inputs").begin_array();
    for (int32_t index : layer.inputs) write_tensor_ref_json(out, model, index);
    out.end_array();
    out.key("outputs").begin_array();
    for (int32_t index : layer.outputs) write_tensor_ref_json(out, model, index);
    out.end_array();
    out.key("attributes").begin_object();
    for (const auto& [name, attr] : layer.attrs.items()) {
      out.key(name);
      write_attribute_json(out, attr);
    }
    out.end_object();
    out.end_object();
  }
  out.end_array();
  out.key("weights").begin_object();
  out.key("bytes").value(static_cast<uint64_t>(model.weights.size()));
  out.key("tensors").value(weight_tensor_count(model));
  out.end_object();
  const format::MemoryPlan& plan = model.memory_plan;
  out.key("memory_plan").begin_object();
  out.key("arena_size").value(plan.arena_size);
  out.key("alignment").value(plan.alignment);
  out.key("static").value(plan.is_static);
  out.end_object();
  out.key("plugins").begin_array();
  for (const format::PluginRef& plugin : model.plugins) {
    out.begin_object();
    out.key("namespace").value(plugin.plugin_namespace);
    out.key("name").value(plugin.name);
    out.key("version").value(plugin.version);
    out.key("library").value(plugin.library);
    out.key("fields").begin_object();
    for (const auto& [name, attr] : plugin.fields.items()) {
      out.key(name);
      write_attribute_json(out, attr);
    }
    out.end_object();
    out.end_object();
  }
  out.end_array();
  out.key("kernels").begin_array();
  for (const format::KernelModule& module : model.kernels) {
    write_kernel_module_json(out, model, module, with_source);
  }
  out.end_array();
  // Metadata is embedded as JSON when it is valid JSON, else as a string (hostile files).
  out.key("metadata");
  if (is_valid_json(model.metadata_json)) {
    out.raw(model.metadata_json);
  } else {
    out.value(model.metadata_json);
  }
  out.end_object();
  std::cout << out.str() << '\n';
}

}  // namespace

int inspect_command(std::span<const std::string> args) {
  std::optional<std::string> engine_path;
  std::optional<std::string> kernel_name;
  bool json = false;
  bool kernels_only = false;
  bool with_source = false;
  ArgCursor cursor(args);
  while (cursor.next()) {
    const std::string& flag = cursor.flag();
    if (cursor.is_positional()) {
      if (engine_path) cursor.reject();
      engine_path = flag;
    } else if (flag == "-h" || flag == "--help") {
      std::cout << kInspectHelp;
      return 0;
    } else if (flag == "--json") {
      cursor.expect_no_value();
      json = true;
    } else if (flag == "--kernels") {
      cursor.expect_no_value();
      kernels_only = true;
    } else if (flag == "--source") {
      cursor.expect_no_value();
      with_source = true;
    } else if (flag == "--kernel") {
      kernel_name = cursor.value();
    } else {
      cursor.reject();
    }
  }
  if (!engine_path) throw UsageError("missing the engine file to inspect");
  if (kernel_name && (kernels_only || with_source)) {
    throw UsageError("--kernel NAME prints one module's source: it takes no --kernels or --source");
  }
  if (with_source && !kernels_only && !json) {
    throw UsageError("--source needs --kernels or --json");
  }
  if (kernels_only && json) {
    throw UsageError("--json always lists the kernels; use --json --source for their sources");
  }
  const EngineModel model = format::read_engine_file(*engine_path);
  if (kernel_name) {
    const format::KernelModule& module = find_kernel_module(model, *kernel_name, *engine_path);
    if (json) {
      JsonWriter out;
      write_kernel_module_json(out, model, module, /*with_source=*/true);
      std::cout << out.str() << '\n';
    } else {
      std::cout << module.source;  // as is, so that it can be saved and compiled
    }
  } else if (json) {
    print_json(*engine_path, model, with_source);
  } else if (kernels_only) {
    std::cout << "engine: " << *engine_path << " (" << target_text(model.target) << ")\n";
    print_kernel_modules(model, with_source);
  } else {
    print_text(*engine_path, model);
  }
  return 0;
}

}  // namespace kiln::tools
