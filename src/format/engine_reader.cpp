// read_engine: engine file bytes -> verified EngineModel. The bytes are hostile until proven
// otherwise: the container is verified first (engine_container.cpp), then every section is decoded
// with bounds-checked field reads (wire_format.cpp), then the model is checked as a whole
// (engine_validate.cpp).
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "base/error.hpp"
#include "format/engine_container.hpp"
#include "format/engine_io.hpp"
#include "format/engine_schema.hpp"
#include "format/engine_validate.hpp"
#include "format/wire_format.hpp"

namespace kiln::format {

namespace {

namespace s = schema;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

bool is_known_tensor_kind(int64_t raw) {
  return raw >= static_cast<int64_t>(TensorKind::kInput) &&
         raw <= static_cast<int64_t>(TensorKind::kActivation);
}

bool is_known_attribute_kind(int64_t raw) {
  return raw >= static_cast<int64_t>(Attribute::Kind::kInt) &&
         raw <= static_cast<int64_t>(Attribute::Kind::kTensor);
}

DType decode_dtype(const MessageDecoder& m) {
  const int64_t raw = m.as_int();
  if (raw < 0 || raw > 255 || !is_valid_dtype(static_cast<int>(raw))) {
    m.fail_field("invalid dtype value ", raw);
  }
  return static_cast<DType>(raw);
}

Shape decode_shape(const MessageDecoder& m) {
  if (m.as_bytes().size() > 8 * s::kMaxRank) {
    m.fail_field("rank ", m.as_bytes().size() / 8, " exceeds the maximum of ", s::kMaxRank);
  }
  return m.as_ints();
}

std::vector<int32_t> decode_indices(const MessageDecoder& m, int64_t lowest) {
  std::vector<int32_t> out;
  const std::vector<int64_t> raw = m.as_ints();
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] < lowest || raw[i] > kInt32Max) {
      m.fail_field("entry ", i, " is ", raw[i], ", outside [", lowest, ", ", kInt32Max, "]");
    }
    out.push_back(static_cast<int32_t>(raw[i]));
  }
  return out;
}

std::shared_ptr<const HostTensor> decode_attribute_tensor(std::span<const uint8_t> body,
                                                          const Where& where) {
  auto tensor = std::make_shared<HostTensor>();
  MessageDecoder m(body, where);
  std::span<const uint8_t> data;
  while (m.next()) {
    if (m.is(s::attribute_tensor::kDType)) {
      tensor->dtype = decode_dtype(m);
    } else if (m.is(s::attribute_tensor::kShape)) {
      tensor->shape = decode_shape(m);
    } else if (m.is(s::attribute_tensor::kData)) {
      data = m.as_bytes();
    }
  }
  m.require(s::attribute_tensor::kDType);
  // Shape and size consistency is checked by validate_engine_model.
  tensor->bytes.assign(data.begin(), data.end());
  return tensor;
}

// One attribute into `attrs`; its value field must be the one its kind names.
void decode_attribute(std::span<const uint8_t> body, const Where& where, AttributeMap& attrs) {
  MessageDecoder m(body, where);
  std::string name;
  Attribute attr;
  const s::Field* value_field = nullptr;
  auto take_value = [&](const s::Field& field) {
    if (value_field)
      m.fail_field("an attribute holds one value, but '", value_field->name, "' came first");
    value_field = &field;
  };
  while (m.next()) {
    if (m.is(s::attribute::kName)) {
      name = m.as_string();
    } else if (m.is(s::attribute::kKind)) {
      const int64_t raw = m.as_int();
      if (!is_known_attribute_kind(raw)) m.fail_field("invalid attribute kind ", raw);
      attr.kind = static_cast<Attribute::Kind>(raw);
    } else if (m.is(s::attribute::kInt)) {
      take_value(s::attribute::kInt);
      attr.i = m.as_int();
    } else if (m.is(s::attribute::kFloat)) {
      take_value(s::attribute::kFloat);
      attr.f = m.as_f32();
    } else if (m.is(s::attribute::kString)) {
      take_value(s::attribute::kString);
      attr.s = m.as_string();
    } else if (m.is(s::attribute::kInts)) {
      take_value(s::attribute::kInts);
      attr.ints = m.as_ints();
    } else if (m.is(s::attribute::kFloats)) {
      take_value(s::attribute::kFloats);
      attr.floats = m.as_floats();
    } else if (m.is(s::attribute::kStrings)) {
      take_value(s::attribute::kStrings);
      attr.strings = m.as_strings();
    } else if (m.is(s::attribute::kTensor)) {
      take_value(s::attribute::kTensor);
      attr.tensor = decode_attribute_tensor(m.as_bytes(), where.child("tensor value"));
    }
  }
  m.require(s::attribute::kName);
  m.require(s::attribute::kKind);
  static constexpr const s::Field* kValueOf[] = {nullptr,
                                                 &s::attribute::kInt,
                                                 &s::attribute::kFloat,
                                                 &s::attribute::kString,
                                                 &s::attribute::kInts,
                                                 &s::attribute::kFloats,
                                                 &s::attribute::kStrings,
                                                 &s::attribute::kTensor};
  const s::Field& expected = *kValueOf[static_cast<int>(attr.kind)];
  if (value_field != &expected) {
    where.fail("attribute '", name, "' of kind ", attribute_kind_name(attr.kind), " needs a '",
               expected.name, "' value, got ",
               value_field ? detail::concat("'", value_field->name, "'") : std::string("none"));
  }
  if (attrs.has(name)) where.fail("attribute '", name, "' appears more than once");
  attrs.set(std::move(name), std::move(attr));
}

