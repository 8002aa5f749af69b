#include "backends/cuda/cuda_device.hpp"

#include <cuda_runtime_api.h>

#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/device_buffer.hpp"
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

void* allocate(int ordinal, size_t bytes) {
  DeviceGuard guard(ordinal);
  void* pointer = nullptr;
  KILN_CUDA_CHECK(cudaMalloc(&pointer, bytes));
  return pointer;
}

void release(int ordinal, void* pointer) noexcept {
  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) return;
  if (previous != ordinal) cudaSetDevice(ordinal);
  cudaFree(pointer);
  if (previous != ordinal) cudaSetDevice(previous);
}

void copy_host_to_device(int ordinal, void* destination, const void* source, size_t bytes) {
  DeviceGuard guard(ordinal);
  KILN_CUDA_CHECK(cudaMemcpy(destination, source, bytes, cudaMemcpyHostToDevice));
}

void copy_device_to_host(int ordinal, void* destination, const void* source, size_t bytes) {
  DeviceGuard guard(ordinal);
  KILN_CUDA_CHECK(cudaMemcpy(destination, source, bytes, cudaMemcpyDeviceToHost));
}

void synchronize_stream(int ordinal, void* stream) {
  DeviceGuard guard(ordinal);
  KILN_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

}  // namespace kiln::cuda
