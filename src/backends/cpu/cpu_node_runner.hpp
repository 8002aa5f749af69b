// Runs single ops on the CPU backend: for constant folding in the builder, host-side shape
// computations in the runtime, and tests.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "ops/op_registry.hpp"

namespace kiln::cpu {

// Calls `kernel` on views, converting float16/bfloat16 tensors to float32 around the call when
// kernel.float_compute is set. Outputs must already be allocated.
void invoke_cpu_kernel(const CpuKernel& kernel, KernelContext& ctx);

// Infers the outputs of `op` from the inputs (all values known), allocates them, and runs the
// CPU kernel. A null entry in `inputs` is an absent optional input. Throws kiln::Error naming the
// node: kUnsupported when the op or its CPU kernel does not exist, kInvalidArgument for bad input.
std::vector<HostTensor> run_node_on_cpu(std::string_view node_name, std::string_view op,
                                        const AttributeMap& attrs,
                                        std::span<const HostTensor* const> inputs, size_t num_outputs);

}  // namespace kiln::cpu
