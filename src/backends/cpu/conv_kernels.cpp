// Placeholder until the conv family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_conv_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
