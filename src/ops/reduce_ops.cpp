// Reduce* ops (opset 18 form): data and an optional int64 `axes` input whose value decides the
// output shape; keepdims and noop_with_empty_axes attributes.
#include <vector>

#include "ops/nn_common.hpp"
#include "ops/nn_reduce_axes.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;

constexpr const char* kReduceOps[] = {
    "ReduceSum", "ReduceMean", "ReduceMax",       "ReduceMin",    "ReduceProd",
    "ReduceL1",  "ReduceL2",   "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"};

void require_reduce_dtype(const InferContext& ctx) {
  const DType dtype = ctx.input(0).dtype;
  if (nn::is_float_compute_dtype(dtype) || dtype == DType::kFloat64) return;
  if ((dtype == DType::kInt64 || dtype == DType::kInt32) && nn::reduce_accepts_integers(ctx.op())) {
    return;
  }
  // Opset 20 gave ReduceMax and ReduceMin bool inputs (any / all).
  const bool takes_bool = ctx.op() == "ReduceMax" || ctx.op() == "ReduceMin";
  if (dtype == DType::kBool && takes_bool) return;
  nn::fail_at(label_of(ctx), ErrorCode::kUnsupported, "input 0 (data) has unsupported dtype ",
              dtype_name(dtype),
              nn::reduce_accepts_integers(ctx.op())
                  ? (takes_bool ? "; supported: float32, float16, bfloat16, float64, int32, int64, bool"
                                : "; supported: float32, float16, bfloat16, float64, int32, int64")
                  : "; supported: float32, float16, bfloat16, float64");
}

void infer_reduce(InferContext& ctx) {
  require_reduce_dtype(ctx);
  const Shape& x = ctx.input(0).shape;
  const bool keepdims = nn::read_flag(label_of(ctx), ctx.attrs(), "keepdims", true);
  const bool noop = nn::read_flag(label_of(ctx), ctx.attrs(), "noop_with_empty_axes", false);
  ctx.output(0).dtype = ctx.input(0).dtype;

  std::vector<int64_t> axes;
  if (ctx.has_input(1)) {
    const ValueInfo& axes_info = ctx.input(1);
    if (axes_info.dtype != DType::kInt64 && axes_info.dtype != DType::kInt32) {
      ctx.fail("input 1 (axes) must be int64, got ", dtype_name(axes_info.dtype));
    }
    if (axes_info.shape.size() > 1) {
      ctx.fail("input 1 (axes) must be 1-D, got shape ", shape_to_string(axes_info.shape));
    }
    if (axes_info.value) {
      axes = read_indices(view_of(*axes_info.value));
    } else {
      const int64_t count = axes_info.shape.empty() ? 1 : axes_info.shape[0];
      if (count != 0) {
        // Axes unknown until run time: the rank is still known, the dims are not.
        Shape out;
        if (keepdims) {
          for (int64_t d : x) out.push_back(d == 1 ? 1 : kDynamicDim);
        } else if (count == kDynamicDim) {
          ctx.fail(
              "cannot infer the output rank: keepdims=0 and the axes input has an unknown "
              "length");
        } else if (count > static_cast<int64_t>(x.size())) {
          ctx.fail("axes input has ", count, " entries but data has rank ", x.size());
        } else {
          out.assign(x.size() - static_cast<size_t>(count), kDynamicDim);
        }
        ctx.output(0).shape = std::move(out);
        return;
      }
    }
  }
  const std::vector<bool> mask = nn::reduce_axis_mask(label_of(ctx), axes, x.size(), noop);
  ctx.output(0).shape = nn::reduced_shape(x, mask, keepdims);
  // Symbolic dims: the dims not reduced keep theirs (in place with keepdims, packed without).
  size_t out_dim = 0;
  for (size_t d = 0; d < x.size(); ++d) {
    if (!mask[d]) ctx.link_dim(0, out_dim, 0, d);
    if (!mask[d] || keepdims) ++out_dim;
  }
}

}  // namespace

void register_reduce_ops(OpRegistry& registry) {
  for (const char* name : kReduceOps) {
    registry.add(OpDef{name, 1, 2, 1, 1, {1}, &nn::infer_with_node_errors<infer_reduce>});
  }
}

}  // namespace kiln::ops
