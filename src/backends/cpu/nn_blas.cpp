#include "backends/cpu/nn_blas.hpp"

#include <cblas.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "backends/cpu/intra_op_threads.hpp"

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
  // kiln splits GEMMs over the calling context's own threads (intra_op_threads.hpp); OpenBLAS
  // threads on top of those would multiply with them (and with other contexts running at once),
  // so OpenBLAS runs each call on the thread that makes it.
  using SetThreadsFn = void (*)(int);
  if (auto set_threads = reinterpret_cast<SetThreadsFn>(dlsym(library, "openblas_set_num_threads"))) {
    set_threads(1);
  }
  return gemms;
}

const BlasGemms& gemms() {
  static const BlasGemms loaded = load_gemms();  // a failure throws and is retried by the next call
  return loaded;
}

// Strips of C are multiples of this many rows or columns (one SIMD-friendly block), and a GEMM
// is split only when each strip gets at least kMinStripWork multiply-adds: below that, waking
// the pool costs more than it saves.
constexpr int64_t kStripAlign = 16;
constexpr int64_t kMinStripWork = int64_t{1} << 17;

// How many strips a GEMM of m x n x k is cut into on a pool of `threads`: 1 (run on the caller)
// for small products.
int64_t parallel_strips(int64_t m, int64_t n, int64_t k, int threads) {
  const int64_t extent = std::max(m, n);
  const int64_t by_extent = (extent + kStripAlign - 1) / kStripAlign;
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const auto by_work = static_cast<int64_t>(std::min(work / kMinStripWork, 1e9));
  return std::max<int64_t>(1, std::min({static_cast<int64_t>(threads), by_extent, by_work}));
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
  // One strip of C: rows [row, row + rows) and columns [col, col + cols).
  const auto strip = [&](int64_t row, int64_t rows, int64_t col, int64_t cols) {
    const T* a_strip = a + (transpose_a ? row : row * lda);
    const T* b_strip = b + (transpose_b ? col * ldb : col);
    T* c_strip = c + row * ldc + col;
    const auto call = [&](auto fn) {
      fn(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
         transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(rows), static_cast<int>(cols),
         static_cast<int>(k), alpha, a_strip, static_cast<int>(lda), b_strip,
         static_cast<int>(ldb), beta, c_strip, static_cast<int>(ldc));
    };
    if constexpr (std::is_same_v<T, float>) {
      call(gemms().sgemm);
    } else {
      call(gemms().dgemm);
    }
  };
  ThreadPool* pool = current_thread_pool();
  const int64_t strips = pool ? parallel_strips(m, n, k, pool->size()) : 1;
  if (strips <= 1) {
    strip(0, m, 0, n);
    return;
  }
  // The longer side of C is cut into `strips` pieces, multiples of kStripAlign where possible.
  const bool split_columns = n >= m;
  const int64_t extent = split_columns ? n : m;
  const int64_t step = (extent / strips + kStripAlign - 1) / kStripAlign * kStripAlign;
  pool->parallel_for(static_cast<size_t>(strips), [&](size_t s) {
    const int64_t begin = std::min(static_cast<int64_t>(s) * step, extent);
    const int64_t end = s + 1 == static_cast<size_t>(strips) ? extent : std::min(begin + step, extent);
    if (begin >= end) return;
    if (split_columns) {
      strip(0, m, begin, end - begin);
    } else {
      strip(begin, end - begin, 0, n);
    }
  });
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
