// Bitwise ops on integers: BitwiseAnd, BitwiseOr, BitwiseXor, BitwiseNot and BitShift. Integer-only
// (no formula in the scalar table, which fusion groups compute in float), so they are a family of
// their own; the CPU kernels are in backends/cpu/elementwise_kernels.cpp, and there are no CUDA
// kernels yet (a CUDA build refuses them, naming the layer).
#include <initializer_list>
#include <string>

#include "ops/op_families.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::ops {
namespace {

constexpr std::initializer_list<DType> kIntegerTypes = {DType::kInt8,  DType::kInt16,  DType::kInt32,
                                                        DType::kInt64, DType::kUInt8,  DType::kUInt16,
                                                        DType::kUInt32, DType::kUInt64};

void infer_bitwise(InferContext& ctx) {
  const DType dtype = ctx.input(0).dtype;
  require_dtype(ctx, "input 0", dtype, kIntegerTypes);
  Shape shape = ctx.input(0).shape;
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    if (ctx.input(i).dtype != dtype) {
      ctx.fail("input ", i, " has dtype ", dtype_name(ctx.input(i).dtype), " but input 0 has ", dtype_name(dtype),
               "; they must match");
    }
    shape = broadcast_shapes(ctx, shape, ctx.input(i).shape);
  }
  ctx.output(0).dtype = dtype;
  ctx.output(0).shape = shape;
  ctx.link_broadcast(0);
}

// BitShift takes integers (signed ones since opset 28) and a required direction.
void infer_bit_shift(InferContext& ctx) {
  const std::string direction = string_attr(ctx, "direction", "");
  if (direction != "LEFT" && direction != "RIGHT") {
    ctx.fail("attribute 'direction' must be \"LEFT\" or \"RIGHT\", got \"", direction, "\"");
  }
  infer_bitwise(ctx);
}

OpDef def(const char* name, int min_inputs, int max_inputs, InferFn infer) {
  return OpDef{name, min_inputs, max_inputs, 1, 1, {}, infer};
}

}  // namespace

void register_bitwise_ops(OpRegistry& registry) {
  for (const char* name : {"BitwiseAnd", "BitwiseOr", "BitwiseXor"}) registry.add(def(name, 2, 2, infer_bitwise));
  registry.add(def("BitwiseNot", 1, 1, infer_bitwise));
  registry.add(def("BitShift", 2, 2, infer_bit_shift));
}

}  // namespace kiln::ops
