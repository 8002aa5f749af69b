// Conv on the CPU: im2col + SGEMM per (image, group); depthwise convolutions (one input channel
// per group) run a direct loop, and pointwise ones multiply the input in place. kiln_layout =
// "NHWC" is honoured by permuting to NCHW around the same code: this is the reference. The fast
// path is oneDNN (onednn_conv.hpp), taken first where kiln has it.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "backends/cpu/conv_geometry.hpp"
#include "backends/cpu/fused_activation.hpp"
#include "backends/cpu/nn_blas.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/nn_layout.hpp"
#include "backends/cpu/nn_window3d.hpp"
#include "backends/cpu/onednn_conv.hpp"
#include "ops/nn_layout.hpp"

namespace kiln::cpu {

namespace nn {

bool require_float32_conv_operands(const KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_input(ctx, 1);
  nn::require_float32_output(ctx, 0);
  const bool has_bias = ctx.has_input(2);
  if (has_bias) nn::require_float32_input(ctx, 2);
  return has_bias;
}

ConvGeometry check_conv_call(const KernelContext& ctx) {
  const bool has_bias = require_float32_conv_operands(ctx);
  const TensorView& x = ctx.inputs[0];
  const TensorView& weights = ctx.inputs[1];
  if (weights.shape.size() != x.shape.size() || x.shape.size() < 3) {
    ctx.fail(ErrorCode::kInvalidArgument, "X ", shape_to_string(x.shape), " and W ",
             shape_to_string(weights.shape), " must have the same rank >= 3");
  }
  ConvGeometry g;
  g.batch = x.shape[0];
  g.channels = x.shape[1];
  g.out_channels = weights.shape[0];
  g.group = ctx.attrs.get_int_or("group", 1);
  g.has_bias = has_bias;
  if (g.group < 1 || g.channels != weights.shape[1] * g.group || g.out_channels % g.group != 0) {
    ctx.fail(ErrorCode::kInvalidArgument, "channels of X ", shape_to_string(x.shape), " and W ",
             shape_to_string(weights.shape), " do not match group ", g.group);
  }
  if (has_bias && ctx.inputs[2].numel() != g.out_channels) {
    ctx.fail(ErrorCode::kInvalidArgument, "B must have ", g.out_channels, " elements, got ",
             shape_to_string(ctx.inputs[2].shape));
  }
  g.window = resolve_window3d(
      ctx, std::vector<int64_t>(weights.shape.begin() + 2, weights.shape.end()), false,
      g.out_channels);
  return g;
}

}  // namespace nn

namespace {

using nn::ConvGeometry;
using nn::Window3d;
using nn::check_conv_call;

// Writes the im2col matrix of one group for the output lines [line_begin, line_end), where a
// line is one (od, oh) pair: row (c, kd, kh, kw), column (line, ow).
void im2col(const float* x, int64_t channels, const Window3d& w, int64_t line_begin,
            int64_t line_end, float* cols) {
  const int64_t columns = (line_end - line_begin) * w.out[2];
  float* row = cols;
  for (int64_t c = 0; c < channels; ++c) {
    const float* xc = x + c * w.in_size();
    for (int64_t kd = 0; kd < w.kernel[0]; ++kd) {
      for (int64_t kh = 0; kh < w.kernel[1]; ++kh) {
        for (int64_t kw = 0; kw < w.kernel[2]; ++kw, row += columns) {
          float* dst = row;
          const int64_t base = kw * w.dilation[2] - w.pad_begin[2];
          for (int64_t line = line_begin; line < line_end; ++line, dst += w.out[2]) {
            const int64_t od = line / w.out[1];
            const int64_t oh = line % w.out[1];
            const int64_t id = od * w.stride[0] - w.pad_begin[0] + kd * w.dilation[0];
            const int64_t ih = oh * w.stride[1] - w.pad_begin[1] + kh * w.dilation[1];
            if (id < 0 || id >= w.in[0] || ih < 0 || ih >= w.in[1]) {
              std::fill(dst, dst + w.out[2], 0.0f);
              continue;
            }
            const float* src = xc + (id * w.in[1] + ih) * w.in[2];
            for (int64_t ow = 0; ow < w.out[2]; ++ow) {
              const int64_t iw = ow * w.stride[2] + base;
              dst[ow] = (iw >= 0 && iw < w.in[2]) ? src[iw] : 0.0f;
            }
          }
        }
      }
    }
  }
}

int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// One output channel of a depthwise convolution: y[o] = bias + sum_k wk[k] * x[window(o, k)].
// Loops tap by tap over output lines, with the valid `ow` range computed up front so the inner
// loop has no bounds checks and vectorises.
void depthwise_channel(const float* x, const float* weights, const Window3d& w, float bias,
                       float* y) {
  std::fill(y, y + w.out_size(), bias);
  const float* wk = weights;
  for (int64_t kd = 0; kd < w.kernel[0]; ++kd) {
    for (int64_t kh = 0; kh < w.kernel[1]; ++kh) {
      for (int64_t kw = 0; kw < w.kernel[2]; ++kw, ++wk) {
        const float weight = *wk;
        const int64_t base = kw * w.dilation[2] - w.pad_begin[2];
        const int64_t stride = w.stride[2];
        // ow in [ow_begin, ow_end) keeps ow * stride + base inside [0, in_w).
        const int64_t ow_begin = std::max<int64_t>(0, floor_div(-base + stride - 1, stride));
        const int64_t ow_end =
            std::min<int64_t>(w.out[2], floor_div(w.in[2] - 1 - base, stride) + 1);
        if (ow_begin >= ow_end) continue;
        for (int64_t od = 0; od < w.out[0]; ++od) {
          const int64_t id = od * w.stride[0] - w.pad_begin[0] + kd * w.dilation[0];
          if (id < 0 || id >= w.in[0]) continue;
          for (int64_t oh = 0; oh < w.out[1]; ++oh) {
            const int64_t ih = oh * w.stride[1] - w.pad_begin[1] + kh * w.dilation[1];
            if (ih < 0 || ih >= w.in[1]) continue;
            const float* src = x + (id * w.in[1] + ih) * w.in[2] + base;
            float* dst = y + (od * w.out[1] + oh) * w.out[2];
            if (stride == 1) {
              for (int64_t ow = ow_begin; ow < ow_end; ++ow) dst[ow] += weight * src[ow];
            } else {
              for (int64_t ow = ow_begin; ow < ow_end; ++ow) dst[ow] += weight * src[ow * stride];
            }
          }
        }
      }
    }
  }
}

bool is_pointwise(const Window3d& w) {
  for (size_t i = 0; i < 3; ++i) {
    if (w.kernel[i] != 1 || w.stride[i] != 1 || w.pad_begin[i] != 0 || w.pad_end[i] != 0) {
      return false;
    }
  }
  return true;
}

void conv_compute(KernelContext& ctx) {
  const ConvGeometry geometry = check_conv_call(ctx);
  const Window3d& w = geometry.window;
  const int64_t batch = geometry.batch;
  const int64_t channels = geometry.channels;
  const int64_t out_channels = geometry.out_channels;
  const int64_t group = geometry.group;
  const TensorView& x = ctx.inputs[0];
  const TensorView& weights = ctx.inputs[1];
  const bool has_bias = geometry.has_bias;

  const int64_t group_in = channels / group;
  const int64_t group_out = out_channels / group;
  const int64_t in_size = w.in_size();
  const int64_t out_size = w.out_size();
  const int64_t patch = group_in * w.kernel_size();  // GEMM inner dimension
  const float* x_data = x.as<const float>();
  const float* w_data = weights.as<const float>();
  const float* bias = has_bias ? ctx.inputs[2].as<const float>() : nullptr;
  float* y_data = ctx.outputs[0].as<float>();
  if (ctx.outputs[0].numel() == 0) return;

  if (group_in == 1 && group > 1) {
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t oc = 0; oc < out_channels; ++oc) {
        const int64_t ic = oc / group_out;
        depthwise_channel(x_data + (n * channels + ic) * in_size, w_data + oc * w.kernel_size(), w,
                          bias ? bias[oc] : 0.0f, y_data + (n * out_channels + oc) * out_size);
      }
    }
    return;
  }

