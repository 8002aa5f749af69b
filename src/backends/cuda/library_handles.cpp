#include "backends/cuda/library_handles.hpp"

#include "backends/cuda/cuda_check.hpp"

namespace kiln::cuda {

LibraryHandles::LibraryHandles() {
  KILN_CUBLAS_CHECK(cublasLtCreate(&cublaslt));
  const cudnnStatus_t status = cudnnCreate(&cudnn);
  if (status != CUDNN_STATUS_SUCCESS) {
    cublasLtDestroy(cublaslt);
    fail_library("cuDNN", static_cast<int>(status), cudnnGetErrorString(status), "cudnnCreate", __FILE__, __LINE__);
  }
}

LibraryHandles::~LibraryHandles() {
  if (cudnn) cudnnDestroy(cudnn);
  if (cublaslt) cublasLtDestroy(cublaslt);
}

}  // namespace kiln::cuda
