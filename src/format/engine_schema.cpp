#include "format/engine_schema.hpp"

namespace kiln::format::schema {

std::string_view section_name(uint32_t id) {
  switch (static_cast<SectionId>(id)) {
    case SectionId::kInfo:
      return "info";
    case SectionId::kTensors:
      return "tensors";
    case SectionId::kBindings:
      return "bindings";
    case SectionId::kLayers:
      return "layers";
    case SectionId::kMemoryPlan:
      return "memory_plan";
    case SectionId::kPlugins:
      return "plugins";
    case SectionId::kMetadata:
      return "metadata";
    case SectionId::kWeights:
      return "weights";
    case SectionId::kKernels:
      return "kernels";
  }
  return "unknown";
}

std::string_view wire_name(Wire wire) {
  switch (wire) {
    case Wire::kInt:
      return "int";
    case Wire::kF32:
      return "f32";
    case Wire::kBytes:
      return "bytes";
    case Wire::kMessage:
      return "message";
    case Wire::kInts:
      return "ints";
    case Wire::kFloats:
      return "floats";
    case Wire::kList:
      return "list";
  }
  return "unknown";
}

}  // namespace kiln::format::schema
