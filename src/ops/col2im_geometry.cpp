#include "ops/col2im_geometry.hpp"

#include "ops/nn_window.hpp"

namespace kiln::ops::nn {

Col2ImGeometry resolve_col2im(const NodeLabel& node, const AttributeMap& attrs, const Shape& input,
                              const std::vector<int64_t>& image_shape,
                              const std::vector<int64_t>& block_shape) {
  if (input.size() != 3) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 0 must be 3-D [N, C * prod(block_shape), L], got ", shape_to_string(input));
  }
  const size_t spatial = image_shape.size();
  if (spatial == 0) fail_at(node, ErrorCode::kInvalidArgument, "input 1 (image_shape) is empty");
  if (block_shape.size() != spatial) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 2 (block_shape) has ", block_shape.size(),
            " entries but input 1 (image_shape) has ", spatial);
  }
  Col2ImGeometry g;
  g.image = image_shape;
  g.block = block_shape;
  for (size_t i = 0; i < spatial; ++i) {
    if (image_shape[i] < 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 1 (image_shape) entries must be >= 1, got ",
              list_to_string(image_shape));
    }
    if (block_shape[i] < 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 2 (block_shape) entries must be >= 1, got ",
              list_to_string(block_shape));
    }
  }
  g.strides = read_axis_attribute(node, attrs, "strides", spatial, 1, 1);
  g.dilations = read_axis_attribute(node, attrs, "dilations", spatial, 1, 1);
  const std::vector<int64_t> pads = read_axis_attribute(node, attrs, "pads", 2 * spatial, 0, 0);
  g.pad_begin.assign(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(spatial));
  int64_t block_count = 1;
  int64_t window_size = 1;
  for (size_t i = 0; i < spatial; ++i) {
    const int64_t span = g.dilations[i] * (g.block[i] - 1) + 1;
    const int64_t padded = g.image[i] + pads[i] + pads[i + spatial];
    if (padded < span) {
      fail_at(node, ErrorCode::kInvalidArgument, "axis ", i, ": the block (", g.block[i],
              " with dilation ", g.dilations[i], ") does not fit the padded image extent ", padded);
    }
    g.blocks.push_back((padded - span) / g.strides[i] + 1);
    block_count *= g.blocks.back();
    window_size *= g.block[i];
  }
  if (input[2] != kDynamicDim && input[2] != block_count) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 0 dim 2 is ", input[2], ", expected ",
            block_count, " (the sliding blocks ", list_to_string(g.blocks),
            " that image_shape, block_shape, strides, dilations and pads give)");
  }
  if (input[1] != kDynamicDim) {
    if (input[1] % window_size != 0) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 0 dim 1 (", input[1],
              ") is not divisible by prod(block_shape) = ", window_size);
    }
    g.channels = input[1] / window_size;
  }
  g.output = {input[0], g.channels};
  g.output.insert(g.output.end(), g.image.begin(), g.image.end());
  return g;
}

}  // namespace kiln::ops::nn
