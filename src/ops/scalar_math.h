// The formula of every pointwise (scalar) op, written once. The CPU reference kernels, the CUDA
// elementwise kernels and the fused program include this header, and the CUDA code generator pastes
// its text into every kernel it compiles with NVRTC (codegen/scalar_math_source.hpp). So it
// compiles unchanged as host C++20, in nvcc .cu files (host and device) and under NVRTC, which has
// no standard headers: nothing is included there, and the formulas reach the math library only
// through the kiln_math_* overloads (float and double) below.
//
// Op functions (the table in ops/scalar_ops.cpp names them): template <typename T> R kiln_<op>(
// operands, attributes). T is float or double (16-bit floats compute in float); operands are T,
// or bool where the op reads bools; then one float per attribute, in the table's order; R is T, or
// bool for comparisons, predicates and logic. Callers name T explicitly (kiln_elu<float>(x, 1.0f)),
// also for ops whose operands are all bool.
//
// NaN and infinity follow PyTorch, which users compare against:
// - a NaN operand gives NaN, except in comparisons (false), IsNaN/IsInf, Where's unselected branch
//   and Sign (0, as torch.sign); Relu, LeakyRelu, PRelu, ThresholdedRelu, Elu, Selu and Celu of
//   NaN are NaN;
// - Min, Max, Clip, HardSigmoid and HardSwish propagate a NaN from any operand (fminf/fmaxf would
//   drop it); Min/Max of equal operands (-0 and +0) return the first, as torch.minimum/maximum;
// - Sigmoid and Softplus use overflow-free forms, Elu/Selu/Celu use expm1;
// - Round is rint: half to even in the default rounding mode.
// Denormals are never flushed or assumed flushed: kiln compiles these formulas without fast-math,
// and none depends on flush-to-zero. Generated kernels whose tensors are all 16-bit compile
// division as div.full (<= 2 ulp of float; codegen/group_emitter.hpp says why); every other
// compilation divides correctly rounded.
//
// An include guard rather than #pragma once: the generator pastes this text as a main file.
#ifndef KILN_OPS_SCALAR_MATH_H_
#define KILN_OPS_SCALAR_MATH_H_

#if defined(__CUDACC_RTC__)
#define KILN_SCALAR_FN __device__ __forceinline__
#define KILN_SCALAR_INFINITY_F __int_as_float(0x7f800000)  // NVRTC lacks __builtin_huge_valf
#elif defined(__CUDACC__)
#include <math.h>
#define KILN_SCALAR_FN __host__ __device__ __forceinline__
#define KILN_SCALAR_INFINITY_F __builtin_huge_valf()
#else
#include <math.h>
#define KILN_SCALAR_FN inline
#define KILN_SCALAR_INFINITY_F __builtin_huge_valf()
#endif

// ---- math library: one overload per precision, so each formula is written once ----------------

#define KILN_SCALAR_MATH_1(name, float_fn, double_fn) \
  KILN_SCALAR_FN float kiln_math_##name(float x) {    \
    return float_fn(x);                               \
  }                                                   \
  KILN_SCALAR_FN double kiln_math_##name(double x) {  \
    return double_fn(x);                              \
  }
#define KILN_SCALAR_MATH_2(name, float_fn, double_fn)          \
  KILN_SCALAR_FN float kiln_math_##name(float x, float y) {    \
    return float_fn(x, y);                                     \
  }                                                            \
  KILN_SCALAR_FN double kiln_math_##name(double x, double y) { \
    return double_fn(x, y);                                    \
  }

KILN_SCALAR_MATH_1(exp, expf, exp)
KILN_SCALAR_MATH_1(expm1, expm1f, expm1)
KILN_SCALAR_MATH_1(log, logf, log)
KILN_SCALAR_MATH_1(log1p, log1pf, log1p)
KILN_SCALAR_MATH_1(sqrt, sqrtf, sqrt)
KILN_SCALAR_MATH_1(erf, erff, erf)
KILN_SCALAR_MATH_1(tanh, tanhf, tanh)
KILN_SCALAR_MATH_1(sin, sinf, sin)
KILN_SCALAR_MATH_1(cos, cosf, cos)
KILN_SCALAR_MATH_1(tan, tanf, tan)
KILN_SCALAR_MATH_1(asin, asinf, asin)
KILN_SCALAR_MATH_1(acos, acosf, acos)
KILN_SCALAR_MATH_1(atan, atanf, atan)
KILN_SCALAR_MATH_1(sinh, sinhf, sinh)
KILN_SCALAR_MATH_1(cosh, coshf, cosh)
KILN_SCALAR_MATH_1(asinh, asinhf, asinh)
KILN_SCALAR_MATH_1(acosh, acoshf, acosh)
KILN_SCALAR_MATH_1(atanh, atanhf, atanh)
KILN_SCALAR_MATH_1(floor, floorf, floor)
KILN_SCALAR_MATH_1(ceil, ceilf, ceil)
KILN_SCALAR_MATH_1(rint, rintf, rint)
KILN_SCALAR_MATH_1(fabs, fabsf, fabs)
KILN_SCALAR_MATH_2(pow, powf, pow)
KILN_SCALAR_MATH_2(fmod, fmodf, fmod)

