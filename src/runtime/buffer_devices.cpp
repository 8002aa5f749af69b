#include "runtime/buffer_devices.hpp"

#include <algorithm>

#include "backends/backend_registry.hpp"
#include "base/error.hpp"

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

void check_one(CheckedBuffers& checked, int device, const NamedTensor& bound, const char* role) {
  const void* pointer = bound.tensor.data;
  if (pointer == nullptr || checked.contains(pointer)) return;
  check_pointer_place(checked, device, bound, role, backends::locate_pointer(pointer));
}

}  // namespace

void check_buffer_devices(CheckedBuffers& checked, int device, std::span<const NamedTensor> inputs,
                          std::span<const NamedTensor> outputs) {
  for (const NamedTensor& in : inputs) check_one(checked, device, in, "input");
  for (const NamedTensor& out : outputs) check_one(checked, device, out, "output");
}

}  // namespace kiln::detail
