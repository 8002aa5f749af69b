// CumSum, ArgMax, ArgMin, TopK: op definitions (shape and dtype inference) and the host-side
// parameter helpers the CPU and CUDA kernels share (index_params.hpp).
//
// CumSum's axis and TopK's K are value inputs: a constant, or a value the runtime computes on the
// host while it propagates shapes. When unknown at build time, TopK's output extent along the axis
// is left dynamic and everything is checked again at run time.
#include <vector>

#include "ops/index_params.hpp"
#include "ops/nn_common.hpp"
#include "ops/nn_reduce_axes.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace index {

using nn::fail_at;
using nn::NodeLabel;

namespace {

int64_t normalized_axis(const NodeLabel& node, const char* what, int64_t axis, size_t rank) {
  const auto r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) {
    fail_at(node, ErrorCode::kInvalidArgument, what, " ", axis, " is out of range for rank ", rank,
            " (expected [", -r, ", ", r - 1, "])");
  }
  return axis < 0 ? axis + r : axis;
}

// Whether a value input holds exactly one element (scalar or 1-D of length 1); a dynamic length
// passes (checked at run time).
bool holds_one_element(const Shape& shape) {
  if (shape.empty()) return true;
  return shape.size() == 1 && (shape[0] == 1 || shape[0] == kDynamicDim);
}

}  // namespace

AxisLines lines_along(const Shape& shape, int64_t axis) {
  AxisLines lines;
  for (size_t d = 0; d < shape.size(); ++d) {
    const auto di = static_cast<int64_t>(d);
    if (di < axis) {
      lines.outer *= shape[d];
    } else if (di == axis) {
      lines.length = shape[d];
    } else {
      lines.inner *= shape[d];
    }
  }
  return lines;
}

bool is_index_data_dtype(DType dtype) {
  return nn::is_float_compute_dtype(dtype) || dtype == DType::kFloat64 || dtype == DType::kInt32 ||
         dtype == DType::kInt64 || dtype == DType::kUInt16 || dtype == DType::kUInt32 ||
         dtype == DType::kUInt64;
}

void require_index_data_dtype(const NodeLabel& node, DType dtype) {
  if (is_index_data_dtype(dtype)) return;
  fail_at(node, ErrorCode::kUnsupported, "input 0 has unsupported dtype ", dtype_name(dtype),
          "; supported: float32, float16, bfloat16, float64, int32, int64, uint16, uint32, uint64");
}

void check_cumsum_axis_input(const NodeLabel& node, DType dtype, const Shape& shape) {
  if (dtype != DType::kInt64 && dtype != DType::kInt32) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (axis) must be int32 or int64, got ",
            dtype_name(dtype));
  }
  if (!holds_one_element(shape)) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 1 (axis) must be a scalar or hold one element, got shape ",
            shape_to_string(shape));
  }
}

CumSumParams cumsum_params(const NodeLabel& node, const AttributeMap& attrs, size_t rank,
                           const TensorView& axis) {
  check_cumsum_axis_input(node, axis.dtype, axis.shape);
  if (axis.numel() != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (axis) must hold one element, got shape ",
            shape_to_string(axis.shape));
  }
  if (rank == 0) fail_at(node, ErrorCode::kInvalidArgument, "input 0 must have rank >= 1");
  CumSumParams params;
  params.axis = normalized_axis(node, "axis", read_index(axis, 0), rank);
  params.exclusive = nn::read_flag(node, attrs, "exclusive", false);
  params.reverse = nn::read_flag(node, attrs, "reverse", false);
  return params;
}

ArgReduceParams arg_reduce_params(const NodeLabel& node, const AttributeMap& attrs, size_t rank) {
  if (rank == 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 0 must have rank >= 1, got a scalar");
  }
  ArgReduceParams params;
  params.axis = normalized_axis(node, "axis", attrs.get_int_or("axis", 0), rank);
  params.keepdims = nn::read_flag(node, attrs, "keepdims", true);
  params.select_last_index = nn::read_flag(node, attrs, "select_last_index", false);
  return params;
}

Shape arg_reduce_shape(const Shape& input, const ArgReduceParams& params) {
  Shape out;
  for (size_t d = 0; d < input.size(); ++d) {
    if (static_cast<int64_t>(d) != params.axis) {
      out.push_back(input[d]);
    } else if (params.keepdims) {
      out.push_back(1);
    }
  }
  return out;
}

