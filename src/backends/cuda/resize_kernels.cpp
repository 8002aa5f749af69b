// Placeholder until the resize family lands on CUDA.
#include "backends/cuda/cuda_kernel.hpp"
namespace kiln::cuda {
void register_resize_kernels(CudaKernelRegistry&) {}
}  // namespace kiln::cuda
