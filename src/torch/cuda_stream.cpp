#include "torch/cuda_stream.hpp"

#include <c10/core/Device.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdint>

namespace kiln::torch_integration {
namespace {

// aoti_torch_get_current_cuda_stream(int32_t device_index, void** ret_stream) -> 0 on success.
using AotiGetCurrentStream = int32_t (*)(int32_t, void**);

AotiGetCurrentStream aoti_get_current_stream() {
  static const AotiGetCurrentStream function = [] {
    constexpr const char* kSymbol = "aoti_torch_get_current_cuda_stream";
    // RTLD_NOLOAD: only a libtorch_cuda.so torch already loaded (whatever its RTLD_GLOBAL-ness).
    void* library = dlopen("libtorch_cuda.so", RTLD_LAZY | RTLD_NOLOAD);
    void* symbol = library ? dlsym(library, kSymbol) : dlsym(RTLD_DEFAULT, kSymbol);
    return reinterpret_cast<AotiGetCurrentStream>(symbol);
  }();
  return function;
}

// c10::Stream::native_handle() where this torch's headers have it; nullptr otherwise. A template
// so that the requires-expression is checked on substitution rather than failing the build.
template <typename StreamType>
void* native_handle_of(const StreamType& stream, bool* available) {
  if constexpr (requires { stream.native_handle(); }) {
    *available = true;
    return stream.native_handle();
  } else {
    *available = false;
    return nullptr;
  }
}

}  // namespace

void* current_cuda_stream(int device_index) {
  TORCH_CHECK(c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA),
              "kiln: this engine runs on CUDA but the loaded torch has no CUDA support");
  // Turned off after native_handle() once fails (a torch whose CUDA backend does not implement it).
  static std::atomic<bool> native_handle_works{true};
  if (native_handle_works.load(std::memory_order_relaxed)) {
    const c10::impl::DeviceGuardImplInterface* cuda =
        c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
    const c10::Stream stream = cuda->getStream(
        c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(device_index)));
    try {
      bool available = false;
      void* handle = native_handle_of(stream, &available);
      if (available) return handle;
    } catch (const c10::Error&) {
    }
    native_handle_works.store(false, std::memory_order_relaxed);
  }
  const AotiGetCurrentStream get_current_stream = aoti_get_current_stream();
  TORCH_CHECK(get_current_stream != nullptr,
              "kiln: cannot find torch's current CUDA stream: this torch has neither "
              "c10::Stream::native_handle() for CUDA nor aoti_torch_get_current_cuda_stream");
  void* stream = nullptr;
  TORCH_CHECK(get_current_stream(device_index, &stream) == 0,
              "kiln: aoti_torch_get_current_cuda_stream failed for cuda:", device_index);
  return stream;
}

}  // namespace kiln::torch_integration
