// Placeholder until the reduce family lands on CUDA.
#include "backends/cuda/cuda_kernel.hpp"
namespace kiln::cuda {
void register_reduce_kernels(CudaKernelRegistry&) {}
}  // namespace kiln::cuda
