// ConvTranspose: CUDA kernels.
#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda {

void register_conv_transpose_kernels(CudaKernelRegistry& /*registry*/) {}

}  // namespace kiln::cuda
