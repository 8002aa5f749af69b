#include "plugins/plugin_layer.hpp"

#include <cstring>
#include <deque>
#include <map>
#include <mutex>

#include "base/error.hpp"

namespace kiln::plugins {
namespace {

// C views of an AttributeMap's plugin fields; the map must outlive it.
class FieldArray {
 public:
  explicit FieldArray(const AttributeMap& attrs) {
    for (const auto& [name, a] : attrs.items()) {
      if (is_identity_attribute(name)) continue;
      kiln_plugin_field f{};
      f.name = name.c_str();
      f.kind = static_cast<kiln_plugin_field_kind>(a.kind);
      switch (a.kind) {
        case Attribute::Kind::kInt:
          f.i = a.i;
          break;
        case Attribute::Kind::kFloat:
          f.f = a.f;
          break;
        case Attribute::Kind::kString:
          f.s = a.s.c_str();
          break;
        case Attribute::Kind::kInts:
          f.ints = a.ints.data();
          f.count = static_cast<int64_t>(a.ints.size());
          break;
        case Attribute::Kind::kFloats:
          f.floats = a.floats.data();
          f.count = static_cast<int64_t>(a.floats.size());
          break;
        case Attribute::Kind::kStrings: {
          auto& pointers = string_lists_.emplace_back();
          for (const std::string& s : a.strings) pointers.push_back(s.c_str());
          f.strings = pointers.data();
          f.count = static_cast<int64_t>(a.strings.size());
          break;
        }
        case Attribute::Kind::kTensor:
          fail(ErrorCode::kInvalidArgument, "plugin field '", name,
               "' is a tensor; plugin fields cannot be tensors");
      }
      fields_.push_back(f);
    }
  }
  const kiln_plugin_field* data() const { return fields_.empty() ? nullptr : fields_.data(); }
  int32_t size() const { return static_cast<int32_t>(fields_.size()); }

