// MaxPool (and its Indices), MaxUnpool, AveragePool, LpPool, GlobalAveragePool and GlobalMaxPool
// on the CPU. Windows are normalised to three spatial axes (see nn_window3d.hpp). kiln_layout =
// "NHWC" permutes to NCHW around the same code (nn_layout.hpp).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/middle_axis_mean.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/nn_layout.hpp"
#include "backends/cpu/nn_window3d.hpp"
#include "backends/cpu/simd_math.hpp"
#include "ops/max_unpool.hpp"
#include "ops/nn_layout.hpp"

namespace kiln::cpu {
namespace {

using nn::Window3d;

Window3d pool_window(const KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_output(ctx, 0);
  const std::vector<int64_t>& kernel = ctx.attrs.get_ints("kernel_shape");
  const bool ceil_mode = ctx.attrs.get_int_or("ceil_mode", 0) != 0;
  return nn::resolve_window3d(ctx, kernel, ceil_mode, ctx.inputs[0].shape.at(1));
}

// The in-bounds taps of one axis for one output position: input positions first, first + step,
// ... (count of them). Positions grow with the tap index, so the valid taps are contiguous.
struct AxisTaps {
  int64_t first = 0;
  int64_t count = 0;
};

std::array<std::vector<AxisTaps>, 3> in_bounds_taps(const Window3d& w) {
  std::array<std::vector<AxisTaps>, 3> taps;
  for (size_t a = 0; a < 3; ++a) {
    taps[a].resize(static_cast<size_t>(w.out[a]));
    for (int64_t o = 0; o < w.out[a]; ++o) {
      AxisTaps& t = taps[a][static_cast<size_t>(o)];
      for (int64_t k = 0; k < w.kernel[a]; ++k) {
        const int64_t pos = o * w.stride[a] - w.pad_begin[a] + k * w.dilation[a];
        if (pos < 0 || pos >= w.in[a]) continue;
        if (t.count == 0) t.first = pos;
        ++t.count;
      }
    }
  }
  return taps;
}

// Calls visit(out_index, od, oh, ow, window_values) for every output position of one plane,
// where window_values(fn) calls fn(value) for every in-bounds input value of the window.
template <typename Visit>
void for_each_window(const Window3d& w, const std::array<std::vector<AxisTaps>, 3>& taps,
                     const float* x, Visit&& visit) {
  int64_t out_index = 0;
  for (int64_t od = 0; od < w.out[0]; ++od) {
    const AxisTaps& td = taps[0][static_cast<size_t>(od)];
    for (int64_t oh = 0; oh < w.out[1]; ++oh) {
      const AxisTaps& th = taps[1][static_cast<size_t>(oh)];
      for (int64_t ow = 0; ow < w.out[2]; ++ow, ++out_index) {
        const AxisTaps& tw = taps[2][static_cast<size_t>(ow)];
        auto window_values = [&](auto&& fn) {
          for (int64_t a = 0; a < td.count; ++a) {
            const int64_t id = td.first + a * w.dilation[0];
            for (int64_t b = 0; b < th.count; ++b) {
              const float* row =
                  x + (id * w.in[1] + th.first + b * w.dilation[1]) * w.in[2] + tw.first;
              for (int64_t c = 0; c < tw.count; ++c) fn(row[c * w.dilation[2]]);
            }
          }
        };
        visit(out_index, od, oh, ow, window_values);
      }
    }
  }
}

// MaxPool with its Indices output: each maximum's position in X, flattened over [N, C, spatial]
// row-major, or with the spatial axes column-major when storage_order = 1 (ONNX's definition).
// The first maximum in window order wins ties; a NaN wins over every number.
void max_pool_with_indices(KernelContext& ctx, const Window3d& w, const std::array<std::vector<AxisTaps>, 3>& taps) {
  const bool column_major = ctx.attrs.get_int_or("storage_order", 0) == 1;
  const int64_t planes = ctx.inputs[0].shape[0] * ctx.inputs[0].shape[1];
  const float* in = ctx.inputs[0].as<const float>();
  float* out = ctx.outputs[0].as<float>();
  int64_t* indices = ctx.outputs[1].as<int64_t>();
  for (int64_t p = 0; p < planes; ++p) {
    const float* x = in + p * w.in_size();
    int64_t o = p * w.out_size();
    for (int64_t od = 0; od < w.out[0]; ++od) {
      const AxisTaps& td = taps[0][static_cast<size_t>(od)];
      for (int64_t oh = 0; oh < w.out[1]; ++oh) {
        const AxisTaps& th = taps[1][static_cast<size_t>(oh)];
        for (int64_t ow = 0; ow < w.out[2]; ++ow, ++o) {
          const AxisTaps& tw = taps[2][static_cast<size_t>(ow)];
          float best = -std::numeric_limits<float>::infinity();
          int64_t bd = td.first, bh = th.first, bw = tw.first;
          bool found = false;
          for (int64_t a = 0; a < td.count; ++a) {
            const int64_t id = td.first + a * w.dilation[0];
            for (int64_t b = 0; b < th.count; ++b) {
              const int64_t ih = th.first + b * w.dilation[1];
              for (int64_t c = 0; c < tw.count; ++c) {
                const int64_t iw = tw.first + c * w.dilation[2];
                const float v = x[(id * w.in[1] + ih) * w.in[2] + iw];
                if (best != best) continue;  // a NaN already won
                if (!found || v > best || v != v) {
                  best = v, bd = id, bh = ih, bw = iw, found = true;
                }
              }
            }
          }
          out[o] = best;
          const int64_t spatial = column_major ? bd + (bh + bw * w.in[1]) * w.in[0]
                                               : (bd * w.in[1] + bh) * w.in[2] + bw;
          indices[o] = p * w.in_size() + spatial;
        }
      }
    }
  }
}

void max_pool_kernel(KernelContext& ctx) {
  const Window3d w = pool_window(ctx);
  const auto taps = in_bounds_taps(w);
  if (ctx.outputs.size() > 1) {
    max_pool_with_indices(ctx, w, taps);
    return;
  }
  const int64_t planes = ctx.inputs[0].shape[0] * ctx.inputs[0].shape[1];
  const float* in = ctx.inputs[0].as<const float>();
  float* out = ctx.outputs[0].as<float>();
  for (int64_t p = 0; p < planes; ++p) {
    float* y = out + p * w.out_size();
    for_each_window(w, taps, in + p * w.in_size(),
                    [&](int64_t o, int64_t, int64_t, int64_t, auto&& window_values) {
                      float best = -std::numeric_limits<float>::infinity();
                      bool saw_nan = false;
                      window_values([&](float v) {
                        best = v > best ? v : best;
                        saw_nan |= v != v;  // NaN propagates, as in numpy and PyTorch
                      });
                      if (saw_nan) best = std::numeric_limits<float>::quiet_NaN();
                      y[o] = best;
                    });
  }
}

// Number of window points of one axis inside [lo, hi).
int64_t points_within(const Window3d& w, size_t axis, int64_t o, int64_t lo, int64_t hi) {
  int64_t count = 0;
  for (int64_t k = 0; k < w.kernel[axis]; ++k) {
    const int64_t i = o * w.stride[axis] - w.pad_begin[axis] + k * w.dilation[axis];
    count += (i >= lo && i < hi) ? 1 : 0;
  }
  return count;
}

void average_pool_kernel(KernelContext& ctx) {
  const Window3d w = pool_window(ctx);
  const auto taps = in_bounds_taps(w);
  const bool include_pad = ctx.attrs.get_int_or("count_include_pad", 0) != 0;
  // Per axis and output position: how many window points count towards the divisor. With
  // count_include_pad, points in the explicit padding count but points past it (ceil_mode) don't.
  std::array<std::vector<int64_t>, 3> counts;
  for (size_t a = 0; a < 3; ++a) {
    counts[a].resize(static_cast<size_t>(w.out[a]));
    for (int64_t o = 0; o < w.out[a]; ++o) {
      counts[a][static_cast<size_t>(o)] =
          include_pad ? points_within(w, a, o, -w.pad_begin[a], w.in[a] + w.pad_end[a])
                      : taps[a][static_cast<size_t>(o)].count;
    }
  }
  const int64_t planes = ctx.inputs[0].shape[0] * ctx.inputs[0].shape[1];
  const float* in = ctx.inputs[0].as<const float>();
  float* out = ctx.outputs[0].as<float>();
  for (int64_t p = 0; p < planes; ++p) {
    float* y = out + p * w.out_size();
    for_each_window(w, taps, in + p * w.in_size(),
                    [&](int64_t o, int64_t od, int64_t oh, int64_t ow, auto&& window_values) {
                      double sum = 0.0;
                      window_values([&](float v) { sum += v; });
                      const int64_t divisor = counts[0][static_cast<size_t>(od)] *
                                              counts[1][static_cast<size_t>(oh)] *
                                              counts[2][static_cast<size_t>(ow)];
                      y[o] = divisor > 0 ? static_cast<float>(sum / static_cast<double>(divisor))
                                         : std::numeric_limits<float>::quiet_NaN();
                    });
  }
}

// LpPool: (sum over the window of |x|^p)^(1/p), accumulated in double. Padding counts as zeros,
// which add nothing, so only the in-bounds taps are visited.
void lp_pool_kernel(KernelContext& ctx) {
  const Window3d w = pool_window(ctx);
  const auto taps = in_bounds_taps(w);
  const int64_t p = ctx.attrs.get_int_or("p", 2);
  if (p < 1) ctx.fail(ErrorCode::kInvalidArgument, "attribute 'p' must be >= 1, got ", p);
  const auto exponent = static_cast<double>(p);
  const int64_t planes = ctx.inputs[0].shape[0] * ctx.inputs[0].shape[1];
  const float* in = ctx.inputs[0].as<const float>();
  float* out = ctx.outputs[0].as<float>();
  for (int64_t plane = 0; plane < planes; ++plane) {
    float* y = out + plane * w.out_size();
    for_each_window(w, taps, in + plane * w.in_size(),
                    [&](int64_t o, int64_t, int64_t, int64_t, auto&& window_values) {
                      double sum = 0.0;
                      window_values([&](float v) {
                        const double magnitude = std::fabs(static_cast<double>(v));
                        sum += p == 1 ? magnitude
                               : p == 2 ? magnitude * magnitude
                                        : std::pow(magnitude, exponent);
                      });
                      const double norm = p == 1   ? sum
                                          : p == 2 ? std::sqrt(sum)
                                                   : std::pow(sum, 1.0 / exponent);
                      y[o] = static_cast<float>(norm);
                    });
  }
}

template <bool kMax>
void global_pool_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_output(ctx, 0);
  const Shape& x = ctx.inputs[0].shape;
  if (x.size() < 3) {
    ctx.fail(ErrorCode::kInvalidArgument, "X must have rank >= 3, got ", shape_to_string(x));
  }
  Shape expected = x;
  for (size_t i = 2; i < expected.size(); ++i) expected[i] = 1;
  nn::require_output_shape(ctx, 0, expected);
  const int64_t planes = x[0] * x[1];
  const int64_t size = shape_numel(Shape(x.begin() + 2, x.end()));
  const float* in = ctx.inputs[0].as<const float>();
  float* out = ctx.outputs[0].as<float>();
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = in + p * size;
    if constexpr (kMax) {
      float best = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < size; ++i) {
        if (plane[i] > best || std::isnan(plane[i])) best = plane[i];
      }
      out[p] = best;
    } else {
      double sum = 0.0;
      for (int64_t i = 0; i < size; ++i) sum += plane[i];
      out[p] = static_cast<float>(sum / static_cast<double>(size));
    }
  }
}

