// QuantizeLinear / DequantizeLinear (opsets 10-25) parameters shared by their infer function and
// kernels: how the scale (and zero point) spread over the input, and the dtypes each side takes.
#pragma once

#include <cstdint>
#include <optional>

#include "kiln/types.hpp"
#include "ops/tensor_op_utils.hpp"

// The CUDA kernels index scales with the same function as the CPU's.
#if defined(__CUDACC__)
#define KILN_QUANTIZE_INDEX_FN __host__ __device__ __forceinline__
#else
#define KILN_QUANTIZE_INDEX_FN inline
#endif

namespace kiln::ops {

// Fails naming input `input` (`name`, e.g. "y_scale") when its value is known at build time (a
// weight or a folded constant) and an element is not finite and greater than zero: quantizing
// divides by the scale, and a zero, negative or NaN one describes no quantization a runtime could
// honour. A scale computed at run time is not checked.
void check_known_scale(const InferContext& ctx, size_t input, const char* name);

// The input seen as [outer, axis_length, inner]; input element (o, a, i) uses scale element
// scale_index(o, a, i). Per-tensor: every stride 0. Per-axis: block 1, axis stride 1. Blocked
// (scale [outer..., blocks, inner...]): outer stride blocks * inner, axis stride inner, inner 1.
struct QuantizeLayout {
  int64_t outer = 1;
  int64_t axis_length = 1;
  int64_t inner = 1;
  int64_t block = 1;              // elements of the axis that share a scale
  int64_t scale_outer_stride = 0;  // scale elements per outer index (0: shared by all)
  int64_t scale_axis_stride = 0;   // scale elements per block (0: per-tensor)
  int64_t scale_inner_stride = 0;  // 1 for blocked scales, else 0

  KILN_QUANTIZE_INDEX_FN int64_t scale_index(int64_t o, int64_t a, int64_t i) const {
    return o * scale_outer_stride + (a / block) * scale_axis_stride + i * scale_inner_stride;
  }
};

// Validates `scale` (and `zero_point`, when given, which must have the scale's shape, or both one
// element) against
// `x` for the node's attributes `axis` and `block_size`: a scalar or one-element scale is
// per-tensor; with block_size 0 a 1-D scale of x.shape[axis] elements is per-axis; with
// block_size > 0 the scale has x's rank and ceil(x.shape[axis] / block_size) elements on the axis,
// x's dims elsewhere. Dims that are kDynamicDim are not checked (and the layout's sizes are then
// meaningless). Fails kInvalidArgument naming the node and the attribute or input.
QuantizeLayout resolve_quantize_layout(const NodeRef& node, const Shape& x, const Shape& scale,
                                       const std::optional<Shape>& zero_point, int64_t axis,
                                       int64_t block_size);

// The quantized dtypes kiln computes: int8, uint8, int16, uint16, int4, uint4, int2, uint2, the
// four float8 types and float4e2m1.
bool is_quantized_dtype(DType dtype);

}  // namespace kiln::ops
