// Placeholder until the reduce family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_reduce_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