// ---- NHWC without permutes ---------------------------------------------------------------------
// The pooling ops of an NHWC region (the CPU target keeps convolution regions NHWC) computed in
// place: every window position reads a row of C contiguous channels, so the loops run along C.
// Same arithmetic as the NCHW kernels (maxima with NaN winning, sums in double), rows of output
// pixels split over the context's threads.

// Global pooling of [N, H, W, C] into [N, 1, 1, C].
template <bool kMax>
void global_pool_nhwc(KernelContext& ctx) {
  const Shape& x = ctx.inputs[0].shape;
  const int64_t batch = x[0], pixels = x[1] * x[2], channels = x[3];
  const float* in = ctx.inputs[0].as<const float>();
  float* out = ctx.outputs[0].as<float>();
  if constexpr (!kMax) {
    middle_axis_mean(in, batch, pixels, channels, static_cast<double>(pixels), out);  // no pixels: NaN
  } else {
    constexpr int64_t kStrip = 256;
    const int64_t strips = (channels + kStrip - 1) / kStrip;
    parallel_chunks(batch * strips, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, pixels * kStrip)),
                    [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / strips;
        const int64_t first = task % strips * kStrip;
        const int64_t width = std::min(kStrip, channels - first);
        float* y = out + n * channels + first;
        std::fill(y, y + width, -std::numeric_limits<float>::infinity());
        for (int64_t p = 0; p < pixels; ++p) simd::max_into(in + (n * pixels + p) * channels + first, y, width);
      }
    });
  }
}

