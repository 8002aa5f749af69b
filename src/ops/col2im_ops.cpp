// Col2Im (opset 18): input, image_shape, block_shape; see col2im_geometry.hpp.
#include <vector>

#include "ops/col2im_geometry.hpp"
#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;

// Input `index` (a 1-D int64 list): its values when known; else clears `known` and returns {}.
std::vector<int64_t> known_list(const InferContext& ctx, size_t index, const char* what,
                                bool& known) {
  const ValueInfo& info = ctx.input(index);
  if (info.dtype != DType::kInt64) {
    ctx.fail("input ", index, " (", what, ") must be int64, got ", dtype_name(info.dtype));
  }
  if (info.shape.size() != 1) {
    ctx.fail("input ", index, " (", what, ") must be 1-D, got shape ", shape_to_string(info.shape));
  }
  if (!info.value) {
    known = false;
    return {};
  }
  return read_indices(view_of(*info.value));
}

void infer_col2im(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "input");
  const Shape& x = ctx.input(0).shape;
  if (x.size() != 3) {
    ctx.fail("input 0 must be 3-D [N, C * prod(block_shape), L], got ", shape_to_string(x));
  }
  bool known = true;
  const std::vector<int64_t> image = known_list(ctx, 1, "image_shape", known);
  const std::vector<int64_t> block = known_list(ctx, 2, "block_shape", known);
  ctx.output(0).dtype = ctx.input(0).dtype;
  if (!known) {
    // The values come at run time: the rank is known when image_shape's length is.
    const int64_t spatial = ctx.input(1).shape[0];
    if (spatial == kDynamicDim) ctx.fail("input 1 (image_shape) must have a known length");
    ctx.output(0).shape = Shape(static_cast<size_t>(spatial) + 2, kDynamicDim);
    ctx.output(0).shape[0] = x[0];
    return;
  }
  ctx.output(0).shape = nn::resolve_col2im(label_of(ctx), ctx.attrs(), x, image, block).output;
}

}  // namespace

void register_col2im_ops(OpRegistry& registry) {
  registry.add(OpDef{"Col2Im", 3, 3, 1, 1, {1, 2}, &nn::infer_with_node_errors<infer_col2im>});
}

}  // namespace kiln::ops
