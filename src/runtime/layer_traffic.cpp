#include "runtime/layer_traffic.hpp"

#include <algorithm>
#include <vector>

namespace kiln::detail {

uint64_t layer_bytes(const ContextState& context, size_t layer) {
  const format::Layer& l = context.engine->model.layers[layer];
  std::vector<int32_t> tensors;
  tensors.reserve(l.inputs.size() + l.outputs.size());
  for (const std::vector<int32_t>* list : {&l.inputs, &l.outputs}) {
    for (int32_t t : *list) {
      if (t >= 0 && std::find(tensors.begin(), tensors.end(), t) == tensors.end())
        tensors.push_back(t);
    }
  }
  uint64_t bytes = 0;
  for (int32_t t : tensors) {
    const Shape& shape = context.plan.shapes[static_cast<size_t>(t)];
    bytes +=
        static_cast<uint64_t>(shape_numel(shape)) * dtype_size(context.engine->tensor(t).dtype);
  }
  return bytes;
}

}  // namespace kiln::detail
