#include "backends/cuda/cuda_kernel.hpp"

#include <algorithm>

namespace kiln::cuda {

void CudaKernelRegistry::add(std::string_view op, CudaKernel kernel, backends::KernelSupport support) {
  KILN_ASSERT(kernel.launch != nullptr, "CUDA kernel for ", op, " has no launch");
  support.every_tensor = support.every_tensor.intersect(kCudaTensorDTypes);
  auto [it, inserted] = kernels_.emplace(std::string(op), Entry{kernel, std::move(support)});
  if (!inserted) fail(ErrorCode::kInternal, "the CUDA kernel of op '", op, "' is registered twice");
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
    register_families(r, cuda_kernel_families());
    return r;
  }();
  return registry;
}

}  // namespace kiln::cuda
