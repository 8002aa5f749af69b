// ConvTranspose on the CPU (the reference): per (image, group), one SGEMM forms every kernel tap's
// contribution of every input position, cols[(m, kd, kh, kw), i] = sum_c W[c, m, k] * X[c, i],
// and col2im scatters the rows onto the output (y[m, i * stride + k * dilation - pad] += ...),
// which starts from the bias. 1 to 3 spatial axes; fp16/bf16 arrive as fp32.
#include <algorithm>
#include <vector>

#include "backends/cpu/conv_geometry.hpp"
#include "backends/cpu/nn_blas.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/nn_window3d.hpp"
#include "ops/conv_transpose_geometry.hpp"

namespace kiln::cpu {
namespace {

using nn::Window3d;

int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// The geometry in Window3d form (`in` is X's spatial extent, `out` Y's); checks Y's shape.
Window3d resolve_geometry(const KernelContext& ctx, int64_t out_channels) {
  const Shape& x = ctx.inputs[0].shape;
  const Shape& weights = ctx.inputs[1].shape;
  const ops::nn::ConvTransposeGeometry g = ops::nn::resolve_conv_transpose(
      nn::label_of(ctx), ctx.attrs, std::vector<int64_t>(x.begin() + 2, x.end()),
      std::vector<int64_t>(weights.begin() + 2, weights.end()));
  return nn::window3d_of(ctx, g, out_channels);
}

// Adds the cols rows of one group, computed for the input lines [line_begin, line_end) (a line is
// one (id, ih) pair), onto y (group_out output channels).
void col2im_add(const float* cols, int64_t group_out, const Window3d& w, int64_t line_begin,
                int64_t line_end, float* y) {
  const int64_t columns = (line_end - line_begin) * w.in[2];
  const float* row = cols;
  for (int64_t m = 0; m < group_out; ++m) {
    float* ym = y + m * w.out_size();
    for (int64_t kd = 0; kd < w.kernel[0]; ++kd) {
      for (int64_t kh = 0; kh < w.kernel[1]; ++kh) {
        for (int64_t kw = 0; kw < w.kernel[2]; ++kw, row += columns) {
          // ow = iw * stride + base stays inside [0, out_w) for iw in [iw_begin, iw_end).
          const int64_t base = kw * w.dilation[2] - w.pad_begin[2];
          const int64_t stride = w.stride[2];
          const int64_t iw_begin = std::max<int64_t>(0, floor_div(-base + stride - 1, stride));
          const int64_t iw_end =
              std::min<int64_t>(w.in[2], floor_div(w.out[2] - 1 - base, stride) + 1);
          if (iw_begin >= iw_end) continue;
          const float* src = row;
          for (int64_t line = line_begin; line < line_end; ++line, src += w.in[2]) {
            const int64_t id = line / w.in[1];
            const int64_t ih = line % w.in[1];
            const int64_t od = id * w.stride[0] - w.pad_begin[0] + kd * w.dilation[0];
            const int64_t oh = ih * w.stride[1] - w.pad_begin[1] + kh * w.dilation[1];
            if (od < 0 || od >= w.out[0] || oh < 0 || oh >= w.out[1]) continue;
            float* dst = ym + (od * w.out[1] + oh) * w.out[2] + base;
            for (int64_t iw = iw_begin; iw < iw_end; ++iw) dst[iw * stride] += src[iw];
          }
        }
      }
    }
  }
}

void conv_transpose_kernel(KernelContext& ctx) {
  const bool has_bias = nn::require_float32_conv_operands(ctx);
  const TensorView& x = ctx.inputs[0];
  const TensorView& weights = ctx.inputs[1];
  if (weights.shape.size() != x.shape.size() || x.shape.size() < 3 || x.shape.size() > 5) {
    ctx.fail(ErrorCode::kInvalidArgument, "X ", shape_to_string(x.shape), " and W ",
             shape_to_string(weights.shape), " must have the same rank, 3 to 5");
  }
  const int64_t batch = x.shape[0];
  const int64_t channels = x.shape[1];
  const int64_t group = ctx.attrs.get_int_or("group", 1);
  if (group < 1 || channels != weights.shape[0] || channels % group != 0) {
    ctx.fail(ErrorCode::kInvalidArgument, "channels of X ", shape_to_string(x.shape), " and W ",
             shape_to_string(weights.shape), " do not match group ", group,
             " (W is [C, M/group, k...])");
  }
  const int64_t group_in = channels / group;
  const int64_t group_out = weights.shape[1];
  const int64_t out_channels = group_out * group;
  if (has_bias && ctx.inputs[2].numel() != out_channels) {
    ctx.fail(ErrorCode::kInvalidArgument, "B must have ", out_channels, " elements, got ",
             shape_to_string(ctx.inputs[2].shape));
  }
  const Window3d w = resolve_geometry(ctx, out_channels);
  float* y_data = ctx.outputs[0].as<float>();
  if (ctx.outputs[0].numel() == 0) return;
  const float* x_data = x.as<const float>();
  const float* w_data = weights.as<const float>();
  const float* bias = has_bias ? ctx.inputs[2].as<const float>() : nullptr;

  const int64_t in_size = w.in_size();
  const int64_t out_size = w.out_size();
  const int64_t rows = group_out * w.kernel_size();  // (m, kd, kh, kw)
  // cols covers a band of input lines at a time so that it stays bounded (about 32 MiB).
  constexpr int64_t kColumnBudget = int64_t{8} << 20;  // floats
  const int64_t lines = w.in[0] * w.in[1];
  const int64_t lines_per_band =
      std::clamp<int64_t>(kColumnBudget / std::max<int64_t>(1, rows * w.in[2]), 1, lines);
  std::vector<float> cols(static_cast<size_t>(rows * lines_per_band * w.in[2]));
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t g = 0; g < group; ++g) {
      const float* x_group = x_data + (n * channels + g * group_in) * in_size;
      const float* w_group = w_data + g * group_in * rows;  // [group_in, rows]
      float* y_group = y_data + (n * out_channels + g * group_out) * out_size;
      for (int64_t m = 0; m < group_out; ++m) {
        std::fill(y_group + m * out_size, y_group + (m + 1) * out_size,
                  bias ? bias[g * group_out + m] : 0.0f);
      }
      for (int64_t line = 0; line < lines; line += lines_per_band) {
        const int64_t line_end = std::min(lines, line + lines_per_band);
        const int64_t columns = (line_end - line) * w.in[2];
        nn::sgemm_row_major(ctx, true, false, rows, columns, group_in, 1.0f, w_group, rows,
                            x_group + line * w.in[2], in_size, 0.0f, cols.data(), columns);
        col2im_add(cols.data(), group_out, w, line, line_end, y_group);
      }
    }
  }
}

}  // namespace

void register_conv_transpose_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<conv_transpose_kernel>(registry, "ConvTranspose");
}

}  // namespace kiln::cpu
