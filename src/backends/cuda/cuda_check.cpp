#include "backends/cuda/cuda_check.hpp"

namespace kiln::cuda {

void fail_cuda(cudaError_t status, const char* expression, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the context stays usable
  const ErrorCode code = status == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kDeviceError;
  fail(code, "CUDA error ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ") in ", expression,
       " at ", file, ":", line);
}

void fail_library(const char* library, int status, const char* message, const char* expression, const char* file,
                  int line) {
  fail(ErrorCode::kDeviceError, library, " error ", status, " (", message, ") in ", expression, " at ", file, ":",
       line);
}

}  // namespace kiln::cuda