TopKParams topk_params(const NodeLabel& node, const AttributeMap& attrs, size_t rank) {
  if (rank == 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 0 (X) must have rank >= 1, got a scalar");
  }
  TopKParams params;
  params.axis = normalized_axis(node, "axis", attrs.get_int_or("axis", -1), rank);
  params.largest = nn::read_flag(node, attrs, "largest", true);
  params.sorted = nn::read_flag(node, attrs, "sorted", true);
  return params;
}

void check_topk_k_input(const NodeLabel& node, DType dtype, const Shape& shape) {
  if (dtype != DType::kInt64 && dtype != DType::kInt32) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (K) must be int64, got ",
            dtype_name(dtype));
  }
  if (!holds_one_element(shape)) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (K) must be a 1-D tensor of one element, ",
            "got shape ", shape_to_string(shape));
  }
}

int64_t topk_k(const NodeLabel& node, const TensorView& k, int64_t axis_length) {
  check_topk_k_input(node, k.dtype, k.shape);
  if (k.numel() != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (K) must hold one element, got shape ",
            shape_to_string(k.shape));
  }
  const int64_t value = read_index(k, 0);
  if (value < 0) fail_at(node, ErrorCode::kInvalidArgument, "K = ", value, " is negative");
  if (axis_length >= 0 && value > axis_length) {
    fail_at(node, ErrorCode::kInvalidArgument, "K = ", value, " is larger than the axis length ",
            axis_length);
  }
  return value;
}

}  // namespace index

namespace {

using nn::label_of;
using nn::NodeLabel;

void infer_cumsum(InferContext& ctx) {
  const NodeLabel node = label_of(ctx);
  index::require_index_data_dtype(node, ctx.input(0).dtype);
  const Shape& x = ctx.input(0).shape;
  const ValueInfo& axis = ctx.input(1);
  index::check_cumsum_axis_input(node, axis.dtype, axis.shape);
  if (x.empty()) ctx.fail("input 0 must have rank >= 1, got a scalar");
  if (axis.value) {
    index::cumsum_params(node, ctx.attrs(), x.size(), view_of(*axis.value));
  } else {
    nn::read_flag(node, ctx.attrs(), "exclusive", false);
    nn::read_flag(node, ctx.attrs(), "reverse", false);
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = x;
  ctx.link_same_shape(0, 0);
}

void infer_arg_reduce(InferContext& ctx) {
  const NodeLabel node = label_of(ctx);
  index::require_index_data_dtype(node, ctx.input(0).dtype);
  const Shape& x = ctx.input(0).shape;
  const index::ArgReduceParams params = index::arg_reduce_params(node, ctx.attrs(), x.size());
  if (x[static_cast<size_t>(params.axis)] == 0) {
    ctx.fail("cannot take ", ctx.op(), " over axis ", params.axis, " of length 0 (input shape ",
             shape_to_string(x), ")");
  }
  ctx.output(0).dtype = DType::kInt64;
  ctx.output(0).shape = index::arg_reduce_shape(x, params);
}

void infer_topk(InferContext& ctx) {
  const NodeLabel node = label_of(ctx);
  index::require_index_data_dtype(node, ctx.input(0).dtype);
  const Shape& x = ctx.input(0).shape;
  const index::TopKParams params = index::topk_params(node, ctx.attrs(), x.size());
  const ValueInfo& k = ctx.input(1);
  index::check_topk_k_input(node, k.dtype, k.shape);
  const auto axis = static_cast<size_t>(params.axis);
  Shape out = x;
  out[axis] = k.value ? index::topk_k(node, view_of(*k.value), x[axis]) : kDynamicDim;
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = out;
  ctx.output(1).dtype = DType::kInt64;
  ctx.output(1).shape = std::move(out);
}

}  // namespace

void register_index_ops(OpRegistry& registry) {
  registry.add(OpDef{"CumSum", 2, 2, 1, 1, {1}, &nn::infer_with_node_errors<infer_cumsum>});
  // CumProd (opset 26): CumSum's inputs, attributes and shapes, with products.
  registry.add(OpDef{"CumProd", 2, 2, 1, 1, {1}, &nn::infer_with_node_errors<infer_cumsum>});
  registry.add(OpDef{"ArgMax", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_arg_reduce>});
  registry.add(OpDef{"ArgMin", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_arg_reduce>});
  registry.add(OpDef{"TopK", 2, 2, 2, 2, {1}, &nn::infer_with_node_errors<infer_topk>});
}

}  // namespace kiln::ops
