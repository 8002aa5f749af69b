#include "backends/cpu/cpu_kernel.hpp"

#include <algorithm>

namespace kiln::cpu {

void CpuKernelRegistry::add(std::string_view op, CpuKernel kernel, backends::KernelSupport support) {
  KILN_ASSERT(kernel.fn != nullptr, "CPU kernel for ", op, " is null");
  auto [it, inserted] = kernels_.emplace(std::string(op), Entry{kernel, std::move(support)});
  if (!inserted) fail(ErrorCode::kInternal, "the CPU kernel of op '", op, "' is registered twice");
}

const CpuKernel* CpuKernelRegistry::find(std::string_view op) const {
  auto it = kernels_.find(std::string(op));
  return it == kernels_.end() ? nullptr : &it->second.kernel;
}

const backends::KernelSupport* CpuKernelRegistry::find_support(std::string_view op) const {
  auto it = kernels_.find(std::string(op));
  return it == kernels_.end() ? nullptr : &it->second.support;
}

std::vector<std::string> CpuKernelRegistry::ops() const {
  std::vector<std::string> out;
  out.reserve(kernels_.size());
  for (const auto& [op, entry] : kernels_) out.push_back(op);
  std::sort(out.begin(), out.end());
  return out;
}

const CpuKernelRegistry& cpu_kernels() {
  static const CpuKernelRegistry registry = [] {
    CpuKernelRegistry r;
    register_families(r, cpu_kernel_families());
    return r;
  }();
  return registry;
}

}  // namespace kiln::cpu
