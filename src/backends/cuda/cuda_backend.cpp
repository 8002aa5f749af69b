#include "backends/cuda/cuda_backend.hpp"

#include <cuda_runtime_api.h>

#include "backends/cuda/cuda_device.hpp"
#include "backends/cuda/cuda_executor.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/layer_placement.hpp"
#include "base/error.hpp"

namespace kiln::cuda {
namespace {

class CudaBackend final : public backends::Backend {
 public:
  const std::string& name() const override { return name_; }

  // The device is chosen and checked when the engine is bound (it may be any GPU of its arch).
  void check_device(const std::string&, const DeviceSpec&) const override {}

  std::vector<std::string> kernel_ops() const override { return cuda_kernels().ops(); }
  const backends::KernelSupport* kernel_support(std::string_view op) const override {
    return cuda_kernels().find_support(op);
  }

  std::string why_unsupported(const format::EngineModel& model, const format::Layer& layer) const override {
    const backends::KernelSupport* support = cuda_kernels().find_support(layer.op);
    if (!support) return "the cuda backend has no kernel for op '" + layer.op + "'";
    return backends::check_kernel_support(*support, model, layer, name_);
  }

  int device_count() const override { return cuda::device_count(); }
  backends::DeviceInfo device_info(int ordinal) const override {
    const DeviceProperties props = device_properties(ordinal);
    return {.name = props.name, .arch = props.sm_arch, .total_memory = props.total_memory};
  }

  // Every layer the executor runs (not the shape-value layers, nor views) runs on the GPU with a
  // CUDA kernel that takes it or else on the host with the CPU backend's (layer_placement.hpp).
  void check_loadable(const backends::EnginePlan& engine) const override { place_layers(engine); }

  std::vector<std::string> host_layers(const backends::EnginePlan& engine) const override {
    return place_layers(engine).host_reasons;
  }

  std::shared_ptr<const backends::BoundEngine> bind(const backends::EnginePlan& engine,
                                                    const DeviceSpec& device) const override {
    check_loadable(engine);  // the same refusals as a build for this target, before any device work
    return bind_engine_to_device(engine, device);
  }

  std::unique_ptr<backends::BackendContext> create_context(
      const backends::EnginePlan& engine, std::shared_ptr<const backends::BoundEngine> bound) const override {
    return create_device_context(engine, std::move(bound));
  }

  void* allocate(int device, size_t bytes) const override { return cuda::allocate(device, bytes); }
  void release(int device, void* data) const noexcept override { cuda::release(device, data); }
  void copy_from_host(int device, void* destination, const void* source, size_t bytes) const override {
    copy_host_to_device(device, destination, source, bytes);
  }
  void copy_to_host(int device, void* destination, const void* source, size_t bytes) const override {
    copy_device_to_host(device, destination, source, bytes);
  }
  void synchronize(int device, void* stream) const override { synchronize_stream(device, stream); }

  backends::PointerPlace locate(const void* pointer) const override {
    cudaPointerAttributes attributes{};
    backends::PointerPlace place;
    if (cudaPointerGetAttributes(&attributes, pointer) == cudaSuccess) {
      place.known = true;
      place.device_memory = attributes.type == cudaMemoryTypeDevice;
      place.device = attributes.device;
    } else {
      cudaGetLastError();  // not sticky, but it would be reported by the next unrelated check
    }
    return place;
  }

  // cudaDeviceProp's memoryClockRate and memoryBusWidth fields are gone in CUDA 13; the device
  // attributes that replace them remain.
  double peak_memory_bandwidth_gb_per_s(int device) const override {
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
  }

 private:
  const std::string name_ = "cuda";
};

}  // namespace

const backends::Backend& cuda_backend() {
  static const CudaBackend backend;
  return backend;
}

}  // namespace kiln::cuda
