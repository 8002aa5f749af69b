// The cpu backend: runs every layer of a cpu engine on the host with the CPU kernel registry
// (cpu_kernel.hpp), in host memory, synchronously.
#pragma once

#include "backends/backend.hpp"

namespace kiln::cpu {

// The process's cpu backend (registered by src/backends/builtin_backends.cpp).
const backends::Backend& cpu_backend();

}  // namespace kiln::cpu
