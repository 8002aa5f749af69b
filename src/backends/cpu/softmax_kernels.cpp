// Placeholder until the softmax family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_softmax_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