  // The im2col matrix is built for a band of output lines at a time so that its size stays
  // bounded (about 32 MiB) for large images.
  constexpr int64_t kColumnBudget = int64_t{8} << 20;  // floats
  const int64_t lines = w.out[0] * w.out[1];
  const int64_t lines_per_band =
      std::clamp<int64_t>(kColumnBudget / std::max<int64_t>(1, patch * w.out[2]), 1, lines);
  const bool pointwise = is_pointwise(w);
  std::vector<float> cols(pointwise ? 0 : static_cast<size_t>(patch * lines_per_band * w.out[2]));
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t g = 0; g < group; ++g) {
      const float* x_group = x_data + (n * channels + g * group_in) * in_size;
      float* y_group = y_data + (n * out_channels + g * group_out) * out_size;
      for (int64_t m = 0; m < group_out; ++m) {
        std::fill(y_group + m * out_size, y_group + (m + 1) * out_size,
                  bias ? bias[g * group_out + m] : 0.0f);
      }
      const float* w_group = w_data + g * group_out * patch;
      if (pointwise) {
        nn::sgemm_row_major(ctx, false, false, group_out, out_size, patch, 1.0f, w_group, patch,
                            x_group, out_size, 1.0f, y_group, out_size);
        continue;
      }
      for (int64_t line = 0; line < lines; line += lines_per_band) {
        const int64_t line_end = std::min(lines, line + lines_per_band);
        const int64_t columns = (line_end - line) * w.out[2];
        im2col(x_group, group_in, w, line, line_end, cols.data());
        nn::sgemm_row_major(ctx, false, false, group_out, columns, patch, 1.0f, w_group, patch,
                            cols.data(), columns, 1.0f, y_group + line * w.out[2], out_size);
      }
    }
  }
}

