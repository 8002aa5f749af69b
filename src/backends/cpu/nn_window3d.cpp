#include "backends/cpu/nn_window3d.hpp"

#include "backends/cpu/nn_kernel_common.hpp"

namespace kiln::cpu::nn {

Window3d resolve_window3d(const KernelContext& ctx, std::vector<int64_t> kernel, bool ceil_mode,
                          int64_t out_channels) {
  const Shape& x = ctx.inputs[0].shape;
  if (x.size() < 3) {
    ctx.fail(ErrorCode::kInvalidArgument, "input 0 must have rank >= 3, got ", shape_to_string(x));
  }
  const size_t spatial = x.size() - 2;
  if (spatial > 3) {
    ctx.fail(ErrorCode::kUnsupported, spatial, " spatial dimensions; at most 3 are supported");
  }
  const ops::nn::WindowGeometry g = ops::nn::resolve_window(
      label_of(ctx), ctx.attrs, std::vector<int64_t>(x.begin() + 2, x.end()), std::move(kernel),
      ceil_mode);
  return window3d_of(ctx, g, out_channels);
}

Window3d window3d_of(const KernelContext& ctx, const ops::nn::WindowGeometry& g,
                     int64_t out_channels) {
  const Shape& x = ctx.inputs[0].shape;
  Shape expected{x[0], out_channels};
  expected.insert(expected.end(), g.output.begin(), g.output.end());
  require_output_shape(ctx, 0, expected);
  Window3d w;
  const size_t spatial = g.output.size();
  const size_t offset = 3 - spatial;
  for (size_t i = 0; i < spatial; ++i) {
    w.in[offset + i] = x[2 + i];
    w.out[offset + i] = g.output[i];
    w.kernel[offset + i] = g.kernel[i];
    w.stride[offset + i] = g.strides[i];
    w.dilation[offset + i] = g.dilations[i];
    w.pad_begin[offset + i] = g.pad_begin[i];
    w.pad_end[offset + i] = g.pad_end[i];
  }
  return w;
}

}  // namespace kiln::cpu::nn
