// BitCast on the CPU: a byte copy (kiln's tensors are little endian, as ONNX asks).
#include <cstring>

#include "backends/cpu/nn_kernel_common.hpp"

namespace kiln::cpu {
namespace {

void bitcast_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  TensorView& out = ctx.outputs[0];
  nn::require_output_shape(ctx, 0, in.shape);
  if (in.nbytes() != out.nbytes()) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 (", dtype_name(out.dtype), ") holds ",
             out.nbytes(), " bytes, input 0 (", dtype_name(in.dtype), ") ", in.nbytes());
  }
  if (in.nbytes() > 0) std::memcpy(out.data, in.data, in.nbytes());
}

}  // namespace

void register_bitcast_kernels(CpuKernelRegistry& registry) {
  registry.add("BitCast", CpuKernel{&nn::kernel_with_node_errors<bitcast_kernel>, false});
}

}  // namespace kiln::cpu
