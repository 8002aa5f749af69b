// Det on the CPU (the reference; no CUDA kernel yet): LU decomposition with partial pivoting in
// double, per matrix. A singular matrix gives 0 (a zero pivot column), NaN inputs give NaN.
#include <cmath>
#include <utility>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"

namespace kiln::cpu {
namespace {

double determinant(std::vector<double>& a, int64_t m) {
  double det = 1.0;
  for (int64_t col = 0; col < m; ++col) {
    int64_t pivot = col;
    for (int64_t r = col + 1; r < m; ++r) {
      if (std::fabs(a[static_cast<size_t>(r * m + col)]) > std::fabs(a[static_cast<size_t>(pivot * m + col)])) pivot = r;
    }
    const double p = a[static_cast<size_t>(pivot * m + col)];
    if (std::isnan(p)) return p;
    if (p == 0.0) return 0.0;
    if (pivot != col) {
      for (int64_t c = 0; c < m; ++c) std::swap(a[static_cast<size_t>(pivot * m + c)], a[static_cast<size_t>(col * m + c)]);
      det = -det;
    }
    det *= p;
    for (int64_t r = col + 1; r < m; ++r) {
      const double factor = a[static_cast<size_t>(r * m + col)] / p;
      for (int64_t c = col; c < m; ++c) a[static_cast<size_t>(r * m + c)] -= factor * a[static_cast<size_t>(col * m + c)];
    }
  }
  return det;
}

void det_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_output(ctx, 0);
  const TensorView& x = ctx.inputs[0];
  if (x.shape.size() < 2 || x.shape[x.shape.size() - 2] != x.shape.back()) {
    ctx.fail(ErrorCode::kInvalidArgument, "X must be [*, M, M], got ", shape_to_string(x.shape));
  }
  const int64_t m = x.shape.back();
  nn::require_output_shape(ctx, 0, Shape(x.shape.begin(), x.shape.end() - 2));
  const int64_t matrices = shape_numel(Shape(x.shape.begin(), x.shape.end() - 2));
  const float* in = x.as<const float>();
  float* out = ctx.outputs[0].as<float>();
  std::vector<double> a(static_cast<size_t>(m * m));
  for (int64_t i = 0; i < matrices; ++i) {
    for (int64_t k = 0; k < m * m; ++k) a[static_cast<size_t>(k)] = in[i * m * m + k];
    out[i] = static_cast<float>(m == 0 ? 1.0 : determinant(a, m));
  }
}

}  // namespace

void register_det_kernels(CpuKernelRegistry& registry) { nn::add_float_kernel<det_kernel>(registry, "Det"); }

}  // namespace kiln::cpu
