#include "backends/cpu/simd_math.hpp"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string_view>

#include "base/error.hpp"
#include "ops/scalar_math.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define KILN_SIMD_X86 1
#include <immintrin.h>
#else
#define KILN_SIMD_X86 0
#endif

namespace kiln::cpu::simd {
namespace {

#if KILN_SIMD_X86

// Each instruction set's vector primitives, then the shared loops compiled for it. The target
// pragma (GCC's, or clang's attribute push) applies to every function defined up to its pop, the
// included loops too.
// GCC 12's intrinsic headers trip -Wuninitialized (their _mm*_undefined_* idiom), and vector
// arguments of functions compiled for a wider target than the file's trip -Wpsabi; neither
// applies here (every caller of these functions is compiled for the same target).
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#endif
namespace avx512 {

using F = __m512;
using I = __m512i;
using M = __mmask16;
using D = __m512d;
constexpr int64_t kLanes = 16;

inline F set1(float v) { return _mm512_set1_ps(v); }
inline F load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, F v) { _mm512_storeu_ps(p, v); }
inline F add(F a, F b) { return _mm512_add_ps(a, b); }
inline F sub(F a, F b) { return _mm512_sub_ps(a, b); }
inline F mul(F a, F b) { return _mm512_mul_ps(a, b); }
inline F div(F a, F b) { return _mm512_div_ps(a, b); }
inline F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }    // a b + c
inline F fmsub(F a, F b, F c) { return _mm512_fmsub_ps(a, b, c); }    // a b - c
inline F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
// x86 max/min: the second operand when either is NaN.
inline F max_or_second(F a, F b) { return _mm512_max_ps(a, b); }
inline F min_or_second(F a, F b) { return _mm512_min_ps(a, b); }
inline F abs(F a) { return _mm512_abs_ps(a); }
inline F neg(F a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.0f)); }
inline F copy_sign(F magnitude, F sign) {
  const F mask = _mm512_set1_ps(-0.0f);
  return _mm512_or_ps(_mm512_andnot_ps(mask, magnitude), _mm512_and_ps(mask, sign));
}
inline M lt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
inline M ge(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
inline M is_nan(F a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
inline M mask_or(M a, M b) { return static_cast<M>(a | b); }
inline bool mask_any(M a) { return a != 0; }
inline F select(M m, F if_true, F if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }
inline F round_nearest(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// p 2^n for integral n in [-150, 129], rounded once (AVX-512's scalef).
inline F scale_by_pow2(F p, F n) { return _mm512_scalef_ps(p, n); }
inline float horizontal_max(F a) { return _mm512_reduce_max_ps(a); }
inline D dzero() { return _mm512_setzero_pd(); }
inline D dset1(double v) { return _mm512_set1_pd(v); }
inline D widen_lo(F a) { return _mm512_cvtps_pd(_mm512_castps512_ps256(a)); }
inline D widen_hi(F a) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1)); }
inline D dsub(D a, D b) { return _mm512_sub_pd(a, b); }
inline D dadd(D a, D b) { return _mm512_add_pd(a, b); }
inline D dload(const double* p) { return _mm512_loadu_pd(p); }
inline void dstore(double* p, D v) { _mm512_storeu_pd(p, v); }
inline D dfmadd(D a, D b, D c) { return _mm512_fmadd_pd(a, b, c); }
inline void accumulate(D& lo, D& hi, F v) {
  lo = _mm512_add_pd(lo, widen_lo(v));
  hi = _mm512_add_pd(hi, widen_hi(v));
}
inline double dsum(D a) { return _mm512_reduce_add_pd(a); }

