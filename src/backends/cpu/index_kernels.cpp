// CumSum, ArgMax, ArgMin, TopK: CPU kernels (the reference).
#include "backends/cpu/cpu_kernel.hpp"

namespace kiln::cpu {

void register_index_kernels(CpuKernelRegistry& /*registry*/) {}

}  // namespace kiln::cpu
