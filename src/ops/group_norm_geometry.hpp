// InstanceNormalization / GroupNormalization geometry shared by the infer function and the CPU and
// CUDA kernels. Both normalise X [N, C, D...] over "rows": row r = (n, g) holds the C/G channels of
// group g for every spatial position, contiguous in memory. InstanceNormalization is the case
// G = C.
#pragma once

#include <cstdint>

#include "base/attributes.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::ops {

struct GroupNormGeometry {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t groups = 0;
  int64_t spatial = 0;  // product of X's dims after the channel dim (1 for rank 2)
  // GroupNormalization's opset-18 form: scale and bias have one value per group (size
  // num_groups != C) rather than one per channel.
  bool per_group_affine = false;
  float epsilon = 1e-5f;

  int64_t channels_per_group() const { return groups > 0 ? channels / groups : 0; }
  int64_t rows() const { return batch * groups; }
  int64_t row_length() const { return channels_per_group() * spatial; }
};

// Validates the attributes (epsilon, and for GroupNormalization num_groups > 0 and stash_type a
// float dtype) and the shapes: X of rank >= 2; C divisible by num_groups; scale and bias 1-D of
// size C, or, for GroupNormalization, both of size num_groups (opset-18 form). Dims may be
// kDynamicDim (the checks that need them are skipped and the geometry's fields are kDynamicDim
// then). Fails with kInvalidArgument (malformed) or kUnsupported (stash_type) naming the node.
GroupNormGeometry resolve_group_norm(const NodeRef& node, const AttributeMap& attrs, const Shape& x,
                                     const Shape& scale, const Shape& bias);

}  // namespace kiln::ops
