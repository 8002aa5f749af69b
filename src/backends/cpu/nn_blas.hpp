// Checked wrappers over OpenBLAS's cblas_sgemm and cblas_dgemm for the CPU kernels.
#pragma once

#include <cstdint>

#include "backends/cpu/cpu_kernel.hpp"

namespace kiln::cpu::nn {

// Row-major C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, where op transposes when
// the flag is set. Handles empty extents (BLAS rejects leading dimensions of 0) and fails with
// kUnsupported naming the node when an extent exceeds BLAS's 32-bit integer range. Large products
// are split into strips of C over the calling context's threads (intra_op_threads.hpp); OpenBLAS
// itself runs single-threaded.
void sgemm_row_major(const KernelContext& ctx, bool transpose_a, bool transpose_b, int64_t m,
                     int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                     int64_t ldb, float beta, float* c, int64_t ldc);

// The same in double precision through cblas_dgemm (float64 Gemm, MatMul and Einsum).
void dgemm_row_major(const KernelContext& ctx, bool transpose_a, bool transpose_b, int64_t m,
                     int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                     const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

// Overloads picking sgemm or dgemm from the element type, for templated kernels.
inline void gemm_row_major(const KernelContext& ctx, bool ta, bool tb, int64_t m, int64_t n,
                           int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                           int64_t ldb, float beta, float* c, int64_t ldc) {
  sgemm_row_major(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm_row_major(const KernelContext& ctx, bool ta, bool tb, int64_t m, int64_t n,
                           int64_t k, double alpha, const double* a, int64_t lda, const double* b,
                           int64_t ldb, double beta, double* c, int64_t ldc) {
  dgemm_row_major(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace kiln::cpu::nn
