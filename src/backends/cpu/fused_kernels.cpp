// CPU kernel of FusedElementwise. The program runs over blocks of up to kBlock elements of one
// output row at a time (one instruction over the whole block, then the next), which keeps the
// interpretation overhead per element small. The formulas (ops::evaluate_fused) match
// elementwise_kernels.cpp so the fused result equals the unfused sequence of float32 kernels.
#include <algorithm>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/tensor_strided.hpp"
#include "ops/fused_program.hpp"

namespace kiln::cpu {
namespace {

constexpr int64_t kBlock = 256;
using ops::FusedInstruction;
using ops::FusedOpcode;

// Runs `inst` over `count` elements of the register file (registers are kBlock floats apart).
void run_instruction(const FusedInstruction& inst, float* regs, int64_t count) {
  float* dst = regs + inst.dst * kBlock;
  const float* x = regs + inst.a * kBlock;
  const float* y = regs + inst.b * kBlock;
  // Specialised loops for the most common ops; the generic switch handles the rest.
  switch (inst.opcode) {
    case FusedOpcode::kAdd:
      for (int64_t i = 0; i < count; ++i) dst[i] = x[i] + y[i];
      return;
    case FusedOpcode::kMul:
      for (int64_t i = 0; i < count; ++i) dst[i] = x[i] * y[i];
      return;
    case FusedOpcode::kLoadConstant:
      std::fill(dst, dst + count, inst.p0);
      return;
    default:
      for (int64_t i = 0; i < count; ++i) dst[i] = ops::evaluate_fused(inst, x[i], y[i]);
      return;
  }
}

void fused_elementwise_kernel(KernelContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  const int num_inputs = static_cast<int>(ctx.inputs.size());
  const Attribute* constants_attr = ctx.attrs.find("constants");
  const std::vector<float> no_constants;
  const std::string context =
      "node '" + std::string(ctx.node_name) + "' (" + std::string(ctx.op) + ")";
  const ops::FusedProgram program = ops::parse_fused_program(
      context, ctx.attrs.get_ints("program"),
      constants_attr ? ctx.attrs.get_floats("constants") : no_constants, num_inputs);
  for (int k = 0; k < num_inputs; ++k) {
    if (ctx.inputs[static_cast<size_t>(k)].dtype != DType::kFloat32) {
      ctx.fail(ErrorCode::kUnsupported, "input ", k, " has dtype ",
               dtype_name(ctx.inputs[static_cast<size_t>(k)].dtype), ", expected a float type");
    }
  }
  if (out.dtype != DType::kFloat32) {
    ctx.fail(ErrorCode::kUnsupported, "output dtype ", dtype_name(out.dtype),
             " is not a float type");
  }
  if (out.numel() == 0) return;

  // Operands past num_inputs get zero strides and are never read.
  std::array<std::vector<int64_t>, ops::kFusedMaxInputs> strides;
  for (size_t k = 0; k < strides.size(); ++k) {
    strides[k] = k < ctx.inputs.size() ? broadcast_strides(ctx.inputs[k].shape, out.shape)
                                       : std::vector<int64_t>(out.shape.size(), 0);
  }
  const StridedLoop<ops::kFusedMaxInputs> loop = make_strided_loop(out.shape, strides);
  std::vector<float> regs(static_cast<size_t>(program.num_registers * kBlock));
  float* result = out.as<float>();
  const float* output_register = regs.data() + program.output_register * kBlock;
  for_each_row(loop, {},
               [&](int64_t o, std::array<int64_t, ops::kFusedMaxInputs> in, int64_t n,
                   std::array<int64_t, ops::kFusedMaxInputs> st) {
                 for (int64_t start = 0; start < n; start += kBlock) {
                   const int64_t count = std::min(kBlock, n - start);
                   for (int k = 0; k < num_inputs; ++k) {
                     const float* src = ctx.inputs[static_cast<size_t>(k)].as<const float>() +
                                        in[k] + start * st[k];
                     float* reg = regs.data() + k * kBlock;
                     const int64_t stride = st[k];
                     if (stride == 1) {
                       std::copy(src, src + count, reg);
                     } else {
                       for (int64_t i = 0; i < count; ++i) reg[i] = src[i * stride];
                     }
                   }
                   for (int p = 0; p < program.num_instructions; ++p) {
                     run_instruction(program.code[p], regs.data(), count);
                   }
                   std::copy(output_register, output_register + count, result + o + start);
                 }
               });
}

}  // namespace

void register_fused_kernels(CpuKernelRegistry& registry) {
  registry.add("FusedElementwise", CpuKernel{fused_elementwise_kernel, true});
}

}  // namespace kiln::cpu
