// DepthToSpace, SpaceToDepth: CPU kernels (the reference). Both are one strided copy of the input
// (a transpose of a 6-D view, see ops/space_depth_geometry.hpp), so every dtype is handled.
#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/tensor_strided.hpp"
#include "ops/space_depth_geometry.hpp"

namespace kiln::cpu {
namespace {

void space_depth_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const ops::SpaceDepthCopy copy =
      ops::resolve_space_depth(ops::NodeRef{ctx.node_name, ctx.op}, ctx.attrs, in, out);
  if (out.numel() == 0) return;
  copy_strided(in.data, out.data, dtype_size(in.dtype), copy.copy_dims, copy.input_strides);
}

}  // namespace

void register_space_depth_kernels(CpuKernelRegistry& registry) {
  registry.add("DepthToSpace", CpuKernel{&nn::kernel_with_node_errors<space_depth_kernel>, false});
  registry.add("SpaceToDepth", CpuKernel{&nn::kernel_with_node_errors<space_depth_kernel>, false});
}

}  // namespace kiln::cpu
