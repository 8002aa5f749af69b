// A checked wrapper over OpenBLAS's cblas_sgemm for the CPU kernels.
#pragma once

#include <cstdint>

#include "backends/cpu/cpu_kernel.hpp"

namespace kiln::cpu::nn {

// Row-major C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, where op transposes when
// the flag is set. Handles empty extents (BLAS rejects leading dimensions of 0) and fails with
// kUnsupported naming the node when an extent exceeds BLAS's 32-bit integer range.
void sgemm_row_major(const KernelContext& ctx, bool transpose_a, bool transpose_b, int64_t m,
                     int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                     int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace kiln::cpu::nn
