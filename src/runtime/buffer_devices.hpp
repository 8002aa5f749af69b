// Which GPU a caller's bound buffer lives on: engines bound to a device reject device memory of
// another one with a clear error instead of launching kernels on pointers their device cannot use.
#pragma once

#include <array>
#include <cstddef>
#include <span>

#include "backends/backend.hpp"
#include "kiln/runtime.hpp"

namespace kiln::detail {

// Pointers recently found to be usable by the engine's GPU (its device memory, or host, pinned or
// managed memory), so that a serving loop that reuses
// (or alternates between) its buffers queries the driver once per buffer, not once per call.
class CheckedBuffers {
 public:
  bool contains(const void* pointer) const;
  void add(const void* pointer);

 private:
  std::array<const void*, 16> recent_{};
  size_t next_ = 0;
};

// Fails with kInvalidArgument, naming the tensor and both GPUs, when an input or output buffer is
// device memory of a GPU other than `device` (the engine's). Host, pinned and managed memory, and
// pointers the driver does not know, are left to the call (as before this check). Each pointer
// that passes is remembered in `checked` when the driver answered for it (host buffers too, so
// bound host I/O does not query the driver every call); one the driver could not answer for (no
// driver, no GPU) is asked about again next call. The registered backends are asked
// (backends::locate_pointer): in builds without a device backend nothing is asked or remembered. A buffer freed and reallocated on another GPU at the same address while still in
// `checked` is not caught: the check is a safety net, not a guarantee.
void check_buffer_devices(CheckedBuffers& checked, int device, std::span<const NamedTensor> inputs,
                          std::span<const NamedTensor> outputs);

// What the driver said about one bound pointer (backends/backend.hpp), without any driver's
// types, so that the decision below is the same code, and tested, in every build.
using backends::PointerPlace;

// check_buffer_devices' decision for one non-null buffer that is not yet in `checked`, given
// `place`: fails (kInvalidArgument, as above, `role` being "input" or "output") for device memory
// of another GPU; remembers the pointer when `place` is known and the buffer usable; otherwise
// leaves `checked` as it was.
void check_pointer_place(CheckedBuffers& checked, int device, const NamedTensor& bound,
                         const char* role, const PointerPlace& place);

}  // namespace kiln::detail
