// Placeholder until kiln's fused ops land.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_fused_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