#include "backends/cpu/simd_math_body.inc"

}  // namespace avx512
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2 {

using F = __m256;
using I = __m256i;
using M = __m256;  // all-ones lanes where true
using D = __m256d;
constexpr int64_t kLanes = 8;

inline F set1(float v) { return _mm256_set1_ps(v); }
inline F load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, F v) { _mm256_storeu_ps(p, v); }
inline F add(F a, F b) { return _mm256_add_ps(a, b); }
inline F sub(F a, F b) { return _mm256_sub_ps(a, b); }
inline F mul(F a, F b) { return _mm256_mul_ps(a, b); }
inline F div(F a, F b) { return _mm256_div_ps(a, b); }
inline F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
inline F fmsub(F a, F b, F c) { return _mm256_fmsub_ps(a, b, c); }
inline F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
inline F max_or_second(F a, F b) { return _mm256_max_ps(a, b); }
inline F min_or_second(F a, F b) { return _mm256_min_ps(a, b); }
inline F abs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline F neg(F a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
inline F copy_sign(F magnitude, F sign) {
  const F mask = _mm256_set1_ps(-0.0f);
  return _mm256_or_ps(_mm256_andnot_ps(mask, magnitude), _mm256_and_ps(mask, sign));
}
inline M lt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
inline M ge(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
inline M is_nan(F a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
inline M mask_or(M a, M b) { return _mm256_or_ps(a, b); }
inline bool mask_any(M a) { return _mm256_movemask_ps(a) != 0; }
inline F select(M m, F if_true, F if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
inline F round_nearest(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// 2^k for k in [-126, 127].
inline F pow2(I k) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}
// p 2^n for integral n in [-150, 129]: two steps of 2^(n/2), so that a denormal result is rounded
// once (the first product is exact).
inline F scale_by_pow2(F p, F n) {
  const I k = _mm256_cvtps_epi32(n);
  const I half_k = _mm256_srai_epi32(k, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2(half_k)), pow2(_mm256_sub_epi32(k, half_k)));
}
inline float horizontal_max(F a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline D dzero() { return _mm256_setzero_pd(); }
inline D dset1(double v) { return _mm256_set1_pd(v); }
inline D widen_lo(F a) { return _mm256_cvtps_pd(_mm256_castps256_ps128(a)); }
inline D widen_hi(F a) { return _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)); }
inline D dsub(D a, D b) { return _mm256_sub_pd(a, b); }
inline D dadd(D a, D b) { return _mm256_add_pd(a, b); }
inline D dload(const double* p) { return _mm256_loadu_pd(p); }
inline void dstore(double* p, D v) { _mm256_storeu_pd(p, v); }
inline D dfmadd(D a, D b, D c) { return _mm256_fmadd_pd(a, b, c); }
inline void accumulate(D& lo, D& hi, F v) {
  lo = _mm256_add_pd(lo, widen_lo(v));
  hi = _mm256_add_pd(hi, widen_hi(v));
}
inline double dsum(D a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

#include "backends/cpu/simd_math_body.inc"

}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#pragma GCC diagnostic pop
#endif

Level widest_level() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")) {
    return Level::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Level::kAvx2;
  return Level::kScalar;
}

#else

Level widest_level() { return Level::kScalar; }

#endif

// The scalar level: the scalar table's formulas, element by element (the reference kernels').
namespace scalar {

void unary(Unary f, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    switch (f) {
      case Unary::kExp: y[i] = kiln_exp<float>(x[i]); break;
      case Unary::kSigmoid: y[i] = kiln_sigmoid<float>(x[i]); break;
      case Unary::kTanh: y[i] = kiln_tanh<float>(x[i]); break;
      case Unary::kErf: y[i] = kiln_erf<float>(x[i]); break;
      case Unary::kGelu: y[i] = kiln_gelu<float>(x[i]); break;
      case Unary::kGeluTanh: y[i] = kiln_gelu_tanh<float>(x[i]); break;
      case Unary::kSilu: y[i] = kiln_mul<float>(x[i], kiln_sigmoid<float>(x[i])); break;
    }
  }
}

void clip(const float* x, float low, float high, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = kiln_clip<float>(x[i], low, high);
}

void max_into(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] > y[i] || x[i] != x[i]) && y[i] == y[i] ? x[i] : y[i];
}

bool all_finite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

float max(const float* x, int64_t n) {
  float result = x[0];
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] != x[i]) return std::numeric_limits<float>::quiet_NaN();
    result = x[i] > result ? x[i] : result;
  }
  return result;
}

double exp_shifted_sum(const float* x, float shift, float* y, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = kiln_exp<float>(x[i] - shift);
    total += y[i];
  }
  return total;
}

void accumulate(const float* x, double* acc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

void accumulate_rows(const float* x, int64_t rows, int64_t stride, double* acc, int64_t width) {
  for (int64_t r = 0; r < rows; ++r) accumulate(x + r * stride, acc, width);
}

double sum(const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += x[i];
  return total;
}

double sum_squared_deviations(const float* x, double mean, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += (x[i] - mean) * (x[i] - mean);
  return total;
}

void normalize_row(const float* x, float mean, float inv_std, const float* scale, const float* bias,
                   float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = (x[i] - mean) * inv_std * scale[i];
    y[i] = bias ? v + bias[i] : v;
  }
}

