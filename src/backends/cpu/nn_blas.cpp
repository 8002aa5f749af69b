#include "backends/cpu/nn_blas.hpp"

#include <cblas.h>
#include <dlfcn.h>

#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

namespace kiln::cpu::nn {
namespace {

using SgemmFn = decltype(&cblas_sgemm);
using DgemmFn = decltype(&cblas_dgemm);

struct BlasGemms {
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
};

// OpenBLAS chooses its kernels from the CPU model when it is loaded. On virtual machines whose
// CPUID names a generic "Intel Xeon Processor" it falls back to its Prescott (SSE3) kernels, which
// ran small convolution GEMMs 4x slower than its SkylakeX ones on the CI machine. So kiln loads it
// itself, naming the kernel family the CPU's features allow unless the user chose one
// (OPENBLAS_CORETYPE), and removes the variable again so the process environment is unchanged.
const char* kernel_family_for_this_cpu() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

BlasGemms load_gemms() {
  const char* family = std::getenv("OPENBLAS_CORETYPE") == nullptr ? kernel_family_for_this_cpu() : nullptr;
  if (family != nullptr) setenv("OPENBLAS_CORETYPE", family, 0);
  void* library = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) library = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
  const char* error = library == nullptr ? dlerror() : nullptr;
  if (family != nullptr) unsetenv("OPENBLAS_CORETYPE");
  if (library == nullptr) {
    fail(ErrorCode::kUnsupported, "the CPU backend needs OpenBLAS (libopenblas.so.0, Debian package libopenblas0): ",
         error ? error : "not found");
  }
  BlasGemms gemms;
  gemms.sgemm = reinterpret_cast<SgemmFn>(dlsym(library, "cblas_sgemm"));
  gemms.dgemm = reinterpret_cast<DgemmFn>(dlsym(library, "cblas_dgemm"));
  if (gemms.sgemm == nullptr) fail(ErrorCode::kUnsupported, "libopenblas.so.0 has no cblas_sgemm");
  if (gemms.dgemm == nullptr) fail(ErrorCode::kUnsupported, "libopenblas.so.0 has no cblas_dgemm");
  return gemms;
}

const BlasGemms& gemms() {
  static const BlasGemms loaded = load_gemms();  // a failure throws and is retried by the next call
  return loaded;
}

template <typename T>
void blas_gemm(const KernelContext& ctx, bool transpose_a, bool transpose_b, int64_t m,
                    int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                    int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // No products: C = beta * C (beta 0 clears, even NaNs, as BLAS does).
    for (int64_t i = 0; i < m; ++i) {
      T* row = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) row[j] = beta == T{0} ? T{0} : beta * row[j];
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
  const auto call = [&](auto fn) {
    fn(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
       transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
       static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
       static_cast<int>(ldc));
  };
  if constexpr (std::is_same_v<T, float>) {
    call(gemms().sgemm);
  } else {
    call(gemms().dgemm);
  }
}

}  // namespace

void sgemm_row_major(const KernelContext& ctx, bool transpose_a, bool transpose_b, int64_t m,
                     int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                     int64_t ldb, float beta, float* c, int64_t ldc) {
  blas_gemm<float>(ctx, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                        ldc);
}

void dgemm_row_major(const KernelContext& ctx, bool transpose_a, bool transpose_b, int64_t m,
                     int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                     const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  blas_gemm<double>(ctx, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                         ldc);
}

}  // namespace kiln::cpu::nn
