// The ai.onnx.preview.training optimizers (opset 1): Adagrad, Adam and Momentum. Each is one
// update step, plain arithmetic on its inputs, so an inference engine can run it:
//   Adagrad(R, T, X1..Xn, G1..Gn, H1..Hn)        -> X1_new..Xn_new, H1_new..Hn_new
//   Adam(R, T, X1..Xn, G1..Gn, V1..Vn, H1..Hn)   -> X_new.., V_new.., H_new..
//   Momentum(R, T, X1..Xn, G1..Gn, V1..Vn)       -> X_new.., V_new..
// R is the scalar learning rate (float32 or float64), T the scalar int64 update count; each Xi,
// Gi, Vi, Hi group shares one shape and a float32 or float64 dtype. The importer maps these
// ops from their domain (src/frontend/onnx); Gradient, the domain's fourth op, stays refused.
#include <string>

#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"
#include "ops/optimizer.hpp"

namespace kiln::ops {

OptimizerArity optimizer_arity(std::string_view op) {
  if (op == "Adagrad") return {3, {"X", "G", "H"}};
  if (op == "Adam") return {4, {"X", "G", "V", "H"}};
  return {3, {"X", "G", "V"}};  // Momentum
}

namespace {

bool is_float_or_double(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat64;
}

void require_scalar(const InferContext& ctx, size_t index, std::string_view what) {
  const Shape& shape = ctx.input(index).shape;
  if (!shape.empty()) {
    ctx.fail("input ", index, " (", what, ") must be a scalar, got shape ", shape_to_string(shape));
  }
}

void check_attributes(const InferContext& ctx) {
  const AttributeMap& attrs = ctx.attrs();
  if (ctx.op() == "Momentum") {
    for (const char* name : {"alpha", "beta", "norm_coefficient", "mode"}) {
      if (!attrs.has(name)) ctx.fail("missing required attribute '", name, "'");
    }
    const std::string mode = attrs.get_string("mode");
    if (mode != "standard" && mode != "nesterov") {
      ctx.fail("attribute 'mode' must be \"standard\" or \"nesterov\", got \"", mode, "\"");
    }
  } else if (ctx.op() == "Adagrad") {
    const float epsilon = attrs.get_float_or("epsilon", 1e-6f);
    if (!(epsilon >= 0.0f)) ctx.fail("attribute 'epsilon' must be >= 0, got ", epsilon);
  } else {
    const float epsilon = attrs.get_float_or("epsilon", 1e-6f);
    if (!(epsilon >= 0.0f)) ctx.fail("attribute 'epsilon' must be >= 0, got ", epsilon);
  }
}

void infer_optimizer(InferContext& ctx) {
  check_attributes(ctx);
  const OptimizerArity arity = optimizer_arity(ctx.op());
  const size_t groups = arity.groups;
  const size_t inputs = ctx.num_inputs();
  if (inputs < 2 + groups || (inputs - 2) % groups != 0) {
    ctx.fail("takes R, T and ", groups, " inputs per optimized tensor (",
             arity.names[0], "..., ", arity.names[1], "...", groups > 2 ? ", ..." : "",
             "), got ", inputs, " inputs");
  }
  const size_t tensors = (inputs - 2) / groups;
  if (ctx.num_outputs() != tensors * (groups - 1)) {
    ctx.fail("has ", tensors, " optimized tensor(s), so it must have ", tensors * (groups - 1),
             " outputs, got ", ctx.num_outputs());
  }
  if (!is_float_or_double(ctx.input(0).dtype)) {
    nn::fail_at(nn::label_of(ctx), ErrorCode::kUnsupported, "input 0 (R) has dtype ",
                dtype_name(ctx.input(0).dtype), "; supported: float32, float64");
  }
  require_scalar(ctx, 0, "R");
  if (ctx.input(1).dtype != DType::kInt64) {
    ctx.fail("input 1 (T) must be int64, got ", dtype_name(ctx.input(1).dtype));
  }
  require_scalar(ctx, 1, "T");
  for (size_t t = 0; t < tensors; ++t) {
    const size_t x_index = 2 + t;
    const ValueInfo& x = ctx.input(x_index);
    if (!is_float_or_double(x.dtype)) {
      nn::fail_at(nn::label_of(ctx), ErrorCode::kUnsupported, "input ", x_index, " (X", t + 1,
                  ") has dtype ", dtype_name(x.dtype), "; supported: float32, float64");
    }
    Shape shape = x.shape;
    for (size_t g = 1; g < groups; ++g) {
      const size_t index = 2 + g * tensors + t;
      const ValueInfo& other = ctx.input(index);
      if (other.dtype != x.dtype) {
        ctx.fail("input ", index, " (", arity.names[g], t + 1, ") has dtype ",
                 dtype_name(other.dtype), " but X", t + 1, " has ", dtype_name(x.dtype));
      }
      bool same = other.shape.size() == shape.size();
      for (size_t d = 0; same && d < shape.size(); ++d) {
        same = shape[d] == other.shape[d] || shape[d] == kDynamicDim ||
               other.shape[d] == kDynamicDim;
        if (shape[d] == kDynamicDim) shape[d] = other.shape[d];
      }
      if (!same) {
        ctx.fail("input ", index, " (", arity.names[g], t + 1, ") has shape ",
                 shape_to_string(other.shape), " but X", t + 1, " has ",
                 shape_to_string(x.shape));
      }
    }
    for (size_t g = 0; g + 1 < groups; ++g) {
      ValueInfo& out = ctx.output(g * tensors + t);
      out.dtype = x.dtype;
      out.shape = shape;
    }
  }
}

}  // namespace

void register_optimizer_ops(OpRegistry& registry) {
  for (const char* name : {"Adagrad", "Adam", "Momentum"}) {
    registry.add(
        OpDef{name, 5, 1 << 20, 2, 1 << 20, {}, &nn::infer_with_node_errors<infer_optimizer>, false,
              "ai.onnx.preview.training"});
  }
}

}  // namespace kiln::ops
