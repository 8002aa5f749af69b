// Placeholder until the resize family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_resize_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