void scale(const float* x, float factor, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * factor;
}

void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

}  // namespace scalar

const Level kWidest = widest_level();

// KILN_CPU_SIMD's level, or null for unset or an unknown value (level() reports those).
const Level* requested_level(const char* value, Level& storage) {
  if (value == nullptr || *value == '\0') return nullptr;
  const std::string_view wanted(value);
  if (wanted == "scalar") {
    storage = Level::kScalar;
  } else if (wanted == "avx2") {
    storage = Level::kAvx2;
  } else if (wanted == "avx512") {
    storage = Level::kAvx512;
  } else {
    return nullptr;
  }
  return &storage;
}

Level initial_level() {
  Level storage;
  const Level* asked = requested_level(std::getenv("KILN_CPU_SIMD"), storage);
  return asked && *asked < kWidest ? *asked : kWidest;
}

// The level the loops below dispatch on: the process's KILN_CPU_SIMD at start, then set by each
// level() call, so kernels that ask once per call switch when the variable does, without reading
// the environment per loop.
std::atomic<Level> g_current{initial_level()};

}  // namespace

const char* level_name(Level level) {
  switch (level) {
    case Level::kAvx512: return "avx512";
    case Level::kAvx2: return "avx2";
    case Level::kScalar: break;
  }
  return "scalar";
}

Level level() {
  const char* value = std::getenv("KILN_CPU_SIMD");
  Level storage;
  const Level* asked = requested_level(value, storage);
  if (asked == nullptr && value != nullptr && *value != '\0') {
    fail(ErrorCode::kInvalidArgument, "KILN_CPU_SIMD=\"", value,
         "\": expected \"scalar\", \"avx2\" or \"avx512\" (or unset for the widest this CPU has)");
  }
  const Level chosen = asked && *asked < kWidest ? *asked : kWidest;
  g_current.store(chosen, std::memory_order_relaxed);
  return chosen;
}

// Each entry point runs the level's version of the same loop.
#if KILN_SIMD_X86
#define KILN_SIMD_DISPATCH(call)                 \
  switch (g_current.load(std::memory_order_relaxed)) { \
    case Level::kAvx512: return avx512::call;    \
    case Level::kAvx2: return avx2::call;        \
    case Level::kScalar: break;                  \
  }                                              \
  return scalar::call
#else
#define KILN_SIMD_DISPATCH(call) return scalar::call
#endif

void unary(Unary f, const float* x, float* y, int64_t n) { KILN_SIMD_DISPATCH(unary(f, x, y, n)); }
float max(const float* x, int64_t n) { KILN_SIMD_DISPATCH(max(x, n)); }
bool all_finite(const float* x, int64_t n) { KILN_SIMD_DISPATCH(all_finite(x, n)); }
void max_into(const float* x, float* y, int64_t n) { KILN_SIMD_DISPATCH(max_into(x, y, n)); }
void clip(const float* x, float low, float high, float* y, int64_t n) { KILN_SIMD_DISPATCH(clip(x, low, high, y, n)); }
double exp_shifted_sum(const float* x, float shift, float* y, int64_t n) {
  KILN_SIMD_DISPATCH(exp_shifted_sum(x, shift, y, n));
}
double sum(const float* x, int64_t n) { KILN_SIMD_DISPATCH(sum(x, n)); }
void accumulate(const float* x, double* acc, int64_t n) { KILN_SIMD_DISPATCH(accumulate(x, acc, n)); }
void accumulate_rows(const float* x, int64_t rows, int64_t stride, double* acc, int64_t width) {
  KILN_SIMD_DISPATCH(accumulate_rows(x, rows, stride, acc, width));
}
double sum_squared_deviations(const float* x, double mean, int64_t n) {
  KILN_SIMD_DISPATCH(sum_squared_deviations(x, mean, n));
}
void normalize_row(const float* x, float mean, float inv_std, const float* scale, const float* bias,
                   float* y, int64_t n) {
  KILN_SIMD_DISPATCH(normalize_row(x, mean, inv_std, scale, bias, y, n));
}
void scale(const float* x, float factor, float* y, int64_t n) { KILN_SIMD_DISPATCH(scale(x, factor, y, n)); }
void add(const float* a, const float* b, float* y, int64_t n) { KILN_SIMD_DISPATCH(add(a, b, y, n)); }

#undef KILN_SIMD_DISPATCH

}  // namespace kiln::cpu::simd