AttributeMap decode_attributes(const MessageDecoder& m, const Where& where) {
  AttributeMap attrs;
  const auto items = m.as_list();
  for (size_t i = 0; i < items.size(); ++i) {
    decode_attribute(items[i], where.child("attribute ", i), attrs);
  }
  return attrs;
}

void decode_info(std::span<const uint8_t> body, const Where& where, EngineModel& model) {
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::info::kProducer)) {
      model.producer = m.as_string();
    } else if (m.is(s::info::kBackend)) {
      model.target.backend = m.as_string();
    } else if (m.is(s::info::kSmArch)) {
      model.target.sm_arch = static_cast<int32_t>(m.as_int_in(0, kInt32Max));
    } else if (m.is(s::info::kDeviceName)) {
      model.target.device_name = m.as_string();
    } else if (m.is(s::info::kPrecision)) {
      model.precision = decode_dtype(m);
    }
  }
  m.require(s::info::kBackend);
  m.require(s::info::kPrecision);
}

TensorDesc decode_tensor(std::span<const uint8_t> body, const Where& where) {
  TensorDesc t;
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::tensor::kName)) {
      t.name = m.as_string();
    } else if (m.is(s::tensor::kDType)) {
      t.dtype = decode_dtype(m);
    } else if (m.is(s::tensor::kShape)) {
      t.shape = decode_shape(m);
    } else if (m.is(s::tensor::kKind)) {
      const int64_t raw = m.as_int();
      if (!is_known_tensor_kind(raw)) m.fail_field("invalid tensor kind ", raw);
      t.kind = static_cast<TensorKind>(raw);
    } else if (m.is(s::tensor::kWeightOffset)) {
      t.weight_offset = static_cast<uint64_t>(m.as_int());
    } else if (m.is(s::tensor::kWeightSize)) {
      t.weight_size = static_cast<uint64_t>(m.as_int());
    }
  }
  m.require(s::tensor::kDType);
  m.require(s::tensor::kKind);
  return t;
}

void decode_tensors(std::span<const uint8_t> body, const Where& where, EngineModel& model) {
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::tensors::kTensors)) {
      const auto items = m.as_list();
      model.tensors.reserve(items.size());
      for (size_t i = 0; i < items.size(); ++i) {
        model.tensors.push_back(decode_tensor(items[i], where.child("tensor ", i)));
      }
    }
  }
}

Binding decode_binding(std::span<const uint8_t> body, const Where& where) {
  Binding b;
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::binding::kName)) {
      b.name = m.as_string();
    } else if (m.is(s::binding::kTensor)) {
      b.tensor = static_cast<uint32_t>(m.as_int_in(0, std::numeric_limits<uint32_t>::max()));
    } else if (m.is(s::binding::kRanges)) {
      if (m.as_bytes().size() % 24 != 0 || m.as_bytes().size() > 24 * s::kMaxRank) {
        m.fail_field("expected up to ", s::kMaxRank, " (min, opt, max) triples, got ",
                     m.as_bytes().size(), " bytes");
      }
      const std::vector<int64_t> raw = m.as_ints();
      for (size_t d = 0; d + 2 < raw.size(); d += 3)
        b.ranges.push_back({raw[d], raw[d + 1], raw[d + 2]});
    }
  }
  m.require(s::binding::kTensor);
  return b;
}

