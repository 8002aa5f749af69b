#include "backends/cuda/cuda_kernel.hpp"

#include <algorithm>

namespace kiln::cuda {

void CudaKernelRegistry::add(std::string_view op, CudaKernel kernel, backends::KernelSupport support) {
  KILN_ASSERT(kernel.launch != nullptr, "CUDA kernel for ", op, " has no launch");
  support.every_tensor = support.every_tensor.intersect(kCudaTensorDTypes);
  auto [it, inserted] = kernels_.emplace(std::string(op), Entry{kernel, std::move(support)});
  KILN_ASSERT(inserted, "CUDA kernel for ", op, " registered twice");
}

const CudaKernel* CudaKernelRegistry::find(std::string_view op) const {
  auto it = kernels_.find(std::string(op));
  return it == kernels_.end() ? nullptr : &it->second.kernel;
}

const backends::KernelSupport* CudaKernelRegistry::find_support(std::string_view op) const {
  auto it = kernels_.find(std::string(op));
  return it == kernels_.end() ? nullptr : &it->second.support;
}

std::vector<std::string> CudaKernelRegistry::ops() const {
  std::vector<std::string> out;
  out.reserve(kernels_.size());
  for (const auto& [op, entry] : kernels_) out.push_back(op);
  std::sort(out.begin(), out.end());
  return out;
}

const CudaKernelRegistry& cuda_kernels() {
  static const CudaKernelRegistry registry = [] {
    CudaKernelRegistry r;
    register_elementwise_kernels(r);
    register_gemm_kernels(r);
    register_conv_kernels(r);
    register_normalization_kernels(r);
    register_pooling_kernels(r);
    register_softmax_kernels(r);
    register_reduce_kernels(r);
    register_data_movement_kernels(r);
    register_shape_kernels(r);
    register_resize_kernels(r);
    register_attention_kernels(r);
    register_fused_kernels(r);
    register_index_kernels(r);
    register_conv_transpose_kernels(r);
    register_group_normalization_kernels(r);
    register_space_depth_kernels(r);
    register_plugin_kernels(r);
    return r;
  }();
  return registry;
}

}  // namespace kiln::cuda
