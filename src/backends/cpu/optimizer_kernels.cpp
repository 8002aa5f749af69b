// Adagrad, Adam and Momentum (ai.onnx.preview.training) on the CPU: one update step per optimized
// tensor, computed in double and stored in the tensor's dtype (float32 or float64), following the
// formulas of the ONNX operator definitions.
#include <cmath>
#include <string>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/optimizer.hpp"

namespace kiln::cpu {
namespace {

double scalar_value(const TensorView& t) {
  return t.dtype == DType::kFloat64 ? *t.as<const double>()
                                    : static_cast<double>(*t.as<const float>());
}

template <typename T>
const T* in(const KernelContext& ctx, size_t index) {
  return ctx.inputs[index].as<const T>();
}

template <typename T>
void adagrad(const KernelContext& ctx, size_t tensors, size_t t, double r, int64_t step) {
  const double decay = ctx.attrs.get_float_or("decay_factor", 0.0f);
  const double epsilon = ctx.attrs.get_float_or("epsilon", 1e-6f);
  const double norm = ctx.attrs.get_float_or("norm_coefficient", 0.0f);
  const double rate = r / (1.0 + static_cast<double>(step) * decay);
  const T* x = in<T>(ctx, 2 + t);
  const T* g = in<T>(ctx, 2 + tensors + t);
  const T* h = in<T>(ctx, 2 + 2 * tensors + t);
  T* x_new = ctx.outputs[t].as<T>();
  T* h_new = ctx.outputs[tensors + t].as<T>();
  for (int64_t i = 0; i < ctx.inputs[2 + t].numel(); ++i) {
    const double g_reg = norm * x[i] + g[i];
    const double h_next = h[i] + g_reg * g_reg;
    h_new[i] = static_cast<T>(h_next);
    x_new[i] = static_cast<T>(x[i] - rate * g_reg / (std::sqrt(h_next) + epsilon));
  }
}

template <typename T>
void adam(const KernelContext& ctx, size_t tensors, size_t t, double r, int64_t step) {
  const double alpha = ctx.attrs.get_float_or("alpha", 0.9f);
  const double beta = ctx.attrs.get_float_or("beta", 0.999f);
  const double epsilon = ctx.attrs.get_float_or("epsilon", 1e-6f);
  const double norm = ctx.attrs.get_float_or("norm_coefficient", 0.0f);
  const double norm_post = ctx.attrs.get_float_or("norm_coefficient_post", 0.0f);
  // Bias correction from the second step on (T > 0).
  const double rate =
      step > 0 ? r * std::sqrt(1.0 - std::pow(beta, static_cast<double>(step))) /
                     (1.0 - std::pow(alpha, static_cast<double>(step)))
               : r;
  const T* x = in<T>(ctx, 2 + t);
  const T* g = in<T>(ctx, 2 + tensors + t);
  const T* v = in<T>(ctx, 2 + 2 * tensors + t);
  const T* h = in<T>(ctx, 2 + 3 * tensors + t);
  T* x_new = ctx.outputs[t].as<T>();
  T* v_new = ctx.outputs[tensors + t].as<T>();
  T* h_new = ctx.outputs[2 * tensors + t].as<T>();
  for (int64_t i = 0; i < ctx.inputs[2 + t].numel(); ++i) {
    const double g_reg = norm * x[i] + g[i];
    const double v_next = alpha * v[i] + (1.0 - alpha) * g_reg;
    const double h_next = beta * h[i] + (1.0 - beta) * g_reg * g_reg;
    v_new[i] = static_cast<T>(v_next);
    h_new[i] = static_cast<T>(h_next);
    const double x_next = x[i] - rate * (v_next / (std::sqrt(h_next) + epsilon));
    x_new[i] = static_cast<T>((1.0 - norm_post) * x_next);
  }
}

template <typename T>
void momentum(const KernelContext& ctx, size_t tensors, size_t t, double r, int64_t step) {
  const double alpha = ctx.attrs.get_float("alpha");
  const double beta = ctx.attrs.get_float("beta");
  const double norm = ctx.attrs.get_float("norm_coefficient");
  const bool nesterov = ctx.attrs.get_string("mode") == "nesterov";
  // The gradient's coefficient is 1 at the first step (T == 0).
  const double beta_adjusted = step > 0 ? beta : 1.0;
  const T* x = in<T>(ctx, 2 + t);
  const T* g = in<T>(ctx, 2 + tensors + t);
  const T* v = in<T>(ctx, 2 + 2 * tensors + t);
  T* x_new = ctx.outputs[t].as<T>();
  T* v_new = ctx.outputs[tensors + t].as<T>();
  for (int64_t i = 0; i < ctx.inputs[2 + t].numel(); ++i) {
    const double g_reg = norm * x[i] + g[i];
    const double v_next = alpha * v[i] + beta_adjusted * g_reg;
    v_new[i] = static_cast<T>(v_next);
    x_new[i] = static_cast<T>(nesterov ? x[i] - r * (g_reg + alpha * v_next) : x[i] - r * v_next);
  }
}

template <typename T>
void update_tensor(const KernelContext& ctx, size_t tensors, size_t t, double r, int64_t step) {
  if (ctx.op == "Adagrad") {
    adagrad<T>(ctx, tensors, t, r, step);
  } else if (ctx.op == "Adam") {
    adam<T>(ctx, tensors, t, r, step);
  } else {
    momentum<T>(ctx, tensors, t, r, step);
  }
}

void optimizer_kernel(KernelContext& ctx) {
  const size_t groups = ops::optimizer_arity(ctx.op).groups;
  const size_t tensors = (ctx.inputs.size() - 2) / groups;
  if (ctx.inputs.size() != 2 + groups * tensors || ctx.outputs.size() != (groups - 1) * tensors) {
    ctx.fail(ErrorCode::kInvalidArgument, "got ", ctx.inputs.size(), " inputs and ",
             ctx.outputs.size(), " outputs, which do not make whole groups of ", groups);
  }
  const double r = scalar_value(ctx.inputs[0]);
  const int64_t step = *ctx.inputs[1].as<const int64_t>();
  for (size_t t = 0; t < tensors; ++t) {
    const DType dtype = ctx.inputs[2 + t].dtype;
    for (size_t g = 0; g < groups; ++g) {
      const TensorView& view = ctx.inputs[2 + g * tensors + t];
      if (view.dtype != dtype || view.shape != ctx.inputs[2 + t].shape) {
        ctx.fail(ErrorCode::kInvalidArgument, "input ", 2 + g * tensors + t, " is ",
                 dtype_name(view.dtype), shape_to_string(view.shape), ", expected ",
                 dtype_name(dtype), shape_to_string(ctx.inputs[2 + t].shape));
      }
    }
    if (dtype == DType::kFloat64) {
      update_tensor<double>(ctx, tensors, t, r, step);
    } else if (dtype == DType::kFloat32) {
      update_tensor<float>(ctx, tensors, t, r, step);
    } else {
      ctx.fail(ErrorCode::kUnsupported, "input ", 2 + t, " has unsupported dtype ",
               dtype_name(dtype), "; supported: float32, float64");
    }
  }
}

}  // namespace

void register_optimizer_kernels(CpuKernelRegistry& registry) {
  // float_compute off: float16 never reaches these ops (their infer refuses it).
  for (const char* op : {"Adagrad", "Adam", "Momentum"}) {
    registry.add(op, CpuKernel{&nn::kernel_with_node_errors<optimizer_kernel>, false});
  }
}

}  // namespace kiln::cpu
