// Resize on the CPU: nearest and N-linear interpolation over any set of axes. Coordinates are
// computed in float, as ONNX Runtime does, so rounding ties resolve the same way.
//
// Cubic, antialias and tf_crop_and_resize take a second, separable path (as the ONNX reference
// computes them): per resized axis, each output position blends a window of input positions with
// filter weights, one axis after the other, in double.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/nn_resize.hpp"

namespace kiln::cpu {
namespace {

using ops::nn::CoordinateTransform;
using ops::nn::NearestRounding;

float original_coordinate(CoordinateTransform transform, float x, float scale, int64_t in,
                          int64_t out) {
  switch (transform) {
    case CoordinateTransform::kHalfPixel:
      return (x + 0.5f) / scale - 0.5f;
    case CoordinateTransform::kHalfPixelSymmetric: {
      const float adjustment = static_cast<float>(out) / (scale * static_cast<float>(in));
      const float center = static_cast<float>(in) / 2.0f;
      return center * (1.0f - adjustment) + (x + 0.5f) / scale - 0.5f;
    }
    case CoordinateTransform::kPytorchHalfPixel:
      return out > 1 ? (x + 0.5f) / scale - 0.5f : 0.0f;
    case CoordinateTransform::kAlignCorners:
      return out == 1 ? 0.0f : x * static_cast<float>(in - 1) / static_cast<float>(out - 1);
    case CoordinateTransform::kAsymmetric:
      return x / scale;
    case CoordinateTransform::kTfCropAndResize:
      break;  // needs the roi: tf_crop_coordinate
  }
  return 0.0f;
}

int64_t nearest_index(NearestRounding rounding, float x, int64_t in) {
  float rounded = 0.0f;
  switch (rounding) {
    case NearestRounding::kRoundPreferFloor:
      rounded = (x == std::floor(x) + 0.5f) ? std::floor(x) : std::round(x);
      break;
    case NearestRounding::kRoundPreferCeil:
      rounded = (x == std::floor(x) + 0.5f) ? std::ceil(x) : std::round(x);
      break;
    case NearestRounding::kFloor:
      rounded = std::floor(x);
      break;
    case NearestRounding::kCeil:
      rounded = std::ceil(x);
      break;
  }
  if (!(rounded >= 0.0f)) return 0;  // also maps NaN to 0
  return std::min(static_cast<int64_t>(rounded), in - 1);
}

// tf_crop_and_resize: output position x of `out` in the box [roi.first, roi.second] of an axis of
// extent `in` (normalised coordinates); the box's centre when the output has one position.
double tf_crop_coordinate(int64_t x, std::pair<double, double> roi, int64_t in, int64_t out) {
  const double last = static_cast<double>(in - 1);
  if (out == 1) return 0.5 * (roi.first + roi.second) * last;
  return roi.first * last +
         static_cast<double>(x) * (roi.second - roi.first) * last / static_cast<double>(out - 1);
}

// The interpolation filter at distance t (in input positions, scaled when antialiasing).
double filter_weight(ops::nn::ResizeMode mode, double a, double t) {
  t = std::fabs(t);
  if (mode == ops::nn::ResizeMode::kLinear) return std::max(0.0, 1.0 - t);
  // Keys' cubic convolution with coefficient a (cubic_coeff_a).
  if (t <= 1.0) return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0;
  if (t < 2.0) return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a;
  return 0.0;
}

// One axis of the filter-tap path: per output position, `width` input positions (clamped into
// the input, which repeats its edge values) and their weights, or extrapolated (tf_crop_and_resize
// outside the input: the output is extrapolation_value).
struct AxisFilter {
  int64_t width = 1;
  std::vector<int64_t> index;  // out * width
  std::vector<double> weight;  // out * width
  std::vector<bool> extrapolated;
};

AxisFilter axis_filter(const ops::nn::ResizeAttributes& attrs, float scale, int64_t in,
                       int64_t out, std::pair<double, double> roi) {
  AxisFilter f;
  const bool nearest = attrs.mode == ops::nn::ResizeMode::kNearest;
  // The filter reaches `support` input positions either side; antialiasing a downscale widens it
  // by 1 / scale and scales the distances by scale.
  const double support = attrs.mode == ops::nn::ResizeMode::kCubic ? 2.0 : 1.0;
  const double stretch = attrs.antialias ? std::min(static_cast<double>(scale), 1.0) : 1.0;
  const int64_t first_tap = nearest ? 0 : static_cast<int64_t>(std::floor(-support / stretch)) + 1;
  f.width = nearest ? 1 : 2 - 2 * first_tap;
  const auto width = static_cast<size_t>(f.width);
  f.index.resize(static_cast<size_t>(out) * width);
  f.weight.resize(static_cast<size_t>(out) * width);
  f.extrapolated.assign(static_cast<size_t>(out), false);
  const double a = attrs.cubic_coeff_a;
  for (int64_t o = 0; o < out; ++o) {
    const size_t row = static_cast<size_t>(o) * width;
    double x = 0.0;
    if (attrs.transform == CoordinateTransform::kTfCropAndResize) {
      x = tf_crop_coordinate(o, roi, in, out);
      if (x < 0.0 || x > static_cast<double>(in - 1)) {
        f.extrapolated[static_cast<size_t>(o)] = true;
        continue;
      }
    } else {
      x = original_coordinate(attrs.transform, static_cast<float>(o), scale, in, out);
    }
    if (!std::isfinite(x)) x = 0.0;
    if (nearest) {
      f.index[row] = nearest_index(attrs.rounding, static_cast<float>(x), in);
      f.weight[row] = 1.0;
      continue;
    }
    // The taps are base + first_tap .. base + 1 - first_tap, base being the input position left
    // of x (x - 1 when x is whole, so that the window is the one the ONNX reference takes).
    const double floor_x = std::floor(x);
    const auto base = static_cast<int64_t>(floor_x == x ? floor_x - 1.0 : floor_x);
    double sum = 0.0;
    for (size_t k = 0; k < width; ++k) {
      const int64_t j = base + first_tap + static_cast<int64_t>(k);
      const double w = filter_weight(attrs.mode, a, (static_cast<double>(j) - x) * stretch);
      f.index[row + k] = j;
      f.weight[row + k] = w;
      sum += w;
    }
    if (attrs.antialias && sum != 0.0) {
      for (size_t k = 0; k < width; ++k) f.weight[row + k] /= sum;
    }
    if (attrs.exclude_outside) {
      double inside = 0.0;
      for (size_t k = 0; k < width; ++k) {
        const int64_t j = f.index[row + k];
        if (j < 0 || j >= in) f.weight[row + k] = 0.0;
        inside += f.weight[row + k];
      }
      if (inside != 0.0) {
        for (size_t k = 0; k < width; ++k) f.weight[row + k] /= inside;
      }
    }
    for (size_t k = 0; k < width; ++k) {
      f.index[row + k] = std::clamp<int64_t>(f.index[row + k], 0, in - 1);
    }
  }
  return f;
}

// Resamples axis `axis` of `src` (shape `shape`) into `dst` with `f`; shape[axis] becomes `out`.
template <typename Src>
void resample_axis(const Src* src, const Shape& shape, size_t axis, int64_t out,
                   const AxisFilter& f, double extrapolation_value, double* dst) {
  const auto split = shape.begin() + static_cast<int64_t>(axis);
  const int64_t outer = shape_numel(Shape(shape.begin(), split));
  const int64_t in = shape[axis];
  const int64_t inner = shape_numel(Shape(split + 1, shape.end()));
  const auto width = static_cast<size_t>(f.width);
  for (int64_t p = 0; p < outer; ++p) {
    const Src* plane = src + p * in * inner;
    for (int64_t o = 0; o < out; ++o) {
      double* line = dst + (p * out + o) * inner;
      if (f.extrapolated[static_cast<size_t>(o)]) {
        std::fill(line, line + inner, extrapolation_value);
        continue;
      }
      std::fill(line, line + inner, 0.0);
      const size_t row = static_cast<size_t>(o) * width;
      for (size_t k = 0; k < width; ++k) {
        const double w = f.weight[row + k];
        if (w == 0.0) continue;
        const Src* taps = plane + f.index[row + k] * inner;
        for (int64_t i = 0; i < inner; ++i) line[i] += w * static_cast<double>(taps[i]);
      }
    }
  }
}

// The filter-tap path (cubic, antialias, tf_crop_and_resize): one resized axis at a time.
void resize_with_filters(const KernelContext& ctx, const ops::nn::ResizeAttributes& attrs,
                         const ops::nn::ResizePlan& plan) {
  const TensorView& x = ctx.inputs[0];
  const size_t rank = x.shape.size();
  std::vector<std::pair<double, double>> roi(rank, {0.0, 1.0});
  if (attrs.transform == CoordinateTransform::kTfCropAndResize) {
    if (!ctx.has_input(1)) {
      ctx.fail(ErrorCode::kInvalidArgument,
               "coordinate_transformation_mode 'tf_crop_and_resize' needs input 1 (roi)");
    }
    std::vector<double> values(static_cast<size_t>(ctx.inputs[1].numel()));
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] = read_as_double(ctx.inputs[1], static_cast<int64_t>(i));
    }
    roi = ops::nn::resize_roi(nn::label_of(ctx), attrs, rank, values);
  }
  Shape shape = x.shape;
  std::vector<double> current, next;
  bool started = false;  // whether `current` holds the data (else x does)
  for (size_t a = 0; a < rank; ++a) {
    const int64_t in = x.shape[a];
    const int64_t out = plan.output[a];
    const bool whole_box = roi[a].first == 0.0 && roi[a].second == 1.0;
    if (in == out && plan.scales[a] == 1.0f && whole_box) continue;
    const AxisFilter f = axis_filter(attrs, plan.scales[a], in, out, roi[a]);
    Shape next_shape = shape;
    next_shape[a] = out;
    next.assign(static_cast<size_t>(shape_numel(next_shape)), 0.0);
    if (started) {
      resample_axis(current.data(), shape, a, out, f, attrs.extrapolation_value, next.data());
    } else {
      resample_axis(x.as<const float>(), shape, a, out, f, attrs.extrapolation_value, next.data());
    }
    current.swap(next);
    shape = std::move(next_shape);
    started = true;
  }
  float* y = ctx.outputs[0].as<float>();
  if (!started) {
    std::memcpy(y, x.as<const float>(), static_cast<size_t>(x.numel()) * sizeof(float));
    return;
  }
  for (size_t i = 0; i < current.size(); ++i) y[i] = static_cast<float>(current[i]);
}