 private:
  std::vector<kiln_plugin_field> fields_;
  std::deque<std::vector<const char*>> string_lists_;
};

std::string message_of(const kiln_plugin_error& error) {
  const size_t length = strnlen(error.message, KILN_PLUGIN_ERROR_CAPACITY);
  return length == 0 ? std::string("(the plugin gave no message)")
                     : std::string(error.message, length);
}

// A stable text form of the attributes, keying the instance cache.
std::string key_of(const AttributeMap& attrs) {
  std::string key;
  for (const auto& [name, a] : attrs.items()) {
    key += name;
    key += '\x1f';
    key += std::to_string(static_cast<int>(a.kind));
    key += '\x1f';
    switch (a.kind) {
      case Attribute::Kind::kInt:
        key += std::to_string(a.i);
        break;
      case Attribute::Kind::kFloat:
        key.append(reinterpret_cast<const char*>(&a.f), sizeof a.f);
        break;
      case Attribute::Kind::kString:
        key += a.s;
        break;
      case Attribute::Kind::kInts:
        for (int64_t v : a.ints) key += std::to_string(v) + ",";
        break;
      case Attribute::Kind::kFloats:
        key.append(reinterpret_cast<const char*>(a.floats.data()), a.floats.size() * sizeof(float));
        break;
      case Attribute::Kind::kStrings:
        for (const std::string& s : a.strings) key += std::to_string(s.size()) + ":" + s;
        break;
      case Attribute::Kind::kTensor:
        key += "tensor";
        break;
    }
    key += '\x1e';
  }
  return key;
}

}  // namespace

bool is_identity_attribute(std::string_view name) {
  return name == kNamespaceAttribute || name == kNameAttribute || name == kVersionAttribute ||
         name == kLibraryAttribute;
}

std::string PluginIdentity::label() const {
  return plugin_label(plugin_namespace, name, std::to_string(version));
}

PluginIdentity identity_of(const AttributeMap& attrs, std::string_view layer) {
  const Attribute* name = attrs.find(kNameAttribute);
  const Attribute* version = attrs.find(kVersionAttribute);
  if (!name || name->kind != Attribute::Kind::kString || !version ||
      version->kind != Attribute::Kind::kInt) {
    fail(ErrorCode::kCorruptFile, "plugin layer '", layer, "' lacks its string attribute ",
         kNameAttribute, " or its int attribute ", kVersionAttribute);
  }
  PluginIdentity identity;
  identity.plugin_namespace = normalize_namespace(attrs.get_string_or(kNamespaceAttribute, ""));
  identity.name = name->s;
  identity.version = static_cast<int32_t>(version->i);
  identity.library = attrs.get_string_or(kLibraryAttribute, "");
  return identity;
}

const RegisteredCreator& require_creator(const PluginIdentity& identity, std::string_view where) {
  if (const RegisteredCreator* c =
          plugin_registry().find(identity.plugin_namespace, identity.name, identity.version)) {
    return *c;
  }
  std::string others;
  for (int32_t v : plugin_registry().versions(identity.plugin_namespace, identity.name)) {
    others += (others.empty() ? "" : ", ") + std::to_string(v);
  }
  fail(ErrorCode::kNotFound, where, "needs plugin ", identity.label(),
       identity.library.empty() ? std::string(", which no library provided at build time")
                                : ", provided at build time by " + identity.library,
       "; it is not registered in this process",
       others.empty() ? std::string()
                      : " (registered versions of " + identity.name + ": " + others + ")",
       ". Load its library first: kiln_load_plugin_library / kiln.load_plugin_library, --plugins "
       "PATH, ",
       "LD_PRELOAD, or link it in (docs/plugins.md)");
}

PluginInstance::PluginInstance(const RegisteredCreator& creator, const AttributeMap& fields)
    : creator_(creator) {
  const FieldArray array(fields);
  kiln_plugin_error error{};
  if (creator_.creator->create(array.data(), array.size(), &handle_, &error) != KILN_OK) {
    fail_call(ErrorCode::kInvalidArgument, "create", error);
  }
}

PluginInstance::~PluginInstance() {
  creator_.creator->destroy(handle_);
}

std::string PluginInstance::prefix() const {
  const std::string library = creator_.library_file_name();
  return detail::concat("plugin ", creator_.label(), library.empty() ? "" : " (" + library + ")");
}

void PluginInstance::fail_call(ErrorCode code, std::string_view call,
                               const kiln_plugin_error& error) const {
  fail(code, prefix(), " ", call, ": ", message_of(error));
}

AttributeMap PluginInstance::fields() const {
  const kiln_plugin_field* fields = nullptr;
  int32_t count = 0;
  kiln_plugin_error error{};
  if (creator_.creator->fields(handle_, &fields, &count, &error) != KILN_OK) {
    fail_call(ErrorCode::kInvalidArgument, "fields", error);
  }
  if (count < 0 || (count > 0 && !fields))
    fail(ErrorCode::kInvalidArgument, prefix(), " fields: returned ", count, " fields");
  AttributeMap out;
  for (int32_t i = 0; i < count; ++i) {
    const kiln_plugin_field& f = fields[i];
    const std::string name = f.name ? f.name : "";
    if (name.empty() || name.starts_with("kiln_")) {
      fail(ErrorCode::kInvalidArgument, prefix(), " fields: field ", i, " is named '", name, "'");
    }
    const auto count_of = [&](const void* p) {
      if (f.count < 0 || (f.count > 0 && !p)) {
        fail(ErrorCode::kInvalidArgument, prefix(), " fields: field '", name, "' has count ",
             f.count, " and ", p ? "data" : "no data");
      }
      return static_cast<size_t>(f.count);
    };
    switch (f.kind) {
      case KILN_PLUGIN_FIELD_INT:
        out.set(name, Attribute::of_int(f.i));
        break;
      case KILN_PLUGIN_FIELD_FLOAT:
        out.set(name, Attribute::of_float(f.f));
        break;
      case KILN_PLUGIN_FIELD_STRING:
        out.set(name, Attribute::of_string(f.s ? f.s : ""));
        break;
      case KILN_PLUGIN_FIELD_INTS: {
        const size_t n = count_of(f.ints);
        out.set(name, Attribute::of_ints(std::vector<int64_t>(f.ints, f.ints + n)));
        break;
      }
      case KILN_PLUGIN_FIELD_FLOATS: {
        const size_t n = count_of(f.floats);
        out.set(name, Attribute::of_floats(std::vector<float>(f.floats, f.floats + n)));
        break;
      }
      case KILN_PLUGIN_FIELD_STRINGS: {
        const size_t n = count_of(f.strings);
        std::vector<std::string> strings;
        for (size_t k = 0; k < n; ++k) strings.emplace_back(f.strings[k] ? f.strings[k] : "");
        out.set(name, Attribute::of_strings(std::move(strings)));
        break;
      }
      default:
        fail(ErrorCode::kInvalidArgument, prefix(), " fields: field '", name, "' has unknown kind ",
             static_cast<int>(f.kind));
    }
  }
  return out;
}

void PluginInstance::check_dtypes(std::span<const DType> input_dtypes) const {
  if (!creator_.creator->supports) return;
  std::vector<kiln_dtype> dtypes;
  for (DType d : input_dtypes) dtypes.push_back(static_cast<kiln_dtype>(d));
  kiln_plugin_error error{};
  if (creator_.creator->supports(handle_, dtypes.data(), static_cast<int32_t>(dtypes.size()),
                                 &error) != KILN_OK) {
    std::string got;
    for (DType d : input_dtypes) got += (got.empty() ? "" : ", ") + std::string(dtype_name(d));
    fail(ErrorCode::kUnsupported, prefix(), " does not take input dtypes (", got,
         "): ", message_of(error));
  }
}

std::vector<kiln_plugin_output_desc> PluginInstance::infer(
    std::span<const kiln_plugin_tensor_desc> inputs, size_t num_outputs) const {
  std::vector<kiln_plugin_output_desc> outputs(num_outputs);
  std::memset(outputs.data(), 0, outputs.size() * sizeof(kiln_plugin_output_desc));
  kiln_plugin_error error{};
  if (creator_.creator->infer(handle_, inputs.data(), static_cast<int32_t>(inputs.size()),
                              outputs.data(), static_cast<int32_t>(num_outputs),
                              &error) != KILN_OK) {
    fail_call(ErrorCode::kInvalidArgument, "infer", error);
  }
  for (size_t o = 0; o < num_outputs; ++o) {
    const kiln_plugin_output_desc& out = outputs[o];
    if (!is_valid_dtype(static_cast<int>(out.dtype))) {
      fail(ErrorCode::kInvalidArgument, prefix(), " infer: output ", o, " has unknown dtype ",
           static_cast<int>(out.dtype));
    }
    if (out.ndim < 0 || out.ndim > KILN_PLUGIN_MAX_RANK) {
      fail(ErrorCode::kInvalidArgument, prefix(), " infer: output ", o, " has rank ", out.ndim);
    }
    for (int32_t d = 0; d < out.ndim; ++d) {
      const kiln_plugin_dim& dim = out.dims[d];
      const bool bad = dim.kind == KILN_PLUGIN_DIM_VALUE ? dim.value < -1
                       : dim.kind == KILN_PLUGIN_DIM_COPY
                           ? dim.input < 0 || static_cast<size_t>(dim.input) >= inputs.size() ||
                                 dim.input_dim < 0 ||
                                 dim.input_dim >= inputs[static_cast<size_t>(dim.input)].ndim
                       : dim.kind == KILN_PLUGIN_DIM_DATA_DEPENDENT
                           ? dim.value < 0 || !creator_.creator->data_dependent_shapes
                           : true;
      if (bad) {
        fail(ErrorCode::kInvalidArgument, prefix(), " infer: output ", o, " dimension ", d,
             " is invalid (kind ", static_cast<int>(dim.kind), ", value ", dim.value, ", input ",
             dim.input, ", input_dim ", dim.input_dim,
             dim.kind == KILN_PLUGIN_DIM_DATA_DEPENDENT
                 ? "; data-dependent dims need data_dependent_shapes"
                 : "",
             ")");
      }
    }
  }
  return outputs;
}

int64_t PluginInstance::workspace_size(kiln_plugin_backend backend,
                                       std::span<const kiln_plugin_tensor_desc> inputs,
                                       std::span<const kiln_plugin_tensor_desc> outputs) const {
  const kiln_plugin_creator& c = *creator_.creator;
  if (!c.workspace) return 0;
  int64_t bytes = 0;
  kiln_plugin_error error{};
  const auto num_inputs = static_cast<int32_t>(inputs.size());
  const auto num_outputs = static_cast<int32_t>(outputs.size());
  // Each creator is called through the contract of the ABI version it was built for.
  const kiln_status status =
      c.abi_version == 1
          ? reinterpret_cast<kiln_plugin_workspace_v1_fn>(reinterpret_cast<void (*)()>(c.workspace))(handle_, inputs.data(), num_inputs,
                                                                       outputs.data(), num_outputs, &bytes, &error)
          : c.workspace(handle_, backend, inputs.data(), num_inputs, outputs.data(), num_outputs, &bytes, &error);
  if (status != KILN_OK) fail_call(ErrorCode::kInvalidArgument, "workspace", error);
  if (bytes < 0)
    fail(ErrorCode::kInvalidArgument, prefix(), " workspace: returned ", bytes, " bytes");
  return bytes;
}

void PluginInstance::execute_cpu(std::span<const kiln_plugin_tensor> inputs,
                                 std::span<kiln_plugin_tensor> outputs, void* workspace) const {
  if (!creator_.creator->execute_cpu) {
    fail(ErrorCode::kUnsupported, prefix(), " has no CPU implementation (execute_cpu is NULL)");
  }
  kiln_plugin_error error{};
  if (creator_.creator->execute_cpu(handle_, inputs.data(), static_cast<int32_t>(inputs.size()),
                                    outputs.data(), static_cast<int32_t>(outputs.size()), workspace,
                                    &error) != KILN_OK) {
    fail_call(ErrorCode::kInvalidArgument, "execute_cpu", error);
  }
}

void PluginInstance::execute_cuda(std::span<const kiln_plugin_tensor> inputs,
                                  std::span<kiln_plugin_tensor> outputs, void* workspace,
                                  void* stream) const {
  if (!creator_.creator->execute_cuda) {
    fail(ErrorCode::kUnsupported, prefix(), " has no CUDA implementation (execute_cuda is NULL)");
  }
  kiln_plugin_error error{};
  if (creator_.creator->execute_cuda(handle_, inputs.data(), static_cast<int32_t>(inputs.size()),
                                     outputs.data(), static_cast<int32_t>(outputs.size()),
                                     workspace, stream, &error) != KILN_OK) {
    fail_call(ErrorCode::kInvalidArgument, "execute_cuda", error);
  }
}

Shape PluginInstance::checked_written_shape(size_t output, const Shape& written,
                                            const Shape& bound) const {
  bool valid = written.size() == bound.size();
  for (const int64_t dim : written) valid = valid && dim >= 0;
  if (!valid || shape_numel(written) > shape_numel(bound)) {
    fail(ErrorCode::kInvalidArgument, prefix(), " wrote output ", output, " with shape ",
         shape_to_string(written), ", which does not fit its upper bound ", shape_to_string(bound),
         " (same rank, no negative dimension, at most as many elements)");
  }
  return written;
}

std::shared_ptr<const PluginInstance> instance_of_layer(const AttributeMap& attrs,
                                                        std::string_view layer) {
  static std::mutex mutex;
  // Never destroyed: at process exit the plugin libraries may already be finalised, and destroying
  // an instance calls its library's destroy (a crash at exit otherwise). Reachable, so no leak report.
  static auto& instances = *new std::map<std::string, std::shared_ptr<const PluginInstance>>();
  const std::string key = key_of(attrs);
  {
    std::lock_guard lock(mutex);
    if (auto it = instances.find(key); it != instances.end()) return it->second;
  }
  const PluginIdentity identity = identity_of(attrs, layer);
  const RegisteredCreator& creator = require_creator(identity, "");  // callers name the layer
  auto instance = std::make_shared<const PluginInstance>(creator, attrs);
  std::lock_guard lock(mutex);
  return instances.emplace(key, std::move(instance)).first->second;
}

}  // namespace kiln::plugins
