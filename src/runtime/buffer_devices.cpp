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

namespace {

#if KILN_WITH_CUDA
void check_one(CheckedBuffers& checked, int device, const NamedTensor& bound, const char* role) {
  const void* pointer = bound.tensor.data;
  if (pointer == nullptr || checked.contains(pointer)) return;
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    cudaGetLastError();  // not sticky, but it would be reported by the next unrelated check
    return;
  }
  // Host, pinned and managed memory pass, and are remembered like device memory of this GPU, so
  // that binding host buffers does not query the driver on every call.
  if (attributes.type == cudaMemoryTypeDevice && attributes.device != device) {
    fail(ErrorCode::kInvalidArgument, role, " '", bound.name,
         "': the buffer is on cuda:", attributes.device,
         " but the engine is bound to cuda:", device, "; pass device memory of cuda:", device);
  }
  checked.add(pointer);
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