void decode_bindings(std::span<const uint8_t> body, const Where& where, EngineModel& model) {
  MessageDecoder m(body, where);
  while (m.next()) {
    const bool inputs = m.is(s::bindings::kInputs);
    if (!inputs && !m.is(s::bindings::kOutputs)) continue;
    std::vector<Binding>& out = inputs ? model.inputs : model.outputs;
    const auto items = m.as_list();
    out.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      out.push_back(decode_binding(items[i], where.child(inputs ? "input " : "output ", i)));
    }
  }
}

Layer decode_layer(std::span<const uint8_t> body, const Where& where) {
  Layer layer;
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::layer::kName)) {
      layer.name = m.as_string();
    } else if (m.is(s::layer::kOp)) {
      layer.op = m.as_string();
    } else if (m.is(s::layer::kInputs)) {
      layer.inputs = decode_indices(m, -1);
    } else if (m.is(s::layer::kOutputs)) {
      layer.outputs = decode_indices(m, 0);
    } else if (m.is(s::layer::kAttributes)) {
      layer.attrs = decode_attributes(m, where);
    }
  }
  m.require(s::layer::kOp);
  return layer;
}

void decode_layers(std::span<const uint8_t> body, const Where& where, EngineModel& model) {
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::layers::kLayers)) {
      const auto items = m.as_list();
      model.layers.reserve(items.size());
      for (size_t i = 0; i < items.size(); ++i) {
        model.layers.push_back(decode_layer(items[i], where.child("layer ", i)));
      }
    }
  }
}

void decode_memory_plan(std::span<const uint8_t> body, const Where& where, EngineModel& model) {
  MemoryPlan& plan = model.memory_plan;
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::memory_plan::kArenaSize)) {
      plan.arena_size = static_cast<uint64_t>(m.as_int());
    } else if (m.is(s::memory_plan::kAlignment)) {
      plan.alignment = static_cast<uint64_t>(m.as_int());
    } else if (m.is(s::memory_plan::kIsStatic)) {
      plan.is_static = m.as_int_in(0, 1) == 1;
    } else if (m.is(s::memory_plan::kOffsets)) {
      const std::vector<int64_t> raw = m.as_ints();
      plan.offsets.assign(raw.begin(), raw.end());
    } else if (m.is(s::memory_plan::kFirstUse)) {
      plan.first_use = decode_indices(m, -1);
    } else if (m.is(s::memory_plan::kLastUse)) {
      plan.last_use = decode_indices(m, -1);
    }
  }
}

PluginRef decode_plugin(std::span<const uint8_t> body, const Where& where) {
  PluginRef plugin;
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::plugin::kNamespace)) {
      plugin.plugin_namespace = m.as_string();
    } else if (m.is(s::plugin::kName)) {
      plugin.name = m.as_string();
    } else if (m.is(s::plugin::kVersion)) {
      plugin.version = m.as_string();
    } else if (m.is(s::plugin::kFields)) {
      plugin.fields = decode_attributes(m, where);
    } else if (m.is(s::plugin::kLibrary)) {
      plugin.library = m.as_string();
    }
  }
  m.require(s::plugin::kName);
  return plugin;
}

void decode_plugins(std::span<const uint8_t> body, const Where& where, EngineModel& model) {
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::plugins::kPlugins)) {
      const auto items = m.as_list();
      model.plugins.reserve(items.size());
      for (size_t i = 0; i < items.size(); ++i) {
        model.plugins.push_back(decode_plugin(items[i], where.child("plugin ", i)));
      }
    }
  }
}

KernelModule decode_kernel_module(std::span<const uint8_t> body, const Where& where) {
  KernelModule module;
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::kernel_module::kName)) {
      module.name = m.as_string();
    } else if (m.is(s::kernel_module::kSmArch)) {
      module.sm_arch = static_cast<int32_t>(m.as_int_in(0, kInt32Max));
    } else if (m.is(s::kernel_module::kCompiler)) {
      module.compiler = m.as_string();
    } else if (m.is(s::kernel_module::kSource)) {
      module.source = m.as_string();
    } else if (m.is(s::kernel_module::kCubin)) {
      // Copied: cubins are kilobytes, and the loader wants a buffer of its own anyway.
      module.cubin.assign(m.as_bytes().begin(), m.as_bytes().end());
    }
  }
  m.require(s::kernel_module::kName);
  m.require(s::kernel_module::kSmArch);
  m.require(s::kernel_module::kCubin);
  return module;
}

