// CumSum, ArgMax, ArgMin, TopK: CUDA kernels.
#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda {

void register_index_kernels(CudaKernelRegistry& /*registry*/) {}

}  // namespace kiln::cuda
