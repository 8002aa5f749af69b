#include "ops/nn_reduce_axes.hpp"

namespace kiln::ops::nn {

std::vector<bool> reduce_axis_mask(const NodeLabel& node, const std::vector<int64_t>& axes,
                                   size_t rank, bool noop_with_empty_axes) {
  if (axes.empty()) return std::vector<bool>(rank, !noop_with_empty_axes);
  std::vector<bool> mask(rank, false);
  const auto signed_rank = static_cast<int64_t>(rank);
  for (int64_t axis : axes) {
    if (axis < -signed_rank || axis >= signed_rank) {
      fail_at(node, ErrorCode::kInvalidArgument, "axis ", axis, " is out of range for rank ", rank);
    }
    const auto normalized = static_cast<size_t>(axis < 0 ? axis + signed_rank : axis);
    if (mask[normalized]) {
      fail_at(node, ErrorCode::kInvalidArgument, "axis ", axis, " is listed more than once");
    }
    mask[normalized] = true;
  }
  return mask;
}

Shape reduced_shape(const Shape& input, const std::vector<bool>& mask, bool keepdims) {
  Shape out;
  for (size_t i = 0; i < input.size(); ++i) {
    if (!mask[i]) {
      out.push_back(input[i]);
    } else if (keepdims) {
      out.push_back(1);
    }
  }
  return out;
}

bool reduce_accepts_integers(std::string_view op) {
  return op == "ReduceSum" || op == "ReduceProd" || op == "ReduceMax" || op == "ReduceMin";
}

bool read_flag(const NodeLabel& node, const AttributeMap& attrs, const char* name, bool fallback) {
  const int64_t value = attrs.get_int_or(name, fallback ? 1 : 0);
  if (value != 0 && value != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute '", name, "' must be 0 or 1, got ",
            value);
  }
  return value == 1;
}

}  // namespace kiln::ops::nn
