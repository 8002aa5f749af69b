// The GPU's peak DRAM bandwidth, for the per-layer profile. cudaDeviceProp's memoryClockRate and
// memoryBusWidth fields are gone in CUDA 13; the device attributes that replace them remain.
#include "kiln/runtime.hpp"

#if KILN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kiln {

double peak_memory_bandwidth_gb_per_s(const Engine& engine) {
#if KILN_WITH_CUDA
  int device = -1;
  try {
    device = engine.device_index();
  } catch (const Error&) {
    return 0.0;  // a moved-from Engine: documented never to throw
  }
  if (device < 0) return 0.0;
  int clock_khz = 0;
  int bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
    cudaGetLastError();  // not sticky, but it would be reported by the next unrelated check
    return 0.0;
  }
  if (clock_khz <= 0 || bus_bits <= 0) return 0.0;
  // Double data rate: two transfers per memory clock, bus_bits / 8 bytes each.
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
#else
  (void)engine;
  return 0.0;
#endif
}

}  // namespace kiln
