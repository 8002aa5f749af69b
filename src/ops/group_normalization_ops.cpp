// InstanceNormalization, GroupNormalization: op definitions (shape and dtype inference) and their
// shared geometry (group_norm_geometry.hpp).
//
// Both compute y = (x - mean) / sqrt(variance + epsilon) * scale + bias with mean and (biased)
// variance over each (n, group) of X [N, C, D...]; InstanceNormalization has one group per
// channel. scale and bias are per channel ([C], opset 21), or per group ([num_groups], the
// deprecated opset-18 GroupNormalization form, recognised by size when num_groups != C).
// Statistics are always computed in float32 or wider, whatever stash_type says.
#include "ops/group_norm_geometry.hpp"
#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

bool is_known(int64_t dim) {
  return dim != kDynamicDim;
}

// The element count of a 1-D parameter, kDynamicDim when unknown; fails for other ranks.
int64_t param_length(const NodeRef& node, const Shape& shape, const char* what) {
  if (shape.size() != 1) {
    node.fail(ErrorCode::kInvalidArgument, what, " must be 1-D, got ", shape_to_string(shape));
  }
  return shape[0];
}

GroupNormGeometry resolve(const NodeRef& node, const AttributeMap& attrs, const Shape& x,
                          const Shape& scale, const Shape& bias) {
  const bool group_norm = node.op == "GroupNormalization";
  GroupNormGeometry g;
  g.epsilon = attrs.get_float_or("epsilon", 1e-5f);
  if (x.size() < 2) {
    node.fail(ErrorCode::kInvalidArgument, "X must have rank >= 2 [N, C, ...], got ",
              shape_to_string(x));
  }
  g.batch = x[0];
  g.channels = x[1];
  g.spatial = nn::product_or_dynamic(x, 2, x.size());
  if (group_norm) {
    if (!attrs.has("num_groups")) {
      node.fail(ErrorCode::kInvalidArgument, "missing required attribute 'num_groups'");
    }
    g.groups = attrs.get_int("num_groups");
    if (g.groups <= 0) {
      node.fail(ErrorCode::kInvalidArgument, "attribute 'num_groups' must be > 0, got ", g.groups);
    }
    const int64_t stash = attrs.get_int_or("stash_type", 1);
    if (stash != static_cast<int64_t>(DType::kFloat32) &&
        stash != static_cast<int64_t>(DType::kFloat16) &&
        stash != static_cast<int64_t>(DType::kBFloat16) &&
        stash != static_cast<int64_t>(DType::kFloat64)) {
      node.fail(ErrorCode::kUnsupported,
                "attribute 'stash_type' must be a float dtype (1, 10, 11 or 16), got ", stash);
    }
    if (is_known(g.channels) && g.channels % g.groups != 0) {
      node.fail(ErrorCode::kInvalidArgument, "channels C = ", g.channels, " (dim 1 of X ",
                shape_to_string(x), ") is not divisible by num_groups = ", g.groups);
    }
  } else {
    g.groups = g.channels;
  }
  const int64_t scale_length = param_length(node, scale, "scale (input 1)");
  const int64_t bias_length = param_length(node, bias, "B (input 2)");
  // Per group only when the sizes say so unambiguously; num_groups == C is the same either way.
  g.per_group_affine = group_norm && is_known(scale_length) && scale_length == g.groups &&
                       scale_length != g.channels;
  const int64_t expected = g.per_group_affine ? g.groups : g.channels;
  const auto check = [&](int64_t length, const Shape& shape, const char* what) {
    if (!is_known(length) || !is_known(expected) || length == expected) return;
    if (group_norm) {
      node.fail(ErrorCode::kInvalidArgument, what, " has shape ", shape_to_string(shape),
                ", expected [", g.channels, "] (one per channel of X ", shape_to_string(x),
                ") or, in the opset-18 form, [num_groups] = [", g.groups,
                "] for both scale and bias");
    }
    node.fail(ErrorCode::kInvalidArgument, what, " has shape ", shape_to_string(shape),
              ", expected [", g.channels, "] (the channels of X ", shape_to_string(x), ")");
  };
  check(scale_length, scale, "scale (input 1)");
  check(bias_length, bias, "B (input 2)");
  return g;
}

void infer_group_norm(InferContext& ctx) {
  const char* names[] = {"X", "scale", "B"};
  for (size_t i = 0; i < 3; ++i) nn::require_float_input(ctx, i, names[i]);
  resolve_group_norm(node_ref(ctx), ctx.attrs(), ctx.input(0).shape, ctx.input(1).shape,
                     ctx.input(2).shape);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = ctx.input(0).shape;
  ctx.link_same_shape(0, 0);
}

}  // namespace

GroupNormGeometry resolve_group_norm(const NodeRef& node, const AttributeMap& attrs, const Shape& x,
                                     const Shape& scale, const Shape& bias) {
  try {
    return resolve(node, attrs, x, scale, bias);
  } catch (const Error& error) {
    // Attribute getters name the attribute but not the node.
    nn::rethrow_with_node(nn::NodeLabel{node.name, node.op}, error);
  }
}

void register_group_normalization_ops(OpRegistry& registry) {
  registry.add(OpDef{"InstanceNormalization", 3, 3, 1, 1, {}, &infer_group_norm});
  registry.add(OpDef{"GroupNormalization", 3, 3, 1, 1, {}, &infer_group_norm});
}

}  // namespace kiln::ops
