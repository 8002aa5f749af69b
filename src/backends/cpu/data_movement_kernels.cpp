// Placeholder until the data_movement family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_data_movement_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
