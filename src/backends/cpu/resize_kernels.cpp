// Resize on the CPU: nearest and N-linear interpolation over any set of axes. Coordinates are
// computed in float, as ONNX Runtime does, so rounding ties resolve the same way.
#include <algorithm>
#include <cmath>
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