// MaxPool (no Indices) and AveragePool of [N, H, W, C], 2-D windows.
template <bool kMax>
void window_pool_nhwc(KernelContext& ctx, const Window3d& w) {
  const auto taps = in_bounds_taps(w);
  const bool include_pad = !kMax && ctx.attrs.get_int_or("count_include_pad", 0) != 0;
  const Shape& x = ctx.inputs[0].shape;
  const int64_t batch = x[0], in_h = x[1], in_w = x[2], channels = x[3];
  const int64_t out_h = w.out[1], out_w = w.out[2];
  const float* in = ctx.inputs[0].as<const float>();
  float* out = ctx.outputs[0].as<float>();
  parallel_chunks(batch * out_h, std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, out_w * channels)),
                  [&](int64_t begin, int64_t end) {
    std::vector<double> sums(kMax ? 0 : static_cast<size_t>(channels));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / out_h, oh = row % out_h;
      const AxisTaps& th = taps[1][static_cast<size_t>(oh)];
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const AxisTaps& tw = taps[2][static_cast<size_t>(ow)];
        float* y = out + ((n * out_h + oh) * out_w + ow) * channels;
        if constexpr (kMax) std::fill(y, y + channels, -std::numeric_limits<float>::infinity());
        if constexpr (!kMax) std::fill(sums.begin(), sums.end(), 0.0);
        for (int64_t a = 0; a < th.count; ++a) {
          const int64_t ih = th.first + a * w.dilation[1];
          for (int64_t b = 0; b < tw.count; ++b) {
            const int64_t iw = tw.first + b * w.dilation[2];
            const float* src = in + ((n * in_h + ih) * in_w + iw) * channels;
            if constexpr (kMax) {
              // A NaN, once taken, stays (it wins over every number, as in the NCHW kernel).
              simd::max_into(src, y, channels);
            } else {
              simd::accumulate(src, sums.data(), channels);
            }
          }
        }
        if constexpr (!kMax) {
          const int64_t divisor = include_pad ? points_within(w, 1, oh, -w.pad_begin[1], w.in[1] + w.pad_end[1]) *
                                                    points_within(w, 2, ow, -w.pad_begin[2], w.in[2] + w.pad_end[2])
                                              : th.count * tw.count;
          for (int64_t c = 0; c < channels; ++c) {
            y[c] = divisor > 0 ? static_cast<float>(sums[static_cast<size_t>(c)] / static_cast<double>(divisor))
                               : std::numeric_limits<float>::quiet_NaN();
          }
        }
      }
    }
  });
}

