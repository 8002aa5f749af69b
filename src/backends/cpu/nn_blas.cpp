#include "backends/cpu/nn_blas.hpp"

#include <cblas.h>

#include <limits>

namespace kiln::cpu::nn {

void sgemm_row_major(const KernelContext& ctx, bool transpose_a, bool transpose_b, int64_t m,
                     int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                     int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // No products: C = beta * C (beta 0 clears, even NaNs, as BLAS does).
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
    return;
  }
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  for (int64_t extent : {m, n, k, lda, ldb, ldc}) {
    if (extent > kMax) {
      ctx.fail(ErrorCode::kUnsupported, "matrix extent ", extent,
               " exceeds the BLAS limit of 2^31-1");
    }
  }
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
              transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

}  // namespace kiln::cpu::nn
