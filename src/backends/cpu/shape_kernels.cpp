// Placeholder until the shape family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_shape_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
