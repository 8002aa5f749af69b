// Placeholder until the pooling family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_pooling_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
