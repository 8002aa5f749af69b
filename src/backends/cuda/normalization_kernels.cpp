// Placeholder until the normalization family lands on CUDA.
#include "backends/cuda/cuda_kernel.hpp"
namespace kiln::cuda {
void register_normalization_kernels(CudaKernelRegistry&) {}
}  // namespace kiln::cuda
