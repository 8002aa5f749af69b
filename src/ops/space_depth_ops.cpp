// DepthToSpace, SpaceToDepth: op definitions (shape and dtype inference) and their shared
// geometry (space_depth_geometry.hpp).
//
// DepthToSpace (blocksize b, input [N, C, H, W]) gives [N, C/b^2, H*b, W*b]:
//   DCR (default): Y[n, c, h*b + i, w*b + j] = X[n, (i*b + j) * C/b^2 + c, h, w]
//   CRD:           Y[n, c, h*b + i, w*b + j] = X[n, c*b^2 + i*b + j, h, w]
// SpaceToDepth inverts them (mode since opset 28, DCR by default):
//   DCR: Y[n, (i*b + j) * C + c, h, w] = X[n, c, h*b + i, w*b + j]
//   CRD: Y[n, c*b^2 + i*b + j, h, w] = X[n, c, h*b + i, w*b + j]
#include <string>

#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"
#include "ops/space_depth_geometry.hpp"

namespace kiln::ops {
namespace {

// Blocks past this make blocksize^2 overflow int64; no tensor can have such dims anyway.
constexpr int64_t kMaxBlocksize = int64_t{1} << 31;

struct SpaceDepthParams {
  bool depth_to_space = true;
  bool crd = false;
  int64_t blocksize = 0;
};

SpaceDepthParams read_params(const NodeRef& node, const AttributeMap& attrs) {
  SpaceDepthParams p;
  p.depth_to_space = node.op == "DepthToSpace";
  if (!p.depth_to_space && node.op != "SpaceToDepth") {
    node.fail(ErrorCode::kInternal, "not a DepthToSpace/SpaceToDepth node");
  }
  try {
    if (!attrs.has("blocksize")) {
      node.fail(ErrorCode::kInvalidArgument, "missing required attribute 'blocksize'");
    }
    p.blocksize = attrs.get_int("blocksize");
    // SpaceToDepth has a mode since opset 28 (DCR before).
    const std::string mode = attrs.get_string_or("mode", "DCR");
    if (mode != "DCR" && mode != "CRD") {
      node.fail(ErrorCode::kInvalidArgument,
                "attribute 'mode' must be \"DCR\" or \"CRD\", got \"", mode, "\"");
    }
    p.crd = mode == "CRD";
  } catch (const Error& error) {
    nn::rethrow_with_node(nn::NodeLabel{node.name, node.op}, error);
  }
  if (p.blocksize <= 0 || p.blocksize > kMaxBlocksize) {
    node.fail(ErrorCode::kInvalidArgument, "attribute 'blocksize' must be in [1, ", kMaxBlocksize,
              "], got ", p.blocksize);
  }
  return p;
}

// a * b, or kDynamicDim when either is; fails on overflow.
int64_t scaled_dim(const NodeRef& node, int64_t dim, int64_t factor) {
  if (dim == kDynamicDim) return kDynamicDim;
  int64_t result = 0;
  if (__builtin_mul_overflow(dim, factor, &result)) {
    node.fail(ErrorCode::kInvalidArgument, "output dim ", dim, " * ", factor, " overflows");
  }
  return result;
}

void require_divisible(const NodeRef& node, const Shape& input, size_t axis, int64_t divisor,
                       const char* what) {
  const int64_t dim = input[axis];
  if (dim != kDynamicDim && dim % divisor != 0) {
    node.fail(ErrorCode::kInvalidArgument, what, " (dim ", axis, " of input ",
              shape_to_string(input), ") = ", dim, " is not divisible by ", divisor);
  }
}

void infer_space_depth(InferContext& ctx) {
  const NodeRef node = node_ref(ctx);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = space_depth_output_shape(node, ctx.attrs(), ctx.input(0).shape);
}

}  // namespace

Shape space_depth_output_shape(const NodeRef& node, const AttributeMap& attrs, const Shape& input) {
  const SpaceDepthParams p = read_params(node, attrs);
  if (input.size() != 4) {
    node.fail(ErrorCode::kInvalidArgument, "input must have rank 4 [N, C, H, W], got rank ",
              input.size(), " ", shape_to_string(input));
  }
  const int64_t b = p.blocksize;
  const int64_t block_area = b * b;
  if (p.depth_to_space) {
    require_divisible(node, input, 1, block_area, "channels C");
    const int64_t c = input[1] == kDynamicDim ? kDynamicDim : input[1] / block_area;
    return Shape{input[0], c, scaled_dim(node, input[2], b), scaled_dim(node, input[3], b)};
  }
  require_divisible(node, input, 2, b, "height H");
  require_divisible(node, input, 3, b, "width W");
  const int64_t h = input[2] == kDynamicDim ? kDynamicDim : input[2] / b;
  const int64_t w = input[3] == kDynamicDim ? kDynamicDim : input[3] / b;
  return Shape{input[0], scaled_dim(node, input[1], block_area), h, w};
}

SpaceDepthCopy resolve_space_depth(const NodeRef& node, const AttributeMap& attrs,
                                   const TensorView& in, const TensorView& out) {
  const Shape& input = in.shape;
  if (!shape_is_static(input)) {
    node.fail(ErrorCode::kInternal, "input shape ", shape_to_string(input), " is not static");
  }
  SpaceDepthCopy copy;
  copy.output = space_depth_output_shape(node, attrs, input);
  if (out.shape != copy.output || out.dtype != in.dtype) {
    node.fail(ErrorCode::kInvalidArgument, "output is ", dtype_name(out.dtype), " ",
              shape_to_string(out.shape), ", expected ", dtype_name(in.dtype), " ",
              shape_to_string(copy.output));
  }
  const SpaceDepthParams p = read_params(node, attrs);
  const int64_t b = p.blocksize;
  const int64_t n = input[0], c = input[1], h = input[2], w = input[3];
  const int64_t plane = h * w;
  const int64_t image = c * plane;
  if (p.depth_to_space) {
    // Output viewed as [N, C', H, b(i), W, b(j)].
    const int64_t out_channels = copy.output[1];
    copy.copy_dims = {n, out_channels, h, b, w, b};
    if (p.crd) {
      copy.input_strides = {image, b * b * plane, w, b * plane, 1, plane};
    } else {
      copy.input_strides = {image, plane, w, b * out_channels * plane, 1, out_channels * plane};
    }
  } else if (p.crd) {
    // Output viewed as [N, C, b(i), b(j), H', W'].
    copy.copy_dims = {n, c, b, b, copy.output[2], copy.output[3]};
    copy.input_strides = {image, plane, w, 1, b * w, b};
  } else {
    // Output viewed as [N, b(i), b(j), C, H', W'].
    copy.copy_dims = {n, b, b, c, copy.output[2], copy.output[3]};
    copy.input_strides = {image, w, 1, plane, b * w, b};
  }
  return copy;
}

void register_space_depth_ops(OpRegistry& registry) {
  registry.add(OpDef{"DepthToSpace", 1, 1, 1, 1, {}, &infer_space_depth});
  registry.add(OpDef{"SpaceToDepth", 1, 1, 1, 1, {}, &infer_space_depth});
}

}  // namespace kiln::ops
