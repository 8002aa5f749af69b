// SwiGLU (opset 28): Y = A * sigmoid(alpha * A) * B, A the gate and B the value, of one shape
// and dtype (no broadcasting).
//   SwiGLU(A, B) -> Y
#include <cmath>

#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

void infer_swiglu(InferContext& ctx) {
  const DType dtype = ctx.input(0).dtype;
  if (!nn::is_float_compute_dtype(dtype) && dtype != DType::kFloat64) {
    nn::fail_at(nn::label_of(ctx), ErrorCode::kUnsupported, "input 0 (A) has dtype ",
                dtype_name(dtype), "; supported: float32, float16, bfloat16, float64");
  }
  if (ctx.input(1).dtype != dtype) {
    ctx.fail("input 1 (B) has dtype ", dtype_name(ctx.input(1).dtype), " but A has ",
             dtype_name(dtype));
  }
  const Shape& a = ctx.input(0).shape;
  const Shape& b = ctx.input(1).shape;
  bool same = a.size() == b.size();
  Shape out = a;
  for (size_t i = 0; same && i < a.size(); ++i) {
    same = a[i] == b[i] || a[i] == kDynamicDim || b[i] == kDynamicDim;
    if (out[i] == kDynamicDim) out[i] = b[i];
  }
  if (!same) {
    ctx.fail("inputs 0 (A) ", shape_to_string(a), " and 1 (B) ", shape_to_string(b),
             " must have the same shape (SwiGLU does not broadcast)");
  }
  const float alpha = ctx.attrs().get_float_or("alpha", 1.0f);
  if (!std::isfinite(alpha)) ctx.fail("attribute 'alpha' must be finite, got ", alpha);
  ctx.output(0).dtype = dtype;
  ctx.output(0).shape = out;
}

}  // namespace

void register_swiglu_ops(OpRegistry& registry) {
  registry.add(OpDef{"SwiGLU", 2, 2, 1, 1, {}, &nn::infer_with_node_errors<infer_swiglu>});
}

}  // namespace kiln::ops
