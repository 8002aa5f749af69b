#include "backends/cpu/cpu_kernel.hpp"

#include <algorithm>

namespace kiln::cpu {

void CpuKernelRegistry::add(std::string_view op, CpuKernel kernel, backends::KernelSupport support) {
  KILN_ASSERT(kernel.fn != nullptr, "CPU kernel for ", op, " is null");
  auto [it, inserted] = kernels_.emplace(std::string(op), Entry{kernel, std::move(support)});
  KILN_ASSERT(inserted, "CPU kernel for ", op, " registered twice");
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
    register_conv_kernels(r);
    register_gemm_kernels(r);
    register_normalization_kernels(r);
    register_pooling_kernels(r);
    register_softmax_kernels(r);
    register_reduce_kernels(r);
    register_resize_kernels(r);
    register_elementwise_kernels(r);
    register_shape_kernels(r);
    register_data_movement_kernels(r);
    register_attention_kernels(r);
    register_fused_kernels(r);
    register_index_kernels(r);
    register_grid_sample_kernels(r);
    register_det_kernels(r);
    register_recurrent_kernels(r);
    register_spectral_kernels(r);
    register_conv_transpose_kernels(r);
    register_group_normalization_kernels(r);
    register_space_depth_kernels(r);
    register_col2im_kernels(r);
    register_onnx_attention_kernels(r);
    register_quantize_kernels(r);
    register_integer_linear_kernels(r);
    register_rotary_embedding_kernels(r);
    register_linear_attention_kernels(r);
    register_causal_conv_kernels(r);
    register_swiglu_kernels(r);
    register_tensor_scatter_kernels(r);
    register_bitcast_kernels(r);
    register_data_dependent_kernels(r);
    register_optimizer_kernels(r);
    register_roi_align_kernels(r);
    register_deform_conv_kernels(r);
    register_ml_kernels(r);
    register_plugin_kernels(r);
    return r;
  }();
  return registry;
}

}  // namespace kiln::cpu
