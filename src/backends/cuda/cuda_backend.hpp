// The cuda backend: runs the layers of a cuda engine on one GPU (cuda_executor.hpp), with
// device memory, streams and CUDA graphs.
#pragma once

#include "backends/backend.hpp"

namespace kiln::cuda {

// The process's cuda backend (registered by src/backends/builtin_backends.cpp in CUDA builds).
const backends::Backend& cuda_backend();

}  // namespace kiln::cuda
