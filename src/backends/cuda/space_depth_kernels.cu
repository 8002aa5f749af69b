// DepthToSpace, SpaceToDepth: CUDA kernels.
#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda {

void register_space_depth_kernels(CudaKernelRegistry& /*registry*/) {}

}  // namespace kiln::cuda
