#include "ops/nn_common.hpp"

#include <string>

namespace kiln::ops::nn {

void rethrow_with_node(const NodeLabel& node, const Error& error) {
  const std::string prefix = detail::concat("node '", node.name, "'");
  const std::string message = error.what();
  if (message.rfind(prefix, 0) == 0) throw error;
  fail_at(node, error.code(), message);
}

bool is_float_compute_dtype(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

void require_float_input(const InferContext& ctx, size_t index, std::string_view what) {
  const DType dtype = ctx.input(index).dtype;
  if (!is_float_compute_dtype(dtype)) {
    fail_at(label_of(ctx), ErrorCode::kUnsupported, "input ", index, " (", what, ") has dtype ",
            dtype_name(dtype), "; supported: float32, float16, bfloat16");
  }
}

void require_float_or_float64_input(const InferContext& ctx, size_t index, std::string_view what) {
  const DType dtype = ctx.input(index).dtype;
  if (!is_float_compute_dtype(dtype) && dtype != DType::kFloat64) {
    fail_at(label_of(ctx), ErrorCode::kUnsupported, "input ", index, " (", what, ") has dtype ",
            dtype_name(dtype), "; supported: float32, float16, bfloat16, float64");
  }
}

void require_same_dtype(const InferContext& ctx, size_t index, std::string_view what) {
  if (ctx.input(index).dtype != ctx.input(0).dtype) {
    ctx.fail("input ", index, " (", what, ") has dtype ", dtype_name(ctx.input(index).dtype),
             " but X has ", dtype_name(ctx.input(0).dtype));
  }
}

void require_min_rank(const InferContext& ctx, size_t index, std::string_view what,
                      size_t min_rank) {
  const Shape& shape = ctx.input(index).shape;
  if (shape.size() < min_rank) {
    ctx.fail("input ", index, " (", what, ") must have rank >= ", min_rank, ", got rank ",
             shape.size(), " ", shape_to_string(shape));
  }
}

int64_t product_or_dynamic(const Shape& shape, size_t begin, size_t end) {
  int64_t product = 1;
  for (size_t i = begin; i < end; ++i) {
    if (shape[i] < 0) return kDynamicDim;
    product *= shape[i];
  }
  return product;
}

std::vector<int64_t> row_major_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * shape[i];
  return strides;
}

}  // namespace kiln::ops::nn
