#include "backends/cuda/device_buffer.hpp"

#include <utility>

#include "backends/cuda/cuda_check.hpp"

namespace kiln::cuda {

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes == 0) return;
  KILN_CUDA_CHECK(cudaMalloc(&data_, bytes));
  size_ = bytes;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFree(data_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

bool DeviceBuffer::reserve(size_t bytes) {
  if (bytes <= size_) return false;
  DeviceBuffer bigger(bytes);
  *this = std::move(bigger);
  return true;
}

DeviceGuard::DeviceGuard(int ordinal) {
  KILN_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != ordinal) {
    KILN_CUDA_CHECK(cudaSetDevice(ordinal));
    switched_ = true;
  }
}

DeviceGuard::DeviceGuard(int ordinal, BestEffort) noexcept {
  if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != ordinal) {
    switched_ = cudaSetDevice(ordinal) == cudaSuccess;
  }
}

DeviceGuard::~DeviceGuard() {
  if (switched_) cudaSetDevice(previous_);
}

}  // namespace kiln::cuda
