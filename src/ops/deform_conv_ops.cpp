// DeformConv (opsets 19, 22): a 2-D convolution whose every kernel tap samples X bilinearly at
// its regular position plus a learned offset (zero outside X), optionally scaled by a mask.
//   DeformConv(X, W, offset, B?, mask?) -> Y [N, oC, oH, oW]
// Attributes: dilations, group, kernel_shape, offset_group, pads, strides (no auto_pad).
#include <string>

#include "ops/deform_conv.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace nn {

DeformConvGeometry deform_conv_geometry(const NodeLabel& node, const AttributeMap& attrs,
                                        const Shape& x, const Shape& w, const Shape& offset,
                                        const Shape* bias, const Shape* mask) {
  const auto bad = [&](auto&&... parts) {
    fail_at(node, ErrorCode::kInvalidArgument, std::forward<decltype(parts)>(parts)...);
  };
  if (x.size() != 4) {
    fail_at(node, ErrorCode::kUnsupported, "input 0 (X) must be 4-D [N, C, H, W] (kiln runs 2-D ",
            "DeformConv only), got ", shape_to_string(x));
  }
  if (w.size() != 4) bad("input 1 (W) must be 4-D [oC, C/group, kH, kW], got ", shape_to_string(w));
  if (offset.size() != 4) {
    bad("input 2 (offset) must be 4-D [N, offset_group*2*kH*kW, oH, oW], got ",
        shape_to_string(offset));
  }
  const auto known = [](int64_t a, int64_t b) { return a != kDynamicDim && b != kDynamicDim; };
  DeformConvGeometry g;
  g.group = attrs.get_int_or("group", 1);
  g.offset_group = attrs.get_int_or("offset_group", 1);
  if (g.group < 1) bad("attribute 'group' must be >= 1, got ", g.group);
  if (g.offset_group < 1) bad("attribute 'offset_group' must be >= 1, got ", g.offset_group);
  std::vector<int64_t> kernel(w.begin() + 2, w.end());
  if (attrs.has("kernel_shape")) {
    const std::vector<int64_t> attr = read_axis_attribute(node, attrs, "kernel_shape", 2, 1, 1);
    for (size_t i = 0; i < 2; ++i) {
      if (kernel[i] != kDynamicDim && kernel[i] != attr[i]) {
        bad("attribute 'kernel_shape' ", list_to_string(attr), " differs from W's spatial dims ",
            shape_to_string(w));
      }
    }
    kernel = attr;
  }
  if (x[1] != kDynamicDim && x[1] % g.group != 0) {
    bad("X has ", x[1], " channels, not a multiple of group ", g.group);
  }
  if (x[1] != kDynamicDim && x[1] % g.offset_group != 0) {
    bad("X has ", x[1], " channels, not a multiple of offset_group ", g.offset_group);
  }
  if (known(x[1], w[1]) && w[1] * g.group != x[1]) {
    bad("input 1 (W) has ", w[1], " input channels per group, expected X's ", x[1], " / group ",
        g.group, " = ", x[1] / g.group);
  }
  if (w[0] != kDynamicDim && w[0] % g.group != 0) {
    bad("input 1 (W) has ", w[0], " output channels, not a multiple of group ", g.group);
  }
  const Shape spatial(x.begin() + 2, x.end());
  g.window = resolve_window(node, attrs, spatial, kernel, false);
  const int64_t taps = kernel[0] != kDynamicDim && kernel[1] != kDynamicDim
                           ? kernel[0] * kernel[1]
                           : kDynamicDim;
  const auto check_map = [&](const Shape& map, size_t index, const char* name, int64_t per_tap) {
    if (known(map[0], x[0]) && map[0] != x[0]) {
      bad("input ", index, " (", name, ") has batch ", map[0], " but X has ", x[0]);
    }
    if (taps != kDynamicDim && map[1] != kDynamicDim && map[1] != g.offset_group * per_tap * taps) {
      bad("input ", index, " (", name, ") has ", map[1], " channels, expected offset_group ",
          g.offset_group, " x ", per_tap == 2 ? "2 x " : "", "kH*kW ", taps, " = ",
          g.offset_group * per_tap * taps);
    }
    for (size_t i = 0; i < 2; ++i) {
      if (known(map[2 + i], g.window.output[i]) && map[2 + i] != g.window.output[i]) {
        bad("input ", index, " (", name, ") has spatial dims ", shape_to_string(map),
            " but the output's are [", g.window.output[0], ", ", g.window.output[1], "]");
      }
    }
  };
  check_map(offset, 2, "offset", 2);
  if (mask) {
    if (mask->size() != 4) {
      bad("input 4 (mask) must be 4-D [N, offset_group*kH*kW, oH, oW], got ",
          shape_to_string(*mask));
    }
    check_map(*mask, 4, "mask", 1);
  }
  if (bias && (bias->size() != 1 || (known((*bias)[0], w[0]) && (*bias)[0] != w[0]))) {
    bad("input 3 (B) must have shape [", w[0], "], got ", shape_to_string(*bias));
  }
  return g;
}

}  // namespace nn

namespace {

void infer_deform_conv(InferContext& ctx) {
  nn::require_float_or_float64_input(ctx, 0, "X");
  const char* names[] = {"X", "W", "offset", "B", "mask"};
  for (size_t i = 1; i < 5; ++i) {
    if (ctx.has_input(i) && ctx.input(i).dtype != ctx.input(0).dtype) {
      ctx.fail("input ", i, " (", names[i], ") has dtype ", dtype_name(ctx.input(i).dtype),
               " but X has ", dtype_name(ctx.input(0).dtype));
    }
  }
  const Shape& x = ctx.input(0).shape;
  const Shape& w = ctx.input(1).shape;
  const nn::DeformConvGeometry g = nn::deform_conv_geometry(
      nn::label_of(ctx), ctx.attrs(), x, w, ctx.input(2).shape,
      ctx.has_input(3) ? &ctx.input(3).shape : nullptr,
      ctx.has_input(4) ? &ctx.input(4).shape : nullptr);
  Shape out = {x[0], w[0], g.window.output[0], g.window.output[1]};
  // The offset map's dims decide those the geometry could not (dynamic input dims).
  if (out[0] == kDynamicDim) out[0] = ctx.input(2).shape[0];
  for (size_t i = 0; i < 2; ++i) {
    if (out[2 + i] == kDynamicDim) out[2 + i] = ctx.input(2).shape[2 + i];
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = std::move(out);
}

}  // namespace

void register_deform_conv_ops(OpRegistry& registry) {
  registry.add(
      OpDef{"DeformConv", 3, 5, 1, 1, {}, &nn::infer_with_node_errors<infer_deform_conv>});
}

}  // namespace kiln::ops