#undef KILN_SCALAR_MATH_1
#undef KILN_SCALAR_MATH_2

// +infinity of T: Clip's bound for an absent min (negated) or max.
template <typename T>
KILN_SCALAR_FN T kiln_infinity() {
  return T(KILN_SCALAR_INFINITY_F);  // float's infinity converts to double's
}

// ---- selections that propagate NaN -------------------------------------------------------------

template <typename T>
KILN_SCALAR_FN T kiln_max(T a, T b) {
  return b != b ? b : (a < b ? b : a);  // a NaN `a` fails `a < b` and is returned
}

template <typename T>
KILN_SCALAR_FN T kiln_min(T a, T b) {
  return b != b ? b : (b < a ? b : a);
}

// min(max(x, lo), hi): lo > hi gives hi, as ONNX Clip specifies.
template <typename T>
KILN_SCALAR_FN T kiln_clip(T x, T lo, T hi) {
  return kiln_min<T>(kiln_max<T>(x, lo), hi);
}

// ---- unary activations -------------------------------------------------------------------------

template <typename T>
KILN_SCALAR_FN T kiln_identity(T x) {
  return x;
}

template <typename T>
KILN_SCALAR_FN T kiln_relu(T x) {
  return x < T(0) ? T(0) : x;
}

template <typename T>
KILN_SCALAR_FN T kiln_leaky_relu(T x, float alpha) {
  return x < T(0) ? T(alpha) * x : x;
}

template <typename T>
KILN_SCALAR_FN T kiln_thresholded_relu(T x, float alpha) {
  return x <= T(alpha) ? T(0) : x;
}

