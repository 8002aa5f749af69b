// Placeholder until kiln's fused ops land.
#include "backends/cuda/cuda_kernel.hpp"
namespace kiln::cuda {
void register_fused_kernels(CudaKernelRegistry&) {}
}  // namespace kiln::cuda