// The builder's fusion: y = activation(conv(x) + residual), residual being input 3, the activation
// any of fused_activation.hpp's.
void apply_fused_epilogue(KernelContext& ctx) {
  float* y = ctx.outputs[0].as<float>();
  const int64_t n = ctx.outputs[0].numel();
  if (ctx.has_input(3)) {
    nn::require_float32_input(ctx, 3);
    if (ctx.inputs[3].shape != ctx.outputs[0].shape) {
      ctx.fail(ErrorCode::kInvalidArgument, "residual ", shape_to_string(ctx.inputs[3].shape),
               " must have the output's shape ", shape_to_string(ctx.outputs[0].shape));
    }
    const float* residual = ctx.inputs[3].as<const float>();
    for (int64_t i = 0; i < n; ++i) y[i] += residual[i];
  }
  apply_fused_activation_reference(fused_activation_of(ctx), y, n);
}

void conv_nchw(KernelContext& ctx) {
  // The memory plan may place the output over the residual (CpuBackend::writes_over_input): the
  // convolution writes the output before the residual is added, so the residual is set aside.
  if (ctx.has_input(3) && ctx.inputs[3].data == ctx.outputs[0].data) {
    const TensorView& residual = ctx.inputs[3];
    HostTensor saved(residual.dtype, residual.shape);
    std::memcpy(saved.bytes.data(), residual.data, saved.bytes.size());
    std::vector<TensorView> inputs(ctx.inputs.begin(), ctx.inputs.end());
    inputs[3] = view_of(saved);
    KernelContext aside = ctx;
    aside.inputs = inputs;
    conv_compute(aside);
    apply_fused_epilogue(aside);
    return;
  }
  conv_compute(ctx);
  apply_fused_epilogue(ctx);
}

void conv_kernel(KernelContext& ctx) {
  // The fast path where it takes the call (onednn_conv.hpp), unless KILN_CPU_CONV asks for the
  // reference.
  if (onednn::requested_conv_choice() != onednn::ConvChoice::kReference &&
      onednn::try_run_conv(ctx)) {
    return;
  }
  if (ops::nn::is_nhwc_layout(ctx.attrs)) {
    nn::run_nhwc_as_nchw(ctx, {1, 3}, conv_nchw);  // X, W (KRSC -> KCRS), residual
  } else {
    conv_nchw(ctx);
  }
}

}  // namespace

void register_conv_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<conv_kernel>(registry, "Conv");
}

}  // namespace kiln::cpu