template <typename T>
KILN_SCALAR_FN T kiln_elu(T x, float alpha) {
  return x > T(0) ? x : T(alpha) * kiln_math_expm1(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_selu(T x, float alpha, float gamma) {
  return x > T(0) ? T(gamma) * x : T(gamma) * (T(alpha) * kiln_math_expm1(x));
}

template <typename T>
KILN_SCALAR_FN T kiln_celu(T x, float alpha) {
  return x > T(0) ? x : T(alpha) * kiln_math_expm1(x / T(alpha));
}

// exp of a non-positive argument only, so it never overflows; one exp and one division on either
// side of 0 and no branch, so vectorised code computes it once per element.
template <typename T>
KILN_SCALAR_FN T kiln_sigmoid(T x) {
  const T e = kiln_math_exp(-kiln_math_fabs(x));
  const T r = T(1) / (T(1) + e);
  return x >= T(0) ? r : e * r;
}

template <typename T>
KILN_SCALAR_FN T kiln_hard_sigmoid(T x, float alpha, float beta) {
  return kiln_clip<T>(T(alpha) * x + T(beta), T(0), T(1));
}

template <typename T>
KILN_SCALAR_FN T kiln_hard_swish(T x) {
  return x * kiln_clip<T>(x / T(6) + T(0.5), T(0), T(1));
}

template <typename T>
KILN_SCALAR_FN T kiln_tanh(T x) {
  return kiln_math_tanh(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_erf(T x) {
  return kiln_math_erf(x);
}

// Gelu with approximate="none": x * Phi(x).
template <typename T>
KILN_SCALAR_FN T kiln_gelu(T x) {
  return T(0.5) * x * (T(1) + kiln_math_erf(x * T(0.70710678118654752)));  // 1/sqrt(2)
}

// Gelu with approximate="tanh".
template <typename T>
KILN_SCALAR_FN T kiln_gelu_tanh(T x) {
  const T inner = T(0.79788456080286536) * (x + T(0.044715) * x * x * x);  // sqrt(2/pi)
  return T(0.5) * x * (T(1) + kiln_math_tanh(inner));
}

// log(1 + exp(x)) without overflow for large x.
template <typename T>
KILN_SCALAR_FN T kiln_softplus(T x) {
  return x > T(0) ? x + kiln_math_log1p(kiln_math_exp(-x)) : kiln_math_log1p(kiln_math_exp(x));
}

template <typename T>
KILN_SCALAR_FN T kiln_softsign(T x) {
  return x / (T(1) + kiln_math_fabs(x));
}

template <typename T>
KILN_SCALAR_FN T kiln_mish(T x) {
  return x * kiln_math_tanh(kiln_softplus<T>(x));
}

// ---- unary math --------------------------------------------------------------------------------

template <typename T>
KILN_SCALAR_FN T kiln_neg(T x) {
  return -x;
}

template <typename T>
KILN_SCALAR_FN T kiln_abs(T x) {
  return kiln_math_fabs(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_sign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

template <typename T>
KILN_SCALAR_FN T kiln_reciprocal(T x) {
  return T(1) / x;
}

template <typename T>
KILN_SCALAR_FN T kiln_sqrt(T x) {
  return kiln_math_sqrt(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_exp(T x) {
  return kiln_math_exp(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_log(T x) {
  return kiln_math_log(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_floor(T x) {
  return kiln_math_floor(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_ceil(T x) {
  return kiln_math_ceil(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_round(T x) {
  return kiln_math_rint(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_sin(T x) {
  return kiln_math_sin(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_cos(T x) {
  return kiln_math_cos(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_tan(T x) {
  return kiln_math_tan(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_asin(T x) {
  return kiln_math_asin(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_acos(T x) {
  return kiln_math_acos(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_atan(T x) {
  return kiln_math_atan(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_sinh(T x) {
  return kiln_math_sinh(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_cosh(T x) {
  return kiln_math_cosh(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_asinh(T x) {
  return kiln_math_asinh(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_acosh(T x) {
  return kiln_math_acosh(x);
}

template <typename T>
KILN_SCALAR_FN T kiln_atanh(T x) {
  return kiln_math_atanh(x);
}

// ---- predicates --------------------------------------------------------------------------------

template <typename T>
KILN_SCALAR_FN bool kiln_is_nan(T x) {
  return x != x;
}

// The flags are IsInf's detect_negative / detect_positive (0 or 1).
template <typename T>
KILN_SCALAR_FN bool kiln_is_inf(T x, float detect_negative, float detect_positive) {
  return (detect_positive != 0.0f && x == kiln_infinity<T>()) ||
         (detect_negative != 0.0f && x == -kiln_infinity<T>());
}

// ---- binary arithmetic -------------------------------------------------------------------------

template <typename T>
KILN_SCALAR_FN T kiln_add(T a, T b) {
  return a + b;
}

template <typename T>
KILN_SCALAR_FN T kiln_sub(T a, T b) {
  return a - b;
}

template <typename T>
KILN_SCALAR_FN T kiln_mul(T a, T b) {
  return a * b;
}

template <typename T>
KILN_SCALAR_FN T kiln_div(T a, T b) {
  return a / b;
}

// Mean of two operands (variadic Mean folded to pairs of inputs divides once at the end).
template <typename T>
KILN_SCALAR_FN T kiln_mean(T a, T b) {
  return (a + b) / T(2);
}

// Squares and cubes are products, as PyTorch computes x ** 2 and x ** 3: pow costs tens of
// instructions on a GPU, and generated kernels pass a constant exponent as a literal, so the
// compiler keeps only the product. NaN and infinity come out as pow's (signs included).
template <typename T>
KILN_SCALAR_FN T kiln_pow(T a, T b) {
  if (b == T(2)) return a * a;
  if (b == T(3)) return a * a * a;
  return kiln_math_pow(a, b);
}

// Mod with fmod=1: the remainder takes the dividend's sign (C fmod).
template <typename T>
KILN_SCALAR_FN T kiln_fmod(T a, T b) {
  return kiln_math_fmod(a, b);
}

// Mod with fmod=0: the remainder takes the divisor's sign, as Python's % and torch.remainder.
template <typename T>
KILN_SCALAR_FN T kiln_mod(T a, T b) {
  const T r = kiln_math_fmod(a, b);
  return r != T(0) && ((r < T(0)) != (b < T(0))) ? r + b : r;
}

template <typename T>
KILN_SCALAR_FN T kiln_prelu(T x, T slope) {
  return x < T(0) ? slope * x : x;
}

// ---- comparisons and logic ---------------------------------------------------------------------

template <typename T>
KILN_SCALAR_FN bool kiln_equal(T a, T b) {
  return a == b;
}

template <typename T>
KILN_SCALAR_FN bool kiln_less(T a, T b) {
  return a < b;
}

template <typename T>
KILN_SCALAR_FN bool kiln_greater(T a, T b) {
  return a > b;
}

template <typename T>
KILN_SCALAR_FN bool kiln_less_or_equal(T a, T b) {
  return a <= b;
}

template <typename T>
KILN_SCALAR_FN bool kiln_greater_or_equal(T a, T b) {
  return a >= b;
}

template <typename T>
KILN_SCALAR_FN bool kiln_and(bool a, bool b) {
  return a && b;
}

template <typename T>
KILN_SCALAR_FN bool kiln_or(bool a, bool b) {
  return a || b;
}

template <typename T>
KILN_SCALAR_FN bool kiln_xor(bool a, bool b) {
  return a != b;
}

template <typename T>
KILN_SCALAR_FN bool kiln_not(bool a) {
  return !a;
}

template <typename T>
KILN_SCALAR_FN T kiln_where(bool condition, T x, T y) {
  return condition ? x : y;
}

#endif  // KILN_OPS_SCALAR_MATH_H_
