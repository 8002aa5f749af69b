// Helpers shared by the CPU kernels of the neural-network op families.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "backends/cpu/cpu_kernel.hpp"
#include "ops/nn_common.hpp"

namespace kiln::cpu::nn {

inline ops::nn::NodeLabel label_of(const KernelContext& ctx) {
  return ops::nn::NodeLabel{ctx.node_name, ctx.op};
}

// Wraps a kernel so that every kiln::Error it raises names the node.
template <KernelFn Fn>
void kernel_with_node_errors(KernelContext& ctx) {
  try {
    Fn(ctx);
  } catch (const Error& error) {
    ops::nn::rethrow_with_node(label_of(ctx), error);
  }
}

// Registers `Fn` as a float-computing kernel (float16/bfloat16 arrive as float32).
template <KernelFn Fn>
void add_float_kernel(CpuKernelRegistry& registry, std::string_view op) {
  registry.add(op, CpuKernel{&kernel_with_node_errors<Fn>, true});
}

// Fails with kUnsupported unless input `index` is float32 (after the executor's conversion).
inline void require_float32_input(const KernelContext& ctx, size_t index) {
  const DType dtype = ctx.inputs[index].dtype;
  if (dtype != DType::kFloat32) {
    ctx.fail(ErrorCode::kUnsupported, "input ", index, " has unsupported dtype ", dtype_name(dtype),
             "; supported: float32, float16, bfloat16");
  }
}

inline void require_float32_output(const KernelContext& ctx, size_t index) {
  const DType dtype = ctx.outputs[index].dtype;
  if (dtype != DType::kFloat32) {
    ctx.fail(ErrorCode::kUnsupported, "output ", index, " has unsupported dtype ",
             dtype_name(dtype), "; supported: float32, float16, bfloat16");
  }
}

// Fails with kInvalidArgument unless the output was allocated with `expected` shape.
inline void require_output_shape(const KernelContext& ctx, size_t index, const Shape& expected) {
  if (ctx.outputs[index].shape != expected) {
    ctx.fail(ErrorCode::kInvalidArgument, "output ", index, " has shape ",
             shape_to_string(ctx.outputs[index].shape), ", expected ", shape_to_string(expected));
  }
}

}  // namespace kiln::cpu::nn
