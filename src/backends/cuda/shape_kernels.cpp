// Placeholder until the shape family lands on CUDA.
#include "backends/cuda/cuda_kernel.hpp"
namespace kiln::cuda {
void register_shape_kernels(CudaKernelRegistry&) {}
}  // namespace kiln::cuda
