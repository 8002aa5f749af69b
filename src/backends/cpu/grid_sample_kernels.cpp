// GridSample and AffineGrid on the CPU (the reference; no CUDA kernels yet), in double.
//
// Each output position reads its grid entry (x first: grid[..., 0] addresses the innermost input
// dim) and maps each normalised coordinate c in [-1, 1] to a source position: (c + 1) / 2 *
// (size - 1) with align_corners, else ((c + 1) * size - 1) / 2. Linear and nearest sampling first
// apply the padding mode to that position (border: clamp to [0, size - 1]; reflection: reflect
// over the corner pixels' centres with align_corners, else over their outer edges, then clamp);
// taps that still fall outside read 0. Nearest rounds half to even. Cubic sampling (2-D) weighs the
// 4x4 taps around the position with the cubic convolution kernel (A = -0.75) and applies the
// padding mode to each tap's index instead, zeros reading 0 outside.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/nn_grid_sample.hpp"

namespace kiln::cpu {
namespace {

using ops::nn::GridSampleMode;
using ops::nn::GridSamplePadding;
using ops::nn::GridSampleParams;

constexpr size_t kMaxSpatial = 8;

double unnormalize(double coordinate, int64_t size, bool align_corners) {
  return align_corners ? (coordinate + 1.0) / 2.0 * static_cast<double>(size - 1)
                       : ((coordinate + 1.0) * static_cast<double>(size) - 1.0) / 2.0;
}

// Reflects `x` into [low, high] (a triangle wave of period 2 * (high - low)).
double reflect(double x, double low, double high) {
  const double span = high - low;
  if (span <= 0.0) return low;
  double d = std::fabs(x - low);
  const double period = 2.0 * span;
  d = std::fmod(d, period);
  return d <= span ? low + d : high - (d - span);
}

double apply_padding(double x, int64_t size, const GridSampleParams& p) {
  const double last = static_cast<double>(size - 1);
  if (p.padding == GridSamplePadding::kBorder) return std::clamp(x, 0.0, last);
  if (p.padding == GridSamplePadding::kReflection) {
    x = p.align_corners ? reflect(x, 0.0, last) : reflect(x, -0.5, last + 0.5);
    return std::clamp(x, 0.0, last);
  }
  return x;
}

// Cubic convolution weights of the taps at floor(t) - 1 .. floor(t) + 2 for fraction t.
std::array<double, 4> cubic_weights(double t) {
  constexpr double a = -0.75;
  const auto near = [](double x) { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0; };
  const auto far = [](double x) { return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a; };
  return {far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)};
}

struct Sampler {
  const float* image = nullptr;  // one channel: product(sizes) values
  std::vector<int64_t> sizes;    // spatial dims, outermost first
  std::vector<int64_t> strides;
  GridSampleParams params;

  // The value at integer index `at` (outermost first), 0 outside.
  double at(const std::array<int64_t, kMaxSpatial>& index) const {
    int64_t offset = 0;
    for (size_t d = 0; d < sizes.size(); ++d) {
      if (index[d] < 0 || index[d] >= sizes[d]) return 0.0;
      offset += index[d] * strides[d];
    }
    return image[offset];
  }

  double nearest(const std::array<double, kMaxSpatial>& position) const {
    std::array<int64_t, kMaxSpatial> index{};
    for (size_t d = 0; d < sizes.size(); ++d) index[d] = static_cast<int64_t>(std::nearbyint(position[d]));
    return at(index);
  }

  // Multilinear: 2^r taps.
  double linear(const std::array<double, kMaxSpatial>& position) const {
    const size_t rank = sizes.size();
    std::array<int64_t, kMaxSpatial> low{};
    std::array<double, kMaxSpatial> fraction{};
    for (size_t d = 0; d < rank; ++d) {
      const double f = std::floor(position[d]);
      low[d] = static_cast<int64_t>(f);
      fraction[d] = position[d] - f;
    }
    double sum = 0.0;
    for (uint32_t corner = 0; corner < (1u << rank); ++corner) {
      std::array<int64_t, kMaxSpatial> index{};
      double weight = 1.0;
      for (size_t d = 0; d < rank; ++d) {
        const bool high = (corner >> d) & 1u;
        index[d] = low[d] + (high ? 1 : 0);
        weight *= high ? fraction[d] : 1.0 - fraction[d];
      }
      if (weight != 0.0) sum += weight * at(index);
    }
    return sum;
  }

  // Bicubic (2-D): the padding mode applies to each tap's index.
  double cubic(const std::array<double, kMaxSpatial>& position) const {
    const double fy = std::floor(position[0]), fx = std::floor(position[1]);
    const std::array<double, 4> wy = cubic_weights(position[0] - fy), wx = cubic_weights(position[1] - fx);
    double sum = 0.0;
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) {
        std::array<int64_t, kMaxSpatial> index{};
        const double y = fy - 1.0 + i, x = fx - 1.0 + j;
        index[0] = std::llround(params.padding == GridSamplePadding::kZeros ? y : apply_padding(y, sizes[0], params));
        index[1] = std::llround(params.padding == GridSamplePadding::kZeros ? x : apply_padding(x, sizes[1], params));
        sum += wy[static_cast<size_t>(i)] * wx[static_cast<size_t>(j)] * at(index);
      }
    }
    return sum;
  }
};

