// CUDA device discovery, used to check an engine's target against the GPUs of this machine.
#pragma once

#include <cstddef>
#include <string>

namespace kiln::cuda {

struct DeviceProperties {
  int ordinal = 0;
  std::string name;
  int sm_arch = 0;             // compute capability * 10, e.g. 90
  size_t total_memory = 0;     // bytes
  int multiprocessors = 0;
};

// Number of usable CUDA devices; 0 when there is no driver or no device (never throws).
int device_count();
// Properties of GPU `ordinal`. Throws kiln::Error(kDeviceError) naming the ordinal and CUDA's message.
DeviceProperties device_properties(int ordinal);

// Thin wrappers for code that does not include CUDA's headers (the runtime's EngineBuffer). Each
// runs on device `ordinal` and throws kiln::Error (kOutOfMemory / kDeviceError) on failure.
void* allocate(int ordinal, size_t bytes);
void release(int ordinal, void* pointer) noexcept;
void copy_host_to_device(int ordinal, void* destination, const void* source, size_t bytes);
void copy_device_to_host(int ordinal, void* destination, const void* source, size_t bytes);
void synchronize_stream(int ordinal, void* stream);

}  // namespace kiln::cuda
