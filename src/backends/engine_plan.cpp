#include "backends/engine_plan.hpp"

#include <algorithm>

namespace kiln::backends {
namespace {
alignas(256) uint8_t g_placeholder[256];
}  // namespace

void* placeholder_bytes() { return g_placeholder; }

TensorView EnginePlan::weight_view(int32_t index) const {
  const format::TensorDesc& desc = tensor(index);
  return TensorView{desc.dtype, desc.shape, const_cast<uint8_t*>(model.weights.data() + desc.weight_offset)};
}

uint64_t layer_bytes(const EnginePlan& engine, const ShapePlan& plan, size_t layer) {
  const format::Layer& l = engine.model.layers[layer];
  std::vector<int32_t> tensors;
  tensors.reserve(l.inputs.size() + l.outputs.size());
  for (const std::vector<int32_t>* list : {&l.inputs, &l.outputs}) {
    for (int32_t t : *list) {
      if (t >= 0 && std::find(tensors.begin(), tensors.end(), t) == tensors.end()) tensors.push_back(t);
    }
  }
  uint64_t bytes = 0;
  for (int32_t t : tensors) {
    const Shape& shape = plan.shapes[static_cast<size_t>(t)];
    bytes += static_cast<uint64_t>(shape_numel(shape)) * dtype_size(engine.tensor(t).dtype);
  }
  return bytes;
}

}  // namespace kiln::backends
