// Placeholder until the normalization family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_normalization_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
