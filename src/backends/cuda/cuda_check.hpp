// Turns CUDA, cuBLASLt and cuDNN status codes into kiln::Error(kDeviceError) with context.
#pragma once

#include <cuda_runtime_api.h>

#include "base/error.hpp"

namespace kiln::cuda {

[[noreturn]] void fail_cuda(cudaError_t status, const char* expression, const char* file, int line);
[[noreturn]] void fail_library(const char* library, int status, const char* message, const char* expression,
                               const char* file, int line);

}  // namespace kiln::cuda

#define KILN_CUDA_CHECK(expr)                                                          \
  do {                                                                                 \
    const cudaError_t kiln_cuda_status_ = (expr);                                      \
    if (kiln_cuda_status_ != cudaSuccess) {                                            \
      ::kiln::cuda::fail_cuda(kiln_cuda_status_, #expr, __FILE__, __LINE__);           \
    }                                                                                  \
  } while (0)
