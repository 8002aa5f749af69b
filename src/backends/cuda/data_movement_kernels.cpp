// Placeholder until the data_movement family lands on CUDA.
#include "backends/cuda/cuda_kernel.hpp"
namespace kiln::cuda {
void register_data_movement_kernels(CudaKernelRegistry&) {}
}  // namespace kiln::cuda
