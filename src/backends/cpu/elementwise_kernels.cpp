// Placeholder until the elementwise family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_elementwise_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
