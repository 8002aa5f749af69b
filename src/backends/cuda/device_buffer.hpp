// RAII device memory and a guard that switches the current device and restores it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace kiln::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // Allocates `bytes` on the current device. Throws kOutOfMemory / kDeviceError.
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return data_; }
  size_t size() const { return size_; }
  // Makes the buffer at least `bytes` large; returns true when it was reallocated (old contents lost).
  bool reserve(size_t bytes);

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Makes `ordinal` the current device for the guard's lifetime (no-op when it already is).
class DeviceGuard {
 public:
  explicit DeviceGuard(int ordinal);
  // For destructors: switches when it can and never throws (at process exit the CUDA runtime may
  // already be unloading).
  struct BestEffort {};
  DeviceGuard(int ordinal, BestEffort) noexcept;
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool switched_ = false;
};

}  // namespace kiln::cuda
