// ConvTranspose: CPU kernels (the reference).
#include "backends/cpu/cpu_kernel.hpp"

namespace kiln::cpu {

void register_conv_transpose_kernels(CpuKernelRegistry& /*registry*/) {}

}  // namespace kiln::cpu