void decode_kernels(std::span<const uint8_t> body, const Where& where, EngineModel& model) {
  MessageDecoder m(body, where);
  while (m.next()) {
    if (m.is(s::kernels::kModules)) {
      const auto items = m.as_list();
      model.kernels.reserve(items.size());
      for (size_t i = 0; i < items.size(); ++i) {
        model.kernels.push_back(decode_kernel_module(items[i], where.child("module ", i)));
      }
    }
  }
}

}  // namespace

EngineModel read_engine(std::shared_ptr<const std::vector<uint8_t>> bytes,
                        const std::string& source) {
  if (!bytes) fail(ErrorCode::kInvalidArgument, "read_engine: no bytes given for ", source);
  const std::span<const uint8_t> file(*bytes);
  const EngineHeader header = read_engine_header(file, source);
  check_format_version(header, source);
  const std::vector<SectionEntry> entries = verify_container(file, header, source);

  EngineModel model;
  model.version = header.version;
  model.metadata_json = "{}";
  uint64_t present = 0;
  std::span<const uint8_t> weights;
  for (const SectionEntry& entry : entries) {
    const std::span<const uint8_t> body = file.subspan(entry.offset, entry.size);
    const Where where(source, detail::concat("section '", s::section_name(entry.id), "'"));
    switch (static_cast<s::SectionId>(entry.id)) {
      case s::SectionId::kInfo:
        decode_info(body, where, model);
        break;
      case s::SectionId::kTensors:
        decode_tensors(body, where, model);
        break;
      case s::SectionId::kBindings:
        decode_bindings(body, where, model);
        break;
      case s::SectionId::kLayers:
        decode_layers(body, where, model);
        break;
      case s::SectionId::kMemoryPlan:
        decode_memory_plan(body, where, model);
        break;
      case s::SectionId::kPlugins:
        decode_plugins(body, where, model);
        break;
      case s::SectionId::kMetadata:
        model.metadata_json.assign(reinterpret_cast<const char*>(body.data()), body.size());
        break;
      case s::SectionId::kWeights:
        weights = body;
        break;
      case s::SectionId::kKernels:
        if (header.version.minor < 1) {
          where.fail("appeared in format 1.1, but the file says it is format ",
                     header.version.major, ".", header.version.minor);
        }
        decode_kernels(body, where, model);
        break;
      default:
        continue;  // a section a newer minor version added: skipped
    }
    present |= uint64_t{1} << entry.id;
  }
  for (s::SectionId required :
       {s::SectionId::kInfo, s::SectionId::kTensors, s::SectionId::kBindings, s::SectionId::kLayers,
        s::SectionId::kMemoryPlan}) {
    const auto id = static_cast<uint32_t>(required);
    if (!(present & (uint64_t{1} << id))) {
      fail(ErrorCode::kCorruptFile, source, ": required section '", s::section_name(id), "' (id ",
           id, ") is missing");
    }
  }

  const auto kernels_id = static_cast<uint32_t>(s::SectionId::kKernels);
  if ((present & (uint64_t{1} << kernels_id)) && model.target.backend != "cuda") {
    fail(ErrorCode::kCorruptFile, source, ": section 'kernels' (id ", kernels_id,
         ") holds CUDA modules, but the engine's target is '", model.target.backend,
         "': only cuda engines have one");
  }

  // Zero copy: the model shares ownership of the file bytes and its weights point into them.
  model.weights = weights;
  model.weights_storage = std::shared_ptr<const void>(bytes, bytes->data());
  validate_engine_model(model, ErrorCode::kCorruptFile, source);
  return model;
}

EngineModel read_engine_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    fail(ErrorCode::kNotFound, "engine file not found: ", path);
  }
  if (std::filesystem::is_directory(path, ec)) {
    fail(ErrorCode::kIoError, "cannot read engine file ", path, ": it is a directory");
  }
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(ErrorCode::kIoError, "cannot open engine file ", path);
  const std::streamoff size = in.tellg();
  if (size < 0) fail(ErrorCode::kIoError, "cannot determine the size of engine file ", path);
  in.seekg(0, std::ios::beg);
  auto bytes = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes->data()), size)) {
    fail(ErrorCode::kIoError, "failed to read ", size, " bytes from engine file ", path);
  }
  return read_engine(std::move(bytes), path);
}

}  // namespace kiln::format