// Per output position of one axis: the two input positions it blends and their weights.
struct LinearTap {
  int64_t low = 0;
  int64_t high = 0;
  float weight_high = 0.0f;
};

void resize_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_output(ctx, 0);
  const TensorView& x = ctx.inputs[0];
  const size_t rank = x.shape.size();
  const ops::nn::NodeLabel node = nn::label_of(ctx);
  const ops::nn::ResizeAttributes attrs = ops::nn::read_resize_attributes(node, ctx.attrs, rank);
  const bool has_scales = ctx.has_input(2) && ctx.inputs[2].numel() > 0;
  const bool has_sizes = ctx.has_input(3) && ctx.inputs[3].numel() > 0;
  if (has_scales == has_sizes) {
    ctx.fail(ErrorCode::kInvalidArgument, "exactly one of scales and sizes must be given");
  }
  if (has_scales && attrs.transform == CoordinateTransform::kTfCropAndResize) {
    ctx.fail(ErrorCode::kUnsupported,
             "coordinate_transformation_mode 'tf_crop_and_resize' with 'scales' is not supported; "
             "give 'sizes'");
  }
  ops::nn::ResizePlan plan;
  if (has_scales) {
    nn::require_float32_input(ctx, 2);
    const float* data = ctx.inputs[2].as<const float>();
    plan = ops::nn::plan_resize_from_scales(node, attrs, x.shape,
                                            std::vector<float>(data, data + ctx.inputs[2].numel()));
  } else {
    plan = ops::nn::plan_resize_from_sizes(node, attrs, x.shape, read_indices(ctx.inputs[3]));
  }
  nn::require_output_shape(ctx, 0, plan.output);
  const Shape& out_shape = plan.output;
  if (shape_numel(out_shape) == 0) return;
  if (x.numel() == 0) ctx.fail(ErrorCode::kInvalidArgument, "cannot resize an empty input");
  if (attrs.uses_filter_taps()) {
    resize_with_filters(ctx, attrs, plan);
    return;
  }

  const std::vector<int64_t> in_strides = ops::nn::row_major_strides(x.shape);
  const bool linear = attrs.mode == ops::nn::ResizeMode::kLinear;
  // Per axis: input offsets (nearest) or taps (linear). Axes whose extent and scale are unchanged
  // map every position to itself and take one tap.
  std::vector<std::vector<int64_t>> nearest_offsets(rank);
  std::vector<std::vector<LinearTap>> taps(rank);
  for (size_t a = 0; a < rank; ++a) {
    const int64_t in = x.shape[a];
    const int64_t out = out_shape[a];
    const bool identity = in == out && plan.scales[a] == 1.0f;
    const bool blend = linear && !identity;
    if (blend) {
      taps[a].resize(static_cast<size_t>(out));
    } else {
      nearest_offsets[a].resize(static_cast<size_t>(out));
    }
    for (int64_t o = 0; o < out; ++o) {
      const auto j = static_cast<size_t>(o);
      if (identity) {
        nearest_offsets[a][j] = o * in_strides[a];
        continue;
      }
      const float coordinate =
          original_coordinate(attrs.transform, static_cast<float>(o), plan.scales[a], in, out);
      if (!blend) {
        nearest_offsets[a][j] = nearest_index(attrs.rounding, coordinate, in) * in_strides[a];
        continue;
      }
      const float clamped =
          std::isnan(coordinate) ? 0.0f : std::clamp(coordinate, 0.0f, static_cast<float>(in - 1));
      const auto low = static_cast<int64_t>(clamped);
      const int64_t high = std::min(low + 1, in - 1);
      taps[a][j] =
          LinearTap{low * in_strides[a], high * in_strides[a], clamped - static_cast<float>(low)};
    }
  }

  // Walk the output line by line (a line runs along the last axis). For each line, the outer
  // axes contribute a short list of (input offset, weight) corners; the last axis then blends
  // or picks within each corner's input line.
  const float* in_data = x.as<const float>();
  float* out_data = ctx.outputs[0].as<float>();
  const size_t last = rank - 1;
  const int64_t line_length = out_shape[last];
  const Shape outer_shape(out_shape.begin(), out_shape.begin() + static_cast<int64_t>(last));
  const int64_t lines = shape_numel(outer_shape);
  struct Corner {
    int64_t offset;
    float weight;
  };
  std::vector<Corner> corners, next;
  std::vector<int64_t> index(last, 0);
  for (int64_t line = 0; line < lines; ++line) {
    corners.assign(1, Corner{0, 1.0f});
    for (size_t a = 0; a < last; ++a) {
      const auto i = static_cast<size_t>(index[a]);
      if (!nearest_offsets[a].empty()) {
        for (Corner& c : corners) c.offset += nearest_offsets[a][i];
        continue;
      }
      const LinearTap& tap = taps[a][i];
      next.clear();
      for (const Corner& c : corners) {
        next.push_back(Corner{c.offset + tap.low, c.weight * (1.0f - tap.weight_high)});
        if (tap.weight_high != 0.0f) {
          next.push_back(Corner{c.offset + tap.high, c.weight * tap.weight_high});
        }
      }
      corners.swap(next);
    }
    float* dst = out_data + line * line_length;
    if (!nearest_offsets[last].empty()) {
      const int64_t* picks = nearest_offsets[last].data();
      for (int64_t o = 0; o < line_length; ++o) {
        float sum = 0.0f;
        for (const Corner& c : corners) sum += c.weight * in_data[c.offset + picks[o]];
        dst[o] = sum;
      }
    } else {
      const LinearTap* line_taps = taps[last].data();
      for (int64_t o = 0; o < line_length; ++o) {
        const LinearTap& tap = line_taps[o];
        float sum = 0.0f;
        for (const Corner& c : corners) {
          const float low = in_data[c.offset + tap.low];
          const float high = in_data[c.offset + tap.high];
          sum += c.weight * (low + tap.weight_high * (high - low));
        }
        dst[o] = sum;
      }
    }
    for (size_t a = last; a-- > 0;) {
      if (++index[a] < out_shape[a]) break;
      index[a] = 0;
    }
  }
}

}  // namespace

void register_resize_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<resize_kernel>(registry, "Resize");
}

}  // namespace kiln::cpu