void grid_sample_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_input(ctx, 1);
  nn::require_float32_output(ctx, 0);
  const GridSampleParams params = ops::nn::read_grid_sample_params(nn::label_of(ctx), ctx.attrs);
  const TensorView& x = ctx.inputs[0];
  const TensorView& grid = ctx.inputs[1];
  const size_t rank = x.shape.size() >= 2 ? x.shape.size() - 2 : 0;
  if (rank == 0 || rank > kMaxSpatial || grid.shape.size() != x.shape.size() ||
      grid.shape.back() != static_cast<int64_t>(rank) || grid.shape[0] != x.shape[0]) {
    ctx.fail(ErrorCode::kInvalidArgument, "X ", shape_to_string(x.shape), " and grid ", shape_to_string(grid.shape),
             " do not fit (grid [N, H1, ..., Hr, r] for X [N, C, D1, ..., Dr], r <= ", kMaxSpatial, ")");
  }
  if (params.mode == GridSampleMode::kCubic && rank != 2) {
    ctx.fail(ErrorCode::kInvalidArgument, "cubic interpolation takes 2-D images, got ", rank, " spatial dims");
  }
  Shape out_shape{x.shape[0], x.shape[1]};
  out_shape.insert(out_shape.end(), grid.shape.begin() + 1, grid.shape.end() - 1);
  nn::require_output_shape(ctx, 0, out_shape);

  Sampler sampler;
  sampler.params = params;
  sampler.sizes.assign(x.shape.begin() + 2, x.shape.end());
  sampler.strides.assign(rank, 1);
  for (size_t d = rank - 1; d > 0; --d) sampler.strides[d - 1] = sampler.strides[d] * sampler.sizes[d];
  const int64_t image = shape_numel(Shape(x.shape.begin() + 2, x.shape.end()));
  const int64_t positions = shape_numel(Shape(grid.shape.begin() + 1, grid.shape.end() - 1));
  const int64_t batch = x.shape[0], channels = x.shape[1];
  const float* in = x.as<const float>();
  const float* coordinates = grid.as<const float>();
  float* out = ctx.outputs[0].as<float>();
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t p = 0; p < positions; ++p) {
      const float* g = coordinates + (n * positions + p) * static_cast<int64_t>(rank);
      std::array<double, kMaxSpatial> position{};
      for (size_t d = 0; d < rank; ++d) {
        const double source = unnormalize(g[rank - 1 - d], sampler.sizes[d], params.align_corners);
        position[d] = params.mode == GridSampleMode::kCubic ? source : apply_padding(source, sampler.sizes[d], params);
      }
      for (int64_t c = 0; c < channels; ++c) {
        sampler.image = in + (n * channels + c) * image;
        const double value = params.mode == GridSampleMode::kNearest ? sampler.nearest(position)
                             : params.mode == GridSampleMode::kLinear ? sampler.linear(position)
                                                                      : sampler.cubic(position);
        out[(n * channels + c) * positions + p] = static_cast<float>(value);
      }
    }
  }
}

// AffineGrid: grid[n, ..., k] = sum_j theta[n, k, j] * base[j] + theta[n, k, r], base being the
// normalised coordinates (x first) of each output position: -1 + 2 i / (S - 1) with align_corners
// (0 when S is 1, as PyTorch has it), else (2 i + 1) / S - 1.
void affine_grid_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_output(ctx, 0);
  const TensorView& theta = ctx.inputs[0];
  const std::vector<int64_t> size = read_indices(ctx.inputs[1]);
  const bool align_corners = ctx.attrs.get_int_or("align_corners", 0) != 0;
  const size_t rank = size.size() - 2;
  if ((rank != 2 && rank != 3) || theta.shape != Shape{size[0], static_cast<int64_t>(rank), static_cast<int64_t>(rank) + 1}) {
    ctx.fail(ErrorCode::kInvalidArgument, "theta ", shape_to_string(theta.shape), " does not fit size ",
             shape_to_string(Shape(size.begin(), size.end())));
  }
  Shape out_shape{size[0]};
  out_shape.insert(out_shape.end(), size.begin() + 2, size.end());
  out_shape.push_back(static_cast<int64_t>(rank));
  nn::require_output_shape(ctx, 0, out_shape);
  const auto coordinate = [&](int64_t i, int64_t extent) {
    if (align_corners) return extent == 1 ? 0.0 : -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(extent - 1);
    return (2.0 * static_cast<double>(i) + 1.0) / static_cast<double>(extent) - 1.0;
  };
  const std::vector<int64_t> spatial(size.begin() + 2, size.end());  // outermost first
  const int64_t positions = shape_numel(Shape(spatial.begin(), spatial.end()));
  const float* t = theta.as<const float>();
  float* out = ctx.outputs[0].as<float>();
  std::array<double, 3> base{};
  for (int64_t n = 0; n < size[0]; ++n) {
    const float* m = t + n * static_cast<int64_t>(rank * (rank + 1));
    for (int64_t p = 0; p < positions; ++p) {
      int64_t rest = p;
      for (size_t d = rank; d-- > 0;) {  // base[0] is x, the innermost dim
        base[rank - 1 - d] = coordinate(rest % spatial[d], spatial[d]);
        rest /= spatial[d];
      }
      for (size_t k = 0; k < rank; ++k) {
        double value = m[k * (rank + 1) + rank];
        for (size_t j = 0; j < rank; ++j) value += m[k * (rank + 1) + j] * base[j];
        out[(n * positions + p) * static_cast<int64_t>(rank) + static_cast<int64_t>(k)] = static_cast<float>(value);
      }
    }
  }
}

}  // namespace

void register_grid_sample_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<grid_sample_kernel>(registry, "GridSample");
  nn::add_float_kernel<affine_grid_kernel>(registry, "AffineGrid");
}

}  // namespace kiln::cpu
