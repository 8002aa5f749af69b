#include "backends/cuda/cuda_device.hpp"

#include <cuda_runtime_api.h>

#include "base/error.hpp"

namespace kiln::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error so later calls start clean
    return 0;
  }
  return count;
}

DeviceProperties device_properties(int ordinal) {
  cudaDeviceProp props{};
  const cudaError_t status = cudaGetDeviceProperties(&props, ordinal);
  if (status != cudaSuccess) {
    fail(ErrorCode::kDeviceError, "cannot query CUDA device ", ordinal, ": ", cudaGetErrorString(status));
  }
  DeviceProperties out;
  out.ordinal = ordinal;
  out.name = props.name;
  out.sm_arch = props.major * 10 + props.minor;
  out.total_memory = props.totalGlobalMem;
  out.multiprocessors = props.multiProcessorCount;
  return out;
}

}  // namespace kiln::cuda
