// Placeholder until the gemm family lands.
#include "backends/cpu/cpu_kernel.hpp"
namespace kiln::cpu {
void register_gemm_kernels(CpuKernelRegistry&) {}
}  // namespace kiln::cpu
