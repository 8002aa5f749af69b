// kiln::execute_engine(Tensor[] inputs, Engine engine) -> Tensor[]: runs an engine on torch
// tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "torch/torch_engine.hpp"

namespace kiln::torch_integration {

// `inputs` in the engine's input-binding order. Checks each input's device (the engine's: cpu, or
// its GPU; multi-device safe mode moves inputs there instead), dtype and shape, and makes
// non-contiguous inputs contiguous. Outputs are allocated with torch's allocator on the engine's
// device; CUDA engines run on torch's current stream of that device.
std::vector<at::Tensor> execute_engine(at::TensorList inputs,
                                       c10::intrusive_ptr<TorchEngine> engine);

}  // namespace kiln::torch_integration
