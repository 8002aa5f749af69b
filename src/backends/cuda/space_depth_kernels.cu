// DepthToSpace, SpaceToDepth: CUDA kernels. Both are one strided copy of the input (a transpose of
// a 6-D view, see ops/space_depth_geometry.hpp); launch_strided_copy merges dims and picks wide
// words or shared-memory tiles, and moves raw bytes, so every dtype is handled.
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/strided_copy.cuh"
#include "ops/space_depth_geometry.hpp"

namespace kiln::cuda {
namespace {

void launch_space_depth(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const ops::SpaceDepthCopy copy =
      ops::resolve_space_depth(ops::NodeRef{ctx.node_name, ctx.op}, ctx.attrs, in, out);
  launch_strided_copy(ctx, in.data, out.data, dtype_size(in.dtype), copy.copy_dims,
                      copy.input_strides);
}

}  // namespace

void register_space_depth_kernels(CudaKernelRegistry& registry) {
  registry.add("DepthToSpace", CudaKernel{nullptr, launch_space_depth});
  registry.add("SpaceToDepth", CudaKernel{nullptr, launch_space_depth});
}

}  // namespace kiln::cuda
