// Conv (opset 11+ form): X [N, C, D1..Dn], W [M, C/group, k1..kn], optional B [M]; kiln's fusion
// adds an optional residual input 3 and attribute kiln_activation, applied after the residual:
// "Relu" (every target), or for the CPU target (passes/cpu_activation_fusion.hpp) "Clip" (bounds
// kiln_clip_min / kiln_clip_max, absent: unbounded), "Sigmoid", "Tanh", "HardSwish" and "Silu"
// (x * sigmoid(x)), each as the scalar table computes the op. With kiln_layout =
// "NHWC" (2-D only, see nn_layout.hpp) X, Y and the residual are [N, H, W, C] and W is
// [M, kH, kW, C/group].
#include <string>
#include <vector>

#include "ops/nn_common.hpp"
#include "ops/nn_layout.hpp"
#include "ops/nn_window.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;

void infer_conv(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "X");
  nn::require_same_dtype(ctx, 1, "W");
  nn::require_min_rank(ctx, 0, "X", 3);
  const bool nhwc = nn::is_nhwc_layout(ctx.attrs());
  if (nhwc && (ctx.input(0).shape.size() != 4 || ctx.input(1).shape.size() != 4)) {
    ctx.fail("kiln_layout \"NHWC\" needs 4-D X and W (2-D convolution), got X ",
             shape_to_string(ctx.input(0).shape), " and W ", shape_to_string(ctx.input(1).shape));
  }
  // The checks below run on the NCHW view of the shapes.
  const Shape x = nhwc ? nn::nhwc_to_nchw(ctx.input(0).shape) : ctx.input(0).shape;
  const Shape w = nhwc ? nn::nhwc_to_nchw(ctx.input(1).shape) : ctx.input(1).shape;
  if (w.size() != x.size()) {
    ctx.fail("W must have the rank of X (", x.size(), "), got ", shape_to_string(w));
  }
  const int64_t group = ctx.attrs().get_int_or("group", 1);
  if (group < 1) ctx.fail("attribute 'group' must be >= 1, got ", group);

  const std::vector<int64_t> kernel = nn::kernel_extents(ctx, w);
  const int64_t in_channels = x[1];
  const int64_t w_channels = w[1];
  const int64_t out_channels = w[0];
  if (in_channels != kDynamicDim && w_channels != kDynamicDim) {
    // Checked: hostile dims can make the product overflow (and a wrapped product could even match).
    int64_t expected_channels = 0;
    if (__builtin_mul_overflow(w_channels, group, &expected_channels)) {
      ctx.fail("X has ", in_channels, " channels but W expects ", w_channels, " x group ", group,
               ", which overflows int64");
    }
    if (in_channels != expected_channels) {
      ctx.fail("X has ", in_channels, " channels but W expects ", w_channels, " x group ", group,
               " = ", expected_channels);
    }
  }
  if (out_channels != kDynamicDim && out_channels % group != 0) {
    ctx.fail("W has ", out_channels, " output channels, not divisible by group ", group);
  }
  if (ctx.has_input(2)) {
    nn::require_same_dtype(ctx, 2, "B");
    const Shape& b = ctx.input(2).shape;
    if (b.size() != 1 ||
        (b[0] != kDynamicDim && out_channels != kDynamicDim && b[0] != out_channels)) {
      ctx.fail("B must have shape [", out_channels, "], got ", shape_to_string(b));
    }
  }
  const nn::WindowGeometry geometry = nn::resolve_window(
      label_of(ctx), ctx.attrs(), std::vector<int64_t>(x.begin() + 2, x.end()), kernel, false);
  Shape out{x[0], out_channels};
  out.insert(out.end(), geometry.output.begin(), geometry.output.end());
  // Fused by the builder (kiln extension): input 3 is a residual added before the activation.
  const std::string activation = ctx.attrs().get_string_or("kiln_activation", "");
  if (!activation.empty() && activation != "Relu" && activation != "Clip" && activation != "Sigmoid" &&
      activation != "Tanh" && activation != "HardSwish" && activation != "Silu") {
    ctx.fail("attribute 'kiln_activation' must be \"Relu\", \"Clip\", \"Sigmoid\", \"Tanh\", \"HardSwish\" or "
             "\"Silu\", got \"", activation, "\"");
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = nhwc ? nn::nchw_to_nhwc(out) : std::move(out);
  // Fused by the builder (kiln extension): input 3 is a residual added before the activation. It
  // has the output's shape: the fusion proved it, for dynamic dims through their symbols, so a
  // run where they differ (inputs that share an ONNX dim_param bound to different sizes) fails
  // here rather than reading a residual of another size.
  if (ctx.has_input(3)) {
    nn::require_same_dtype(ctx, 3, "residual");
    const Shape& residual = ctx.input(3).shape;
    const Shape& y = ctx.output(0).shape;
    bool same = residual.size() == y.size();
    for (size_t d = 0; same && d < y.size(); ++d) {
      same = residual[d] == y[d] || residual[d] == kDynamicDim || y[d] == kDynamicDim;
    }
    if (!same) {
      ctx.fail("residual input (input 3) must have the output's shape ", shape_to_string(y), ", got ",
               shape_to_string(residual));
    }
    ctx.link_same_shape(0, 3);
  }
  // Symbolic dims: the batch; the output channels (W's dim 0 in either layout); spatial axes whose
  // window keeps the extent.
  const size_t channel_axis = nhwc ? 3 : 1;
  const size_t first_spatial = nhwc ? 1 : 2;
  ctx.link_dim(0, 0, 0, 0);
  ctx.link_dim(0, channel_axis, 1, 0);
  for (size_t i = 0; i < geometry.keeps_extent.size(); ++i) {
    if (geometry.keeps_extent[i]) ctx.link_dim(0, first_spatial + i, 0, first_spatial + i);
  }
}

}  // namespace

void register_conv_ops(OpRegistry& registry) {
  registry.add(OpDef{"Conv", 2, 4, 1, 1, {}, &nn::infer_with_node_errors<infer_conv>});
}

}  // namespace kiln::ops
