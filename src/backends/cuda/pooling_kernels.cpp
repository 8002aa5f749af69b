// Placeholder until the pooling family lands on CUDA.
#include "backends/cuda/cuda_kernel.hpp"
namespace kiln::cuda {
void register_pooling_kernels(CudaKernelRegistry&) {}
}  // namespace kiln::cuda
