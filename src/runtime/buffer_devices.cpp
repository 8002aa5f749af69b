#include "runtime/buffer_devices.hpp"

#include <algorithm>

#include "base/error.hpp"

#if KILN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kiln::detail {

bool CheckedBuffers::contains(const void* pointer) const {
  return std::find(recent_.begin(), recent_.end(), pointer) != recent_.end();
}

void CheckedBuffers::add(const void* pointer) {
  recent_[next_] = pointer;
  next_ = (next_ + 1) % recent_.size();
}

void check_pointer_place(CheckedBuffers& checked, int device, const NamedTensor& bound,
                         const char* role, const PointerPlace& place) {
  if (!place.known) return;
  if (place.device_memory && place.device != device) {
    fail(ErrorCode::kInvalidArgument, role, " '", bound.name,
         "': the buffer is on cuda:", place.device, " but the engine is bound to cuda:", device,
         "; pass device memory of cuda:", device);
  }
  // Host, pinned and managed memory pass, and are remembered like device memory of this GPU, so
  // that binding host buffers does not query the driver on every call.
  checked.add(bound.tensor.data);
}

namespace {

#if KILN_WITH_CUDA
void check_one(CheckedBuffers& checked, int device, const NamedTensor& bound, const char* role) {
  const void* pointer = bound.tensor.data;
  if (pointer == nullptr || checked.contains(pointer)) return;
  cudaPointerAttributes attributes{};
  PointerPlace place;
  if (cudaPointerGetAttributes(&attributes, pointer) == cudaSuccess) {
    place.known = true;
    place.device_memory = attributes.type == cudaMemoryTypeDevice;
    place.device = attributes.device;
  } else {
    cudaGetLastError();  // not sticky, but it would be reported by the next unrelated check
  }
  check_pointer_place(checked, device, bound, role, place);
}
#endif

}  // namespace

void check_buffer_devices(CheckedBuffers& checked, int device, std::span<const NamedTensor> inputs,
                          std::span<const NamedTensor> outputs) {
#if KILN_WITH_CUDA
  for (const NamedTensor& in : inputs) check_one(checked, device, in, "input");
  for (const NamedTensor& out : outputs) check_one(checked, device, out, "output");
#else
  (void)checked;
  (void)device;
  (void)inputs;
  (void)outputs;
#endif
}

}  // namespace kiln::detail
