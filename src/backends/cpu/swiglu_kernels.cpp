// SwiGLU on the CPU: Y = A * sigmoid(alpha * A) * B in float32 (float16 and bfloat16 arrive
// converted) or float64.
#include <cmath>

#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/tensor_dispatch.hpp"

namespace kiln::cpu {
namespace {

template <typename T>
void swiglu(const T* gate, const T* value, T* out, int64_t count, T alpha) {
  for (int64_t i = 0; i < count; ++i) {
    const T a = gate[i];
    out[i] = a / (T{1} + std::exp(-alpha * a)) * value[i];
  }
}

void swiglu_kernel(KernelContext& ctx) {
  const TensorView& a = ctx.inputs[0];
  const TensorView& b = ctx.inputs[1];
  if (a.shape != b.shape || a.dtype != b.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "inputs 0 (A) ", dtype_name(a.dtype),
             shape_to_string(a.shape), " and 1 (B) ", dtype_name(b.dtype), shape_to_string(b.shape),
             " must have the same dtype and shape");
  }
  nn::require_output_shape(ctx, 0, a.shape);
  const double alpha = ctx.attrs.get_float_or("alpha", 1.0f);
  const bool done = dispatch_among<KILN_FLOAT_TYPES>(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    swiglu<T>(a.as<const T>(), b.as<const T>(), ctx.outputs[0].as<T>(), a.numel(),
              static_cast<T>(alpha));
  });
  if (!done) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 (A) has unsupported dtype ", dtype_name(a.dtype),
             "; supported: float32, float16, bfloat16, float64");
  }
}

}  // namespace

void register_swiglu_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<swiglu_kernel>(registry, "SwiGLU");
}

}  // namespace kiln::cpu
