// DeformConv on the CPU (float32, float16/bfloat16 converted, and float64): per image and group,
// gathers the bilinear samples of every (input channel, kernel tap) at every output position into
// a column matrix (times the mask), then one GEMM with that group's weights, then the bias.
#include <cmath>
#include <vector>

#include "backends/cpu/nn_blas.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/deform_conv.hpp"

namespace kiln::cpu {
namespace {

// X's plane sampled at (y, x) in pixel coordinates, bilinear, taps outside the plane read as 0
// (GridSample with align_corners = 1 and zero padding, as ONNX's definition samples).
// Coordinates and weights in double, as the reference computes them.
template <typename T>
double sample_bilinear(const T* plane, int64_t height, int64_t width, double y, double x) {
  if (!std::isfinite(y) || !std::isfinite(x)) return std::nan("");
  const double y0f = std::floor(y), x0f = std::floor(x);
  // Far outside: every tap reads 0 (and the casts below stay in range).
  if (y0f < -2.0 || y0f > static_cast<double>(height) || x0f < -2.0 ||
      x0f > static_cast<double>(width)) {
    return 0.0;
  }
  const auto y0 = static_cast<int64_t>(y0f), x0 = static_cast<int64_t>(x0f);
  const double ly = y - y0f, lx = x - x0f;
  const auto at = [&](int64_t yy, int64_t xx) -> double {
    return yy >= 0 && yy < height && xx >= 0 && xx < width
               ? static_cast<double>(plane[yy * width + xx])
               : 0.0;
  };
  return (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x0 + 1)) +
         ly * ((1.0 - lx) * at(y0 + 1, x0) + lx * at(y0 + 1, x0 + 1));
}

template <typename T>
void deform_conv(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& w = ctx.inputs[1];
  const TensorView& offset = ctx.inputs[2];
  const bool has_bias = ctx.has_input(3);
  const bool has_mask = ctx.has_input(4);
  const ops::nn::DeformConvGeometry g = ops::nn::deform_conv_geometry(
      nn::label_of(ctx), ctx.attrs, x.shape, w.shape, offset.shape,
      has_bias ? &ctx.inputs[3].shape : nullptr, has_mask ? &ctx.inputs[4].shape : nullptr);
  const int64_t batch = x.shape[0], channels = x.shape[1], height = x.shape[2], width = x.shape[3];
  const int64_t out_channels = w.shape[0];
  const int64_t kh = g.window.kernel[0], kw = g.window.kernel[1], taps = kh * kw;
  const int64_t out_h = g.window.output[0], out_w = g.window.output[1];
  nn::require_output_shape(ctx, 0, Shape{batch, out_channels, out_h, out_w});
  const int64_t positions = out_h * out_w;
  const int64_t in_per_group = channels / g.group, out_per_group = out_channels / g.group;
  const int64_t in_per_offset_group = channels / g.offset_group;
  const T* x_data = x.as<const T>();
  const T* w_data = w.as<const T>();
  const T* offset_data = offset.as<const T>();
  const T* mask_data = has_mask ? ctx.inputs[4].as<const T>() : nullptr;
  T* y = ctx.outputs[0].as<T>();
  // Rows: (input channel of the group, tap); columns: output positions.
  std::vector<T> columns(static_cast<size_t>(in_per_group * taps * positions));
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t grp = 0; grp < g.group; ++grp) {
      for (int64_t ci = 0; ci < in_per_group; ++ci) {
        const int64_t c = grp * in_per_group + ci;
        const int64_t og = c / in_per_offset_group;
        const T* plane = x_data + (n * channels + c) * height * width;
        for (int64_t i = 0; i < kh; ++i) {
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t tap = i * kw + j;
            const T* dy = offset_data + ((n * g.offset_group + og) * taps + tap) * 2 * positions;
            const T* dx = dy + positions;
            const T* m = has_mask ? mask_data + ((n * g.offset_group + og) * taps + tap) * positions
                                  : nullptr;
            T* row = columns.data() + (ci * taps + tap) * positions;
            for (int64_t oh = 0; oh < out_h; ++oh) {
              const int64_t base_y =
                  oh * g.window.strides[0] - g.window.pad_begin[0] + i * g.window.dilations[0];
              for (int64_t ow = 0; ow < out_w; ++ow) {
                const int64_t base_x =
                    ow * g.window.strides[1] - g.window.pad_begin[1] + j * g.window.dilations[1];
                const int64_t p = oh * out_w + ow;
                const double value = sample_bilinear<T>(
                    plane, height, width, static_cast<double>(base_y) + static_cast<double>(dy[p]),
                    static_cast<double>(base_x) + static_cast<double>(dx[p]));
                row[p] = static_cast<T>(m ? value * static_cast<double>(m[p]) : value);
              }
            }
          }
        }
      }
      T* y_group = y + (n * out_channels + grp * out_per_group) * positions;
      nn::gemm_row_major(ctx, false, false, out_per_group, positions, in_per_group * taps, T{1},
                         w_data + grp * out_per_group * in_per_group * taps, in_per_group * taps,
                         columns.data(), positions, T{0}, y_group, positions);
    }
    if (has_bias) {
      const T* bias = ctx.inputs[3].as<const T>();
      for (int64_t oc = 0; oc < out_channels; ++oc) {
        T* plane = y + (n * out_channels + oc) * positions;
        for (int64_t p = 0; p < positions; ++p) plane[p] += bias[oc];
      }
    }
  }
}

void deform_conv_kernel(KernelContext& ctx) {
  const DType dtype = ctx.inputs[0].dtype;
  for (size_t i = 1; i < ctx.inputs.size(); ++i) {
    if (ctx.has_input(i) && ctx.inputs[i].dtype != dtype) {
      ctx.fail(ErrorCode::kInvalidArgument, "input ", i, " has dtype ",
               dtype_name(ctx.inputs[i].dtype), " but X has ", dtype_name(dtype));
    }
  }
  if (dtype == DType::kFloat64) {
    deform_conv<double>(ctx);
  } else if (dtype == DType::kFloat32) {
    deform_conv<float>(ctx);
  } else {
    ctx.fail(ErrorCode::kUnsupported, "input 0 (X) has unsupported dtype ", dtype_name(dtype),
             "; supported: float32, float16, bfloat16, float64");
  }
}

}  // namespace

void register_deform_conv_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<deform_conv_kernel>(registry, "DeformConv");
}

}  // namespace kiln::cpu
