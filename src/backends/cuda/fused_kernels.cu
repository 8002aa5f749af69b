// FusedElementwise on CUDA: one launch per fused chain. Each thread loads its element of every
// input (broadcast), runs the register program (ops/fused_program.hpp) in float32 and stores the
// result. The program and broadcast strides are decoded once in prepare and passed by value as a
// __grid_constant__ parameter, so instructions are read straight from the constant bank.
#include <memory>
#include <string>

#include "backends/cuda/cuda_common.cuh"
#include "ops/fused_program.hpp"

namespace kiln::cuda {
namespace {

using ops::FusedInstruction;
constexpr int kMaxInputs = ops::kFusedMaxInputs;

struct FusedParams {
  ops::FusedProgram program;
  StridedIndexer<kMaxInputs> indexer;  // used unless every input is dense or a scalar
  const void* inputs[kMaxInputs];
  void* output;
  int64_t n;
  int num_inputs;
  unsigned scalar_mask;  // dense path: bit k set when input k has one element
  unsigned packed_mask;  // bit k set when input k is read W elements at a time (else repeated)
};

// kRegs >= kMaxInputs so the input loads index the register file with compile-time indices; only
// the program's operands index it dynamically (the file is kept small by the pass's allocation).
// Each thread computes a pack of W consecutive outputs (16-byte accesses where can_pack allows).
template <typename T, int kRegs, bool kDense, typename Index, int W>
__global__ void fused_elementwise_kernel(const __grid_constant__ FusedParams p, Index packs) {
  T* out = static_cast<T*>(p.output);
  for (Index q = first_index<Index>(); q < packs; q += grid_stride<Index>()) {
    const Index first = q * W;
    Index offsets[kMaxInputs];
    if constexpr (kDense) {
#pragma unroll
      for (int k = 0; k < kMaxInputs; ++k) offsets[k] = (p.scalar_mask >> k) & 1u ? 0 : first;
    } else {
      p.indexer.offsets(first, offsets);
    }
    T loaded[kMaxInputs][W];
#pragma unroll
    for (int k = 0; k < kMaxInputs; ++k) {
      if (k < p.num_inputs) {
        load_pack<T, W>(static_cast<const T*>(p.inputs[k]), offsets[k], (p.packed_mask >> k) & 1u, loaded[k]);
      }
    }
    T results[W];
#pragma unroll
    for (int w = 0; w < W; ++w) {
      float regs[kRegs];
#pragma unroll
      for (int k = 0; k < kMaxInputs; ++k) {
        if (k < p.num_inputs) regs[k] = to_float(loaded[k][w]);
      }
      for (int pc = 0; pc < p.program.num_instructions; ++pc) {
        const FusedInstruction inst = p.program.code[pc];
        regs[inst.dst] = ops::evaluate_fused(inst, regs[inst.a], regs[inst.b]);
      }
      results[w] = from_float<T>(regs[p.program.output_register]);
    }
    store_pack<T, W>(out, first, results);
  }
}

struct FusedState : LayerState {
  FusedParams params{};
  StridedIndexer<kMaxInputs> walk{};  // dense or broadcast walk, to decide packing per launch
  bool dense = false;
};

std::unique_ptr<LayerState> prepare_fused(LaunchContext& ctx, size_t* workspace_bytes) {
  *workspace_bytes = 0;
  const TensorView& out = ctx.outputs[0];
  const int num_inputs = static_cast<int>(ctx.inputs.size());
  const Attribute* constants_attr = ctx.attrs.find("constants");
  const std::vector<float> no_constants;
  const std::string context =
      "node '" + std::string(ctx.node_name) + "' (" + std::string(ctx.op) + ") on cuda";
  auto state = std::make_unique<FusedState>();
  FusedParams& params = state->params;
  params.program = ops::parse_fused_program(
      context, ctx.attrs.get_ints("program"),
      constants_attr ? ctx.attrs.get_floats("constants") : no_constants, num_inputs);
  if (params.program.num_registers > ops::kFusedMaxRegisters) {
    ctx.fail(ErrorCode::kUnsupported, "program uses ", params.program.num_registers, " registers");
  }
  if (out.dtype != DType::kFloat32 && out.dtype != DType::kFloat16 &&
      out.dtype != DType::kBFloat16) {
    ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(out.dtype), " is not supported");
  }
  params.num_inputs = num_inputs;
  params.n = out.numel();
  state->dense = true;
  static const Shape kScalar;
  const Shape* shapes[kMaxInputs];
  for (int k = 0; k < kMaxInputs; ++k) {
    shapes[k] = &kScalar;
    if (k >= num_inputs) continue;
    const TensorView& in = ctx.inputs[static_cast<size_t>(k)];
    if (in.dtype != out.dtype) {
      ctx.fail(ErrorCode::kUnsupported, "input ", k, " has dtype ", dtype_name(in.dtype),
               ", expected ", dtype_name(out.dtype));
    }
    shapes[k] = &in.shape;
    if (in.numel() == 1) {
      params.scalar_mask |= 1u << k;
    } else if (in.numel() != out.numel()) {
      state->dense = false;  // a broadcast operand: same numel as the output means the same layout
    }
  }
  if (state->dense) {
    state->walk = dense_indexer<kMaxInputs>(params.n);
    for (int k = 0; k < kMaxInputs; ++k) {
      if (k >= num_inputs || ((params.scalar_mask >> k) & 1u)) state->walk.strides[k][0] = 0;
    }
  } else {
    params.indexer = make_broadcast_indexer<kMaxInputs>(ctx, out.shape, shapes);
    state->walk = params.indexer;
  }
  params.packed_mask = packed_operands(state->walk);
  return state;
}

template <typename T, bool kDense, typename Index, int W>
void launch_with_registers(const LaunchContext& ctx, const FusedParams& params) {
  const auto packs = static_cast<Index>(params.n / W);
  const unsigned grid = grid_for(packs);
  if (params.program.num_registers <= 8) {
    fused_elementwise_kernel<T, 8, kDense, Index, W><<<grid, kBlockSize, 0, ctx.stream>>>(params, packs);
  } else if (params.program.num_registers <= 16) {
    fused_elementwise_kernel<T, 16, kDense, Index, W><<<grid, kBlockSize, 0, ctx.stream>>>(params, packs);
  } else {
    fused_elementwise_kernel<T, ops::kFusedMaxRegisters, kDense, Index, W>
        <<<grid, kBlockSize, 0, ctx.stream>>>(params, packs);
  }
}

void launch_fused(LaunchContext& ctx) {
  const auto* state = dynamic_cast<const FusedState*>(ctx.state);
  if (state == nullptr) ctx.fail(ErrorCode::kInternal, "launched without a prepared state");
  FusedParams params = state->params;
  params.n = ctx.outputs[0].numel();
  if (params.n == 0) return;
  if (ctx.inputs.size() != static_cast<size_t>(params.num_inputs)) {
    ctx.fail(ErrorCode::kInternal, "prepared for ", params.num_inputs, " inputs, launched with ",
             ctx.inputs.size());
  }
  for (int k = 0; k < params.num_inputs; ++k)
    params.inputs[k] = ctx.inputs[static_cast<size_t>(k)].data;
  params.output = ctx.outputs[0].data;
  dispatch_float(ctx, ctx.outputs[0].dtype, [&]<typename T>() {
    // Packs of 16 bytes for 16-bit types only: float32 programs are register-heavy already.
    constexpr int kWidth = sizeof(T) == 2 ? pack_width<T>() : 1;
    const void* pointers[kMaxInputs] = {};
    for (int k = 0; k < params.num_inputs; ++k) pointers[k] = params.inputs[k];
    const bool packable = can_pack(state->walk, kWidth, sizeof(T), pointers, params.output);
    dispatch_index_and_width<kWidth>(params.n, packable, [&]<typename Index, int W>() {
      if (state->dense) {
        launch_with_registers<T, true, Index, W>(ctx, params);
      } else {
        launch_with_registers<T, false, Index, W>(ctx, params);
      }
    });
  });
  check_launch(ctx);
}

}  // namespace

void register_fused_kernels(CudaKernelRegistry& registry) {
  registry.add("FusedElementwise", CudaKernel{prepare_fused, launch_fused});
}

}  // namespace kiln::cuda
