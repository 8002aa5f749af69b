// CausalConvWithState (opset 27): see causal_conv.hpp.
//   CausalConvWithState(input, weight, bias?, past_state?) -> output, present_state?
#include <string>

#include "ops/causal_conv.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace nn {
namespace {


}  // namespace

CausalConvGeometry resolve_causal_conv(const NodeLabel& node, const AttributeMap& attrs,
                                       const Shape& input, const Shape& weight, const Shape* bias,
                                       const Shape* past_state) {
  CausalConvGeometry g;
  const std::string activation = attrs.get_string_or("activation", "none");
  if (activation != "none" && activation != "silu" && activation != "swish") {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'activation' must be none, silu or swish, got '", activation, "'");
  }
  g.silu = activation != "none";
  if (input.size() != 3) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 0 (input) must be 3-D [batch, channels, length], got ", shape_to_string(input));
  }
  g.batch = input[0];
  g.channels = input[1];
  g.length = input[2];
  if (weight.size() != 3 || !agree(weight[0], g.channels) || !agree(weight[1], 1) ||
      weight[2] == 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (weight) must be [channels = ", g.channels,
            ", 1, kernel_size >= 1], got ", shape_to_string(weight));
  }
  if (!known(g.channels)) g.channels = weight[0];
  g.kernel = weight[2];
  if (bias && (bias->size() != 1 || !agree((*bias)[0], g.channels))) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 2 (bias) must be [channels = ", g.channels,
            "], got ", shape_to_string(*bias));
  }
  g.state = {g.batch, g.channels, known(g.kernel) ? g.kernel - 1 : kDynamicDim};
  if (past_state) {
    const Shape& s = *past_state;
    if (s.size() != 3 || !agree(s[0], g.state[0]) || !agree(s[1], g.state[1]) ||
        !agree(s[2], g.state[2])) {
      fail_at(node, ErrorCode::kInvalidArgument,
              "input 3 (past_state) must be [batch, channels, kernel_size - 1] = ",
              shape_to_string(g.state), ", got ", shape_to_string(s));
    }
    for (size_t i = 0; i < 3; ++i) {
      if (!known(g.state[i])) g.state[i] = s[i];
    }
  }
  return g;
}

}  // namespace nn

namespace {

void infer_causal_conv(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "input");
  nn::require_same_dtype(ctx, 1, "weight");
  if (ctx.has_input(2)) nn::require_same_dtype(ctx, 2, "bias");
  if (ctx.has_input(3)) nn::require_same_dtype(ctx, 3, "past_state");
  auto shape_of = [&](size_t i) { return ctx.has_input(i) ? &ctx.input(i).shape : nullptr; };
  const nn::CausalConvGeometry g =
      nn::resolve_causal_conv(nn::label_of(ctx), ctx.attrs(), ctx.input(0).shape,
                              ctx.input(1).shape, shape_of(2), shape_of(3));
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = {g.batch, g.channels, g.length};
  if (ctx.num_outputs() > 1) {
    ctx.output(1).dtype = ctx.input(0).dtype;
    ctx.output(1).shape = g.state;
  }
}

}  // namespace

void register_causal_conv_ops(OpRegistry& registry) {
  registry.add(
      OpDef{"CausalConvWithState", 2, 4, 1, 2, {}, &nn::infer_with_node_errors<infer_causal_conv>});
}

}  // namespace kiln::ops
