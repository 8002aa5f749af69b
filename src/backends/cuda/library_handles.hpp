// Library handles owned by one execution context (they are not meant to be shared across threads).
#pragma once

#include <cublasLt.h>
#include <cudnn.h>

namespace kiln::cuda {

struct LibraryHandles {
  cublasLtHandle_t cublaslt = nullptr;
  cudnnHandle_t cudnn = nullptr;

  // Creates the handles on the current device. Throws kDeviceError naming the library.
  LibraryHandles();
  ~LibraryHandles();
  LibraryHandles(const LibraryHandles&) = delete;
  LibraryHandles& operator=(const LibraryHandles&) = delete;
};

}  // namespace kiln::cuda

#define KILN_CUBLAS_CHECK(expr)                                                                        \
  do {                                                                                                 \
    const cublasStatus_t kiln_cublas_status_ = (expr);                                                 \
    if (kiln_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                                \
      ::kiln::cuda::fail_library("cuBLASLt", static_cast<int>(kiln_cublas_status_),                    \
                                 cublasLtGetStatusString(kiln_cublas_status_), #expr, __FILE__, __LINE__); \
    }                                                                                                  \
  } while (0)

#define KILN_CUDNN_CHECK(expr)                                                                       \
  do {                                                                                               \
    const cudnnStatus_t kiln_cudnn_status_ = (expr);                                                 \
    if (kiln_cudnn_status_ != CUDNN_STATUS_SUCCESS) {                                                \
      ::kiln::cuda::fail_library("cuDNN", static_cast<int>(kiln_cudnn_status_),                      \
                                 cudnnGetErrorString(kiln_cudnn_status_), #expr, __FILE__, __LINE__); \
    }                                                                                                \
  } while (0)