// The pools above where they apply: 4-D float32 in and out, and (windowed pools) one output.
template <KernelFn NchwKernel>
bool try_pool_nhwc(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  if (x.shape.size() != 4 || x.dtype != DType::kFloat32 || ctx.outputs[0].dtype != DType::kFloat32) return false;
  simd::level();  // the vector loops' level for this call
  if constexpr (NchwKernel == &global_pool_kernel<false> || NchwKernel == &global_pool_kernel<true>) {
    nn::require_output_shape(ctx, 0, Shape{x.shape[0], 1, 1, x.shape[3]});
    global_pool_nhwc<NchwKernel == &global_pool_kernel<true>>(ctx);
    return true;
  } else if constexpr (NchwKernel == &max_pool_kernel || NchwKernel == &average_pool_kernel) {
    if (ctx.outputs.size() > 1 || ctx.attrs.get_ints("kernel_shape").size() != 2) return false;
    // The window in NCHW terms (its checks are the NCHW kernel's).
    std::vector<TensorView> inputs(ctx.inputs.begin(), ctx.inputs.end());
    inputs[0].shape = ops::nn::nhwc_to_nchw(x.shape);
    std::vector<TensorView> outputs(ctx.outputs.begin(), ctx.outputs.end());
    if (outputs[0].shape.size() != 4) return false;
    outputs[0].shape = ops::nn::nhwc_to_nchw(outputs[0].shape);
    const KernelContext nchw{ctx.node_name, ctx.op, ctx.attrs, inputs, outputs};
    const Window3d w = pool_window(nchw);
    nn::require_output_shape(ctx, 0, Shape{x.shape[0], w.out[1], w.out[2], x.shape[3]});
    window_pool_nhwc<NchwKernel == &max_pool_kernel>(ctx, w);
    return true;
  } else {
    return false;
  }
}

// Dispatches on kiln_layout.
template <KernelFn NchwKernel>
void layout_aware(KernelContext& ctx) {
  if (ops::nn::is_nhwc_layout(ctx.attrs)) {
    if (try_pool_nhwc<NchwKernel>(ctx)) return;
    nn::run_nhwc_as_nchw(ctx, {}, NchwKernel);
  } else {
    NchwKernel(ctx);
  }
}

