// The integer matrix products and convolutions of ONNX (MatMulInteger, QLinearMatMul,
// ConvInteger, QLinearConv): geometry shared by their infer functions and CPU kernels. Each
// accumulates (x - x_zero_point) * (w - w_zero_point) in int32; the QLinear forms then requantize
// the sum with round half to even and saturation to the output dtype.
#pragma once

#include <cstdint>

#include "kiln/types.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::ops {

// A matrix product A [..., M, K] x B [..., K, N] (numpy matmul rules: a 1-D A is [1, K] and a
// 1-D B [K, 1], their unit axis dropped from the output; batch dims broadcast).
struct IntegerMatMulGeometry {
  Shape output;         // with kDynamicDim where the operands' dims are unknown
  Shape batch;          // the broadcast batch dims (output minus its matrix axes)
  Shape a_batch;        // A's batch dims, B's batch dims (for broadcast strides)
  Shape b_batch;
  int64_t m = 1, k = 1, n = 1;
};

// Fails kInvalidArgument naming the node when a rank is 0, the inner dims differ or the batch
// dims do not broadcast.
IntegerMatMulGeometry resolve_integer_matmul(const NodeRef& node, const Shape& a, const Shape& b);

// How a zero point or scale spreads over a matrix operand: one value, or one per row (A: M of
// them) or per column (B and the output: N of them).
enum class QuantAxis { kTensor, kRow, kColumn };

// The layout of a zero point or scale of shape `param` for the operand named `what`: one element
// (any rank) is per tensor; a 1-D tensor of `per_axis_length` elements is per `per_axis` (row or
// column). `per_axis_length` may be kDynamicDim (then not checked). Fails kInvalidArgument naming
// the node, the input and the shapes otherwise.
QuantAxis resolve_quant_axis(const NodeRef& node, const char* what, const Shape& param,
                             QuantAxis per_axis, int64_t per_axis_length);

}  // namespace kiln::ops
