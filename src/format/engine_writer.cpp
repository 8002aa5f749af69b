// write_engine: EngineModel -> engine file bytes (layout in docs/engine-format.md).
#include <string>
#include <vector>

#include "format/engine_container.hpp"
#include "format/engine_io.hpp"
#include "format/engine_schema.hpp"
#include "format/engine_validate.hpp"
#include "format/wire_format.hpp"

namespace kiln::format {

namespace {

namespace s = schema;

void write_attribute(WireWriter& w, const std::string& name, const Attribute& attr) {
  w.string_field(s::attribute::kName, name);
  w.int_field(s::attribute::kKind, static_cast<int64_t>(attr.kind));
  switch (attr.kind) {
    case Attribute::Kind::kInt:
      w.int_field(s::attribute::kInt, attr.i);
      break;
    case Attribute::Kind::kFloat:
      w.f32_field(s::attribute::kFloat, attr.f);
      break;
    case Attribute::Kind::kString:
      w.string_field(s::attribute::kString, attr.s);
      break;
    case Attribute::Kind::kInts:
      w.ints_field(s::attribute::kInts, attr.ints);
      break;
    case Attribute::Kind::kFloats:
      w.floats_field(s::attribute::kFloats, attr.floats);
      break;
    case Attribute::Kind::kStrings:
      w.strings_field(s::attribute::kStrings, attr.strings);
      break;
    case Attribute::Kind::kTensor:
      w.message_field(s::attribute::kTensor, [&](WireWriter& tw) {
        tw.int_field(s::attribute_tensor::kDType, static_cast<int64_t>(attr.tensor->dtype));
        tw.ints_field(s::attribute_tensor::kShape, attr.tensor->shape);
        tw.bytes_field(s::attribute_tensor::kData, attr.tensor->bytes);
      });
      break;
  }
}

void write_attributes(WireWriter& w, const s::Field& field, const AttributeMap& attrs) {
  w.list_field(field, attrs.items(), [](WireWriter& aw, const auto& item) {
    write_attribute(aw, item.first, item.second);
  });
}

std::vector<int64_t> widen(const std::vector<int32_t>& values) {
  return std::vector<int64_t>(values.begin(), values.end());
}

void write_binding(WireWriter& w, const Binding& binding) {
  w.string_field(s::binding::kName, binding.name);
  w.int_field(s::binding::kTensor, binding.tensor);
  std::vector<int64_t> ranges;
  ranges.reserve(3 * binding.ranges.size());
  for (const DimRange& r : binding.ranges) ranges.insert(ranges.end(), {r.min, r.opt, r.max});
  w.ints_field(s::binding::kRanges, ranges);
}

std::vector<uint8_t> info_section(const EngineModel& model) {
  std::vector<uint8_t> out;
  WireWriter w(out);
  w.string_field(s::info::kProducer, model.producer);
  w.string_field(s::info::kBackend, model.target.backend);
  w.int_field(s::info::kSmArch, model.target.sm_arch);
  w.string_field(s::info::kDeviceName, model.target.device_name);
  w.int_field(s::info::kPrecision, static_cast<int64_t>(model.precision));
  return out;
}

std::vector<uint8_t> tensors_section(const EngineModel& model) {
  std::vector<uint8_t> out;
  WireWriter w(out);
  w.list_field(s::tensors::kTensors, model.tensors, [](WireWriter& tw, const TensorDesc& t) {
    tw.string_field(s::tensor::kName, t.name);
    tw.int_field(s::tensor::kDType, static_cast<int64_t>(t.dtype));
    tw.ints_field(s::tensor::kShape, t.shape);
    tw.int_field(s::tensor::kKind, static_cast<int64_t>(t.kind));
    if (t.kind == TensorKind::kWeight) {
      tw.int_field(s::tensor::kWeightOffset, static_cast<int64_t>(t.weight_offset));
      tw.int_field(s::tensor::kWeightSize, static_cast<int64_t>(t.weight_size));
    }
  });
  return out;
}

std::vector<uint8_t> bindings_section(const EngineModel& model) {
  std::vector<uint8_t> out;
  WireWriter w(out);
  w.list_field(s::bindings::kInputs, model.inputs, write_binding);
  w.list_field(s::bindings::kOutputs, model.outputs, write_binding);
  return out;
}

std::vector<uint8_t> layers_section(const EngineModel& model) {
  std::vector<uint8_t> out;
  WireWriter w(out);
  w.list_field(s::layers::kLayers, model.layers, [](WireWriter& lw, const Layer& layer) {
    lw.string_field(s::layer::kName, layer.name);
    lw.string_field(s::layer::kOp, layer.op);
    lw.ints_field(s::layer::kInputs, widen(layer.inputs));
    lw.ints_field(s::layer::kOutputs, widen(layer.outputs));
    write_attributes(lw, s::layer::kAttributes, layer.attrs);
  });
  return out;
}

std::vector<uint8_t> memory_plan_section(const EngineModel& model) {
  const MemoryPlan& plan = model.memory_plan;
  std::vector<uint8_t> out;
  WireWriter w(out);
  w.int_field(s::memory_plan::kArenaSize, static_cast<int64_t>(plan.arena_size));
  w.int_field(s::memory_plan::kAlignment, static_cast<int64_t>(plan.alignment));
  w.int_field(s::memory_plan::kIsStatic, plan.is_static ? 1 : 0);
  w.ints_field(s::memory_plan::kOffsets,
               std::vector<int64_t>(plan.offsets.begin(), plan.offsets.end()));
  w.ints_field(s::memory_plan::kFirstUse, widen(plan.first_use));
  w.ints_field(s::memory_plan::kLastUse, widen(plan.last_use));
  return out;
}

std::vector<uint8_t> plugins_section(const EngineModel& model) {
  std::vector<uint8_t> out;
  WireWriter w(out);
  w.list_field(s::plugins::kPlugins, model.plugins, [](WireWriter& pw, const PluginRef& plugin) {
    pw.string_field(s::plugin::kNamespace, plugin.plugin_namespace);
    pw.string_field(s::plugin::kName, plugin.name);
    pw.string_field(s::plugin::kVersion, plugin.version);
    write_attributes(pw, s::plugin::kFields, plugin.fields);
    pw.string_field(s::plugin::kLibrary, plugin.library);
  });
  return out;
}

std::vector<uint8_t> kernels_section(const EngineModel& model) {
  std::vector<uint8_t> out;
  WireWriter w(out);
  w.list_field(s::kernels::kModules, model.kernels, [](WireWriter& kw, const KernelModule& module) {
    kw.string_field(s::kernel_module::kName, module.name);
    kw.int_field(s::kernel_module::kSmArch, module.sm_arch);
    kw.string_field(s::kernel_module::kCompiler, module.compiler);
    kw.string_field(s::kernel_module::kSource, module.source);
    kw.bytes_field(s::kernel_module::kCubin, module.cubin);
  });
  return out;
}

// The header's required-feature bits for `model` (engine_schema.hpp lists them).
uint32_t required_features(const EngineModel& model) {
  uint32_t flags = 0;
  for (const Layer& layer : model.layers) {
    if (layer.op == "FusedAttention" && layer.attrs.get_string_or("qkv_layout", "BSTHD") != "BSTHD") {
      flags |= s::kFlagAttentionQkvLayout;
    }
  }
  return flags;
}

std::span<const uint8_t> as_bytes(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

}  // namespace

std::vector<uint8_t> write_engine(const EngineModel& model) {
  validate_engine_model(model, ErrorCode::kInvalidArgument, "write_engine: invalid engine model");
  const std::vector<uint8_t> info = info_section(model);
  const std::vector<uint8_t> tensors = tensors_section(model);
  const std::vector<uint8_t> bindings = bindings_section(model);
  const std::vector<uint8_t> layers = layers_section(model);
  const std::vector<uint8_t> plan = memory_plan_section(model);
  const std::vector<uint8_t> plugins = plugins_section(model);
  const std::vector<uint8_t> kernels = kernels_section(model);
  auto id = [](s::SectionId section) { return static_cast<uint32_t>(section); };
  std::vector<SectionPayload> sections = {
      {id(s::SectionId::kInfo), info},
      {id(s::SectionId::kTensors), tensors},
      {id(s::SectionId::kBindings), bindings},
      {id(s::SectionId::kLayers), layers},
      {id(s::SectionId::kMemoryPlan), plan},
      {id(s::SectionId::kPlugins), plugins},
      {id(s::SectionId::kMetadata), as_bytes(model.metadata_json)},
  };
  // Only engines with generated kernels (cuda) have the section.
  if (!model.kernels.empty()) sections.push_back({id(s::SectionId::kKernels), kernels});
  // The weights stay last: the other sections are small, so they sit together at the front.
  sections.push_back({id(s::SectionId::kWeights), model.weights, kWeightAlignment});
  return assemble_engine(FormatVersion{kFormatMajor, kFormatMinor}, model.producer,
                         required_features(model), sections);
}

}  // namespace kiln::format
