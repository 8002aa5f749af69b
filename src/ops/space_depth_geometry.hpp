// DepthToSpace / SpaceToDepth geometry shared by the op's infer function and its CPU and CUDA
// kernels, so they never disagree: both ops are a transpose of a 6-D view of the NCHW input.
#pragma once

#include <cstdint>
#include <vector>

#include "base/attributes.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::ops {

// The output of DepthToSpace/SpaceToDepth (op chosen by node.op) for `input`, with kDynamicDim
// where an input dim is unknown. Validates attributes (blocksize > 0, mode DCR|CRD; SpaceToDepth
// has a mode since opset 28), rank 4 and the known dims' divisibility; fails with kInvalidArgument naming the
// node otherwise.
Shape space_depth_output_shape(const NodeRef& node, const AttributeMap& attrs, const Shape& input);

// The op as a strided copy of a dense NCHW input of static shape: the dense output is viewed as
// `copy_dims` (6-D), whose element at coordinate c is input[sum_d c_d * input_strides[d]].
struct SpaceDepthCopy {
  Shape output;
  Shape copy_dims;
  std::vector<int64_t> input_strides;
};
// `in` is the input, `out` the output the kernel was given: its dtype and shape are checked
// (kInvalidArgument naming the node).
SpaceDepthCopy resolve_space_depth(const NodeRef& node, const AttributeMap& attrs,
                                   const TensorView& in, const TensorView& out);

}  // namespace kiln::ops
