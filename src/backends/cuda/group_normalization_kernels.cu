// InstanceNormalization, GroupNormalization: CUDA kernels.
#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda {

void register_group_normalization_kernels(CudaKernelRegistry& /*registry*/) {}

}  // namespace kiln::cuda
