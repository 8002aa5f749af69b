// Placeholder until the softmax family lands on CUDA.
#include "backends/cuda/cuda_kernel.hpp"
namespace kiln::cuda {
void register_softmax_kernels(CudaKernelRegistry&) {}
}  // namespace kiln::cuda
