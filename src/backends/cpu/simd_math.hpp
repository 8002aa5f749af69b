// Vectorised float32 loops for the CPU kernels' fast paths: transcendental activations, row
// reductions and per-row affine maps, written once over a small vector abstraction and compiled
// for AVX-512 and AVX2+FMA (chosen at run time from the CPU's features), with the scalar table's
// formulas (ops/scalar_math.h) as the scalar level. kiln itself is compiled for baseline x86-64,
// where the compiler vectorises plain loops with SSE2 at best and calls libm once per element.
//
// Accuracy: exp, sigmoid, silu (x sigmoid(x)), tanh, erf and gelu are within a few ulp of the scalar table (exp is
// Cephes' polynomial, erf and tanh minimax fits; tests/unit/cpu_simd_test.cpp measures the ulp
// distance over every float of the ranges that matter); NaN, infinities, signed zeros and
// denormal results follow the scalar formulas. Gelu of negative x is computed from erfc, so it is
// closer to the true value than the reference's 1 + erf(x/sqrt 2), which cancels.
#pragma once

#include <cstdint>

namespace kiln::cpu::simd {

enum class Level { kScalar, kAvx2, kAvx512 };

// The level the fast paths run at: the widest this CPU supports, or lower where KILN_CPU_SIMD
// ("scalar", "avx2", "avx512") asks for it (a level the CPU lacks falls back to the widest it
// has). Read on every call, which also sets the level the loops below dispatch on: kernels call it
// once per call, so tests may switch the variable between calls. Throws kInvalidArgument for
// another value.
Level level();
const char* level_name(Level level);

enum class Unary { kExp, kSigmoid, kTanh, kErf, kGelu, kGeluTanh, kSilu };

// y[i] = f(x[i]) for i < n; x == y is allowed.
void unary(Unary f, const float* x, float* y, int64_t n);

// y[i] = min(max(x[i], low), high), NaN when x[i] is (low and high are not NaN); -0 stays -0
// where low is 0, as the scalar table's Clip (and Relu, which is low = 0, high = infinity).
void clip(const float* x, float low, float high, float* y, int64_t n);

// y[i] = max(y[i], x[i]) for i < n, a NaN on either side winning (and staying), as MaxPool's.
void max_into(const float* x, float* y, int64_t n);

// True when no element of x[0, n) is NaN or infinite.
bool all_finite(const float* x, int64_t n);

// The largest element of x[0, n) (n > 0), NaN when any is NaN.
float max(const float* x, int64_t n);

// y[i] = exp(x[i] - shift) for i < n (y may be x); returns their sum, accumulated in double.
double exp_shifted_sum(const float* x, float shift, float* y, int64_t n);

// acc[i] += x[i] for i < n, in double.
void accumulate(const float* x, double* acc, int64_t n);

// acc[i] += x[r * stride + i] over r < rows, for i < width, in double (column sums: global pooling
// of NHWC tensors, reductions over leading axes).
void accumulate_rows(const float* x, int64_t rows, int64_t stride, double* acc, int64_t width);

// Sum of x[0, n) and sum of (x[i] - mean)^2, accumulated in double.
double sum(const float* x, int64_t n);
double sum_squared_deviations(const float* x, double mean, int64_t n);

// y[i] = (x[i] - mean) * inv_std * scale[i] + (bias ? bias[i] : 0), in float.
void normalize_row(const float* x, float mean, float inv_std, const float* scale, const float* bias,
                   float* y, int64_t n);

// y[i] = x[i] * factor (y may be x).
void scale(const float* x, float factor, float* y, int64_t n);

// y[i] = a[i] + b[i] (y may be a or b).
void add(const float* a, const float* b, float* y, int64_t n);

}  // namespace kiln::cpu::simd
