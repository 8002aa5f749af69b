// Multi-device safe mode: a process-wide switch that backends bound to a device read on every call
// (through get_multi_device_safe_mode).
#include <atomic>

#include "kiln/runtime.hpp"

namespace kiln {
namespace {
// Relaxed is enough: the mode is a setting, not a synchronisation point between threads.
std::atomic<bool> g_safe_mode{false};
}  // namespace

bool set_multi_device_safe_mode(bool enabled) { return g_safe_mode.exchange(enabled, std::memory_order_relaxed); }
bool get_multi_device_safe_mode() { return g_safe_mode.load(std::memory_order_relaxed); }

}  // namespace kiln