// MaxPool over int8/uint8 X: every value is exact in float32, so the float kernel compares
// widened copies and the maxima narrow back exactly (a window with no in-bounds tap, whose float
// maximum is -inf, becomes the dtype's lowest value).
template <typename Int>
void max_pool_integer(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  std::vector<float> widened(static_cast<size_t>(x.numel()));
  const Int* x_data = x.as<const Int>();
  for (size_t i = 0; i < widened.size(); ++i) widened[i] = static_cast<float>(x_data[i]);
  TensorView& y = ctx.outputs[0];
  std::vector<float> pooled(static_cast<size_t>(y.numel()));
  std::vector<TensorView> inputs(ctx.inputs.begin(), ctx.inputs.end());
  inputs[0] = TensorView{DType::kFloat32, x.shape, widened.data()};
  std::vector<TensorView> outputs(ctx.outputs.begin(), ctx.outputs.end());
  outputs[0] = TensorView{DType::kFloat32, y.shape, pooled.data()};
  KernelContext widened_ctx{ctx.node_name, ctx.op, ctx.attrs, inputs, outputs};
  layout_aware<max_pool_kernel>(widened_ctx);
  Int* y_data = y.as<Int>();
  for (size_t i = 0; i < pooled.size(); ++i) {
    const float lowest = static_cast<float>(std::numeric_limits<Int>::lowest());
    y_data[i] = static_cast<Int>(std::max(pooled[i], lowest));
  }
}

void max_pool_any_dtype(KernelContext& ctx) {
  const DType dtype = ctx.inputs[0].dtype;
  if (ctx.outputs[0].dtype != dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 has dtype ", dtype_name(ctx.outputs[0].dtype),
             " but X has ", dtype_name(dtype));
  }
  if (dtype == DType::kUInt8) {
    max_pool_integer<uint8_t>(ctx);
  } else if (dtype == DType::kInt8) {
    max_pool_integer<int8_t>(ctx);
  } else {
    layout_aware<max_pool_kernel>(ctx);
  }
}

// Scatters X into zeros at its indices, which address the unpooled shape flattened row-major;
// that shape sits at the origin of the output (output_shape may be larger). Copies element bytes,
// so every dtype works.
void max_unpool_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const Shape unpooled =
      ops::nn::max_unpool_inferred_shape(nn::label_of(ctx), ctx.attrs, x.shape);
  for (size_t d = 0; d < unpooled.size(); ++d) {
    if (out.shape.size() != unpooled.size() || out.shape[d] < unpooled[d]) {
      ctx.fail(ErrorCode::kInvalidArgument, "the output shape ", shape_to_string(out.shape),
               " does not hold the unpooled shape ", shape_to_string(unpooled));
    }
  }
  const size_t element = dtype_size(x.dtype);
  if (out.nbytes() > 0) std::memset(out.data, 0, out.nbytes());
  const int64_t limit = shape_numel(unpooled);
  const int64_t* indices = ctx.inputs[1].as<const int64_t>();
  const auto* src = static_cast<const uint8_t*>(x.data);
  auto* dst = static_cast<uint8_t*>(out.data);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t index = indices[i];
    if (index < 0 || index >= limit) {
      ctx.fail(ErrorCode::kInvalidArgument, "index ", index, " at element ", i, " of input 1 (I) is outside [0, ",
               limit, ") (the unpooled shape ", shape_to_string(unpooled), ")");
    }
    int64_t offset = 0, stride = 1;
    for (size_t d = unpooled.size(); d-- > 0;) {
      offset += (index % unpooled[d]) * stride;
      index /= unpooled[d];
      stride *= out.shape[d];
    }
    std::memcpy(dst + offset * element, src + i * element, element);
  }
}

}  // namespace

void register_pooling_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<max_pool_any_dtype>(registry, "MaxPool");
  nn::add_float_kernel<layout_aware<average_pool_kernel>>(registry, "AveragePool");
  registry.add("MaxUnpool", {max_unpool_kernel, false});
  nn::add_float_kernel<lp_pool_kernel>(registry, "LpPool");
  nn::add_float_kernel<layout_aware<global_pool_kernel<false>>>(registry, "GlobalAveragePool");
  nn::add_float_kernel<layout_aware<global_pool_kernel<true>>>(registry, "GlobalMaxPool");
}

}  // namespace kiln::cpu
