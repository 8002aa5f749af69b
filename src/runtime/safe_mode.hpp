// Multi-device safe mode: a process-wide switch read on every CUDA call.
#pragma once

namespace kiln::detail {

bool multi_device_safe_mode();

}  // namespace kiln::detail
