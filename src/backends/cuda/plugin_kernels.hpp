// Plugin layers on the CUDA backend (src/backends/cuda/plugin_kernels.cpp): the plugin's
// execute_cuda on the context's stream.
#pragma once

#include <string>

#include "base/attributes.hpp"

namespace kiln::cuda {

// "" when the plugin a plugin layer's attributes name is registered and has a CUDA
// implementation; else why the cuda backend cannot run it ("plugin ns::name v1 (libfoo.so) has no
// CUDA implementation (execute_cuda is NULL)", or the registry's not-found message). Never throws.
std::string plugin_cuda_refusal(const AttributeMap& attrs, std::string_view layer) noexcept;

}  // namespace kiln::cuda
