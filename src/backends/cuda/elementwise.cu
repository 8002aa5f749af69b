// Elementwise op family on CUDA: unary activations and math, binary arithmetic/comparison/logic
// with numpy broadcasting, Clip, Where and Cast. 16-bit floats compute in float32. Float math uses
// the scalar table's formulas (ops/scalar_math.h) and attribute defaults (ops/scalar_ops.hpp), as
// the CPU reference does; integer paths are written here.
#include <cmath>
#include <string>
#include <unordered_map>

#include "backends/cuda/cuda_common.cuh"
#include "ops/scalar_math.h"
#include "ops/scalar_ops.hpp"

namespace kiln::cuda {
namespace {

// ---- unary ---------------------------------------------------------------------------------------

enum class UnaryOp : int {
  kRelu, kLeakyRelu, kSigmoid, kTanh, kGelu, kGeluTanh, kErf, kHardSigmoid, kHardSwish, kSqrt, kReciprocal,
  kNeg, kExp, kLog, kAbs, kFloor, kCeil, kSoftplus, kIdentity, kSin, kCos, kElu, kSelu, kSign, kRound,
  kTan, kAsin, kAcos, kAtan, kSinh, kCosh, kAsinh, kAcosh, kAtanh, kSoftsign, kMish, kCelu, kThresholdedRelu,
};

// alpha and beta are the op's first and second float attributes in the scalar table (Selu: alpha,
// gamma).
__device__ __forceinline__ float apply_unary(UnaryOp op, float x, float alpha, float beta) {
  switch (op) {
    case UnaryOp::kRelu: return kiln_relu<float>(x);
    case UnaryOp::kLeakyRelu: return kiln_leaky_relu<float>(x, alpha);
    case UnaryOp::kSigmoid: return kiln_sigmoid<float>(x);
    case UnaryOp::kTanh: return kiln_tanh<float>(x);
    case UnaryOp::kGelu: return kiln_gelu<float>(x);
    case UnaryOp::kGeluTanh: return kiln_gelu_tanh<float>(x);
    case UnaryOp::kErf: return kiln_erf<float>(x);
    case UnaryOp::kHardSigmoid: return kiln_hard_sigmoid<float>(x, alpha, beta);
    case UnaryOp::kHardSwish: return kiln_hard_swish<float>(x);
    case UnaryOp::kSqrt: return kiln_sqrt<float>(x);
    case UnaryOp::kReciprocal: return kiln_reciprocal<float>(x);
    case UnaryOp::kNeg: return kiln_neg<float>(x);
    case UnaryOp::kExp: return kiln_exp<float>(x);
    case UnaryOp::kLog: return kiln_log<float>(x);
    case UnaryOp::kAbs: return kiln_abs<float>(x);
    case UnaryOp::kFloor: return kiln_floor<float>(x);
    case UnaryOp::kCeil: return kiln_ceil<float>(x);
    case UnaryOp::kSoftplus: return kiln_softplus<float>(x);
    case UnaryOp::kIdentity: return kiln_identity<float>(x);
    case UnaryOp::kSin: return kiln_sin<float>(x);
    case UnaryOp::kCos: return kiln_cos<float>(x);
    case UnaryOp::kElu: return kiln_elu<float>(x, alpha);
    case UnaryOp::kSelu: return kiln_selu<float>(x, alpha, beta);
    case UnaryOp::kSign: return kiln_sign<float>(x);
    case UnaryOp::kRound: return kiln_round<float>(x);
    case UnaryOp::kTan: return kiln_tan<float>(x);
    case UnaryOp::kAsin: return kiln_asin<float>(x);
    case UnaryOp::kAcos: return kiln_acos<float>(x);
    case UnaryOp::kAtan: return kiln_atan<float>(x);
    case UnaryOp::kSinh: return kiln_sinh<float>(x);
    case UnaryOp::kCosh: return kiln_cosh<float>(x);
    case UnaryOp::kAsinh: return kiln_asinh<float>(x);
    case UnaryOp::kAcosh: return kiln_acosh<float>(x);
    case UnaryOp::kAtanh: return kiln_atanh<float>(x);
    case UnaryOp::kSoftsign: return kiln_softsign<float>(x);
    case UnaryOp::kMish: return kiln_mish<float>(x);
    case UnaryOp::kCelu: return kiln_celu<float>(x, alpha);
    case UnaryOp::kThresholdedRelu: return kiln_thresholded_relu<float>(x, alpha);
  }
  return x;
}

// kFixedOp >= 0 compiles the kernel for that one op (the hot activations): a switch on a runtime
// op per element costs the Gelu of a BERT layer 3x its memory time.
constexpr int kAnyUnaryOp = -1;

template <typename T, typename Index, int W, int kFixedOp>
__global__ void unary_kernel(const T* __restrict__ in, T* __restrict__ out, Index packs, UnaryOp op, float alpha,
                             float beta) {
  if constexpr (kFixedOp != kAnyUnaryOp) op = static_cast<UnaryOp>(kFixedOp);
  for (Index p = first_index<Index>(); p < packs; p += grid_stride<Index>()) {
    T values[W];
    load_pack<T, W>(in, p * W, true, values);
#pragma unroll
    for (int w = 0; w < W; ++w) values[w] = from_float<T>(apply_unary(op, to_float(values[w]), alpha, beta));
    store_pack<T, W>(out, p * W, values);
  }
}

template <typename T>
__global__ void integer_unary_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t n, UnaryOp op) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const T x = in[i];
    switch (op) {
      case UnaryOp::kNeg: out[i] = -x; break;
      case UnaryOp::kAbs: out[i] = x < 0 ? -x : x; break;
      case UnaryOp::kRelu: out[i] = x > 0 ? x : T{0}; break;
      case UnaryOp::kSign: out[i] = static_cast<T>((x > 0) - (x < 0)); break;
      default: out[i] = x; break;
    }
  }
}

// Calls f.template operator()<kFixedOp>() with op itself for the activations models run most, else
// with kAnyUnaryOp.
template <typename F>
void dispatch_fixed_unary(UnaryOp op, F&& f) {
  switch (op) {
    case UnaryOp::kRelu: f.template operator()<static_cast<int>(UnaryOp::kRelu)>(); return;
    case UnaryOp::kSigmoid: f.template operator()<static_cast<int>(UnaryOp::kSigmoid)>(); return;
    case UnaryOp::kTanh: f.template operator()<static_cast<int>(UnaryOp::kTanh)>(); return;
    case UnaryOp::kGelu: f.template operator()<static_cast<int>(UnaryOp::kGelu)>(); return;
    case UnaryOp::kGeluTanh: f.template operator()<static_cast<int>(UnaryOp::kGeluTanh)>(); return;
    case UnaryOp::kHardSwish: f.template operator()<static_cast<int>(UnaryOp::kHardSwish)>(); return;
    default: f.template operator()<kAnyUnaryOp>(); return;
  }
}

struct UnarySpec {
  UnaryOp op;
  bool integers;  // also defined on int32/int64
};

const std::unordered_map<std::string, UnarySpec>& unary_specs() {
  static const std::unordered_map<std::string, UnarySpec> specs = {
      {"Relu", {UnaryOp::kRelu, true}},          {"LeakyRelu", {UnaryOp::kLeakyRelu, false}},
      {"Sigmoid", {UnaryOp::kSigmoid, false}},   {"Tanh", {UnaryOp::kTanh, false}},
      {"Gelu", {UnaryOp::kGelu, false}},         {"Erf", {UnaryOp::kErf, false}},
      {"HardSigmoid", {UnaryOp::kHardSigmoid, false}}, {"HardSwish", {UnaryOp::kHardSwish, false}},
      {"Sqrt", {UnaryOp::kSqrt, false}},         {"Reciprocal", {UnaryOp::kReciprocal, false}},
      {"Neg", {UnaryOp::kNeg, true}},            {"Exp", {UnaryOp::kExp, false}},
      {"Log", {UnaryOp::kLog, false}},           {"Abs", {UnaryOp::kAbs, true}},
      {"Floor", {UnaryOp::kFloor, false}},       {"Ceil", {UnaryOp::kCeil, false}},
      {"Softplus", {UnaryOp::kSoftplus, false}}, {"Identity", {UnaryOp::kIdentity, true}},
      {"Dropout", {UnaryOp::kIdentity, true}},   {"Sin", {UnaryOp::kSin, false}},
      {"Cos", {UnaryOp::kCos, false}},           {"Elu", {UnaryOp::kElu, false}},
      {"Selu", {UnaryOp::kSelu, false}},         {"Sign", {UnaryOp::kSign, true}},
      {"Round", {UnaryOp::kRound, false}},       {"Tan", {UnaryOp::kTan, false}},
      {"Asin", {UnaryOp::kAsin, false}},         {"Acos", {UnaryOp::kAcos, false}},
      {"Atan", {UnaryOp::kAtan, false}},         {"Sinh", {UnaryOp::kSinh, false}},
      {"Cosh", {UnaryOp::kCosh, false}},         {"Asinh", {UnaryOp::kAsinh, false}},
      {"Acosh", {UnaryOp::kAcosh, false}},       {"Atanh", {UnaryOp::kAtanh, false}},
      {"Softsign", {UnaryOp::kSoftsign, false}}, {"Mish", {UnaryOp::kMish, false}},
      {"Celu", {UnaryOp::kCelu, false}},         {"ThresholdedRelu", {UnaryOp::kThresholdedRelu, false}},
  };
  return specs;
}

void launch_unary(LaunchContext& ctx) {
  const UnarySpec& spec = unary_specs().at(std::string(ctx.op));
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const int64_t n = out.numel();
  if (ctx.op == "Dropout" && ctx.outputs.size() > 1) {
    ctx.fail(ErrorCode::kUnsupported, "the mask output of Dropout is not supported");
  }
  if (n == 0) return;
  UnaryOp op = spec.op;
  float alpha = 0.0f, beta = 0.0f;
  if (op != UnaryOp::kIdentity) {  // Dropout is not in the scalar table
    const ops::ScalarOp* entry = ops::find_scalar_op(ctx.op, ctx.attrs);
    if (entry == nullptr) ctx.fail(ErrorCode::kUnsupported, "no scalar formula for these attributes");
    if (entry->function == "kiln_gelu_tanh") op = UnaryOp::kGeluTanh;
    const std::vector<float> attrs = ops::scalar_attr_values(*entry, ctx.attrs);
    if (!attrs.empty()) alpha = attrs[0];
    if (attrs.size() > 1) beta = attrs[1];
  }
  if (in.dtype == DType::kInt64 || in.dtype == DType::kInt32) {
    if (!spec.integers) ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(in.dtype), " is not supported");
    if (in.dtype == DType::kInt64) {
      integer_unary_kernel<<<grid_for(n), kBlockSize, 0, ctx.stream>>>(in.as<const int64_t>(), out.as<int64_t>(), n, op);
    } else {
      integer_unary_kernel<<<grid_for(n), kBlockSize, 0, ctx.stream>>>(in.as<const int32_t>(), out.as<int32_t>(), n, op);
    }
  } else if (op == UnaryOp::kIdentity && in.dtype != DType::kFloat32 && in.dtype != DType::kFloat16 &&
             in.dtype != DType::kBFloat16) {  // Identity and Dropout of any other dtype: a copy
    KILN_CUDA_CHECK(cudaMemcpyAsync(out.data, in.data, out.nbytes(), cudaMemcpyDeviceToDevice, ctx.stream));
    return;
  } else {
    dispatch_float(ctx, in.dtype, [&]<typename T>() {
      constexpr int kWidth = pack_width<T>();
      const void* const pointers[1] = {in.data};
      const bool packable = can_pack(dense_indexer<1>(n), kWidth, sizeof(T), pointers, out.data);
      dispatch_index_and_width<kWidth>(n, packable, [&]<typename Index, int W>() {
        const auto packs = static_cast<Index>(n / W);
        dispatch_fixed_unary(op, [&]<int kFixedOp>() {
          unary_kernel<T, Index, W, kFixedOp>
              <<<grid_for(packs), kBlockSize, 0, ctx.stream>>>(in.as<const T>(), out.as<T>(), packs, op, alpha, beta);
        });
      });
    });
  }
  check_launch(ctx);
}

// ---- predicates and Not: bool outputs ----------------------------------------------------------

enum class Predicate : int { kIsNaN, kIsInf, kNot };

// detect_negative / detect_positive: IsInf's flags (0 or 1).
template <typename T>
__global__ void predicate_kernel(const T* __restrict__ in, bool* __restrict__ out, int64_t n, Predicate p,
                                 float detect_negative, float detect_positive) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    if constexpr (std::is_same_v<T, bool>) {
      out[i] = kiln_not<float>(in[i]);
    } else {
      const float x = to_float(in[i]);
      out[i] = p == Predicate::kIsNaN ? kiln_is_nan<float>(x) : kiln_is_inf<float>(x, detect_negative, detect_positive);
    }
  }
}

void launch_predicate(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const int64_t n = out.numel();
  if (n == 0) return;
  if (ctx.op == "Not") {
    if (in.dtype != DType::kBool) ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(in.dtype));
    predicate_kernel<bool><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(in.as<const bool>(), out.as<bool>(), n,
                                                                       Predicate::kNot, 0.0f, 0.0f);
    check_launch(ctx);
    return;
  }
  const Predicate p = ctx.op == "IsInf" ? Predicate::kIsInf : Predicate::kIsNaN;
  const ops::ScalarOp* entry = ops::find_scalar_op(ctx.op, ctx.attrs);
  if (entry == nullptr) ctx.fail(ErrorCode::kUnsupported, "no scalar formula for these attributes");
  const std::vector<float> flags = ops::scalar_attr_values(*entry, ctx.attrs);  // IsInf's detect_*
  const float detect_negative = flags.empty() ? 0.0f : flags[0];
  const float detect_positive = flags.empty() ? 0.0f : flags[1];
  dispatch_float(ctx, in.dtype, [&]<typename T>() {
    predicate_kernel<T><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(in.as<const T>(), out.as<bool>(), n, p,
                                                                    detect_negative, detect_positive);
  });
  check_launch(ctx);
}

// ---- binary --------------------------------------------------------------------------------------

// kMod is Mod with fmod=0 (the divisor's sign), kFmod with fmod=1 (the dividend's sign).
enum class BinaryOp : int {
  kAdd, kSub, kMul, kDiv, kPow, kMin, kMax, kMod, kFmod, kMean, kPRelu, kEqual, kLess, kGreater, kLessOrEqual,
  kGreaterOrEqual, kAnd, kOr, kXor,
};

bool is_comparison(BinaryOp op) { return op >= BinaryOp::kEqual; }

template <typename T>
__device__ __forceinline__ T apply_integer(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::kAdd: return a + b;
    case BinaryOp::kSub: return a - b;
    case BinaryOp::kMul: return a * b;
    case BinaryOp::kDiv: return b == 0 ? T{0} : a / b;  // truncates like ONNX; 0 for x/0 (no trap on the GPU)
    case BinaryOp::kMin: return a < b ? a : b;
    case BinaryOp::kMax: return a > b ? a : b;
    case BinaryOp::kMod: {
      if (b == 0) return T{0};
      T r = a % b;
      return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;  // sign of the divisor (fmod=0)
    }
    case BinaryOp::kFmod: return b == 0 ? T{0} : a % b;  // truncated: sign of the dividend (fmod=1)
    case BinaryOp::kPow: {
      T result = 1;
      for (T e = 0; e < b; ++e) result *= a;
      return result;
    }
    default: return a;
  }
}

__device__ __forceinline__ float apply_float(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::kAdd: return kiln_add<float>(a, b);
    case BinaryOp::kSub: return kiln_sub<float>(a, b);
    case BinaryOp::kMul: return kiln_mul<float>(a, b);
    case BinaryOp::kDiv: return kiln_div<float>(a, b);
    case BinaryOp::kPow: return kiln_pow<float>(a, b);
    case BinaryOp::kMin: return kiln_min<float>(a, b);
    case BinaryOp::kMax: return kiln_max<float>(a, b);
    case BinaryOp::kMod: return kiln_mod<float>(a, b);
    case BinaryOp::kFmod: return kiln_fmod<float>(a, b);
    case BinaryOp::kMean: return kiln_mean<float>(a, b);
    case BinaryOp::kPRelu: return kiln_prelu<float>(a, b);
    default: return a;
  }
}

// The scalar table's comparisons (valid for integers too) and logic on bools.
template <typename T>
__device__ __forceinline__ bool compare(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::kEqual: return kiln_equal<T>(a, b);
    case BinaryOp::kLess: return kiln_less<T>(a, b);
    case BinaryOp::kGreater: return kiln_greater<T>(a, b);
    case BinaryOp::kLessOrEqual: return kiln_less_or_equal<T>(a, b);
    case BinaryOp::kGreaterOrEqual: return kiln_greater_or_equal<T>(a, b);
    case BinaryOp::kAnd: return kiln_and<float>(a != T{0}, b != T{0});
    case BinaryOp::kOr: return kiln_or<float>(a != T{0}, b != T{0});
    case BinaryOp::kXor: return kiln_xor<float>(a != T{0}, b != T{0});
    default: return false;
  }
}

template <typename T, typename U>
__device__ __forceinline__ U apply_binary(BinaryOp op, T a, T b) {
  if constexpr (std::is_same_v<U, bool>) {
    if constexpr (std::is_integral_v<T>) {
      return compare<T>(op, a, b);
    } else {
      return compare<float>(op, to_float(a), to_float(b));
    }
  } else if constexpr (std::is_integral_v<T>) {
    return apply_integer<T>(op, a, b);
  } else {
    return from_float<T>(apply_float(op, to_float(a), to_float(b)));
  }
}

// One thread per pack of W outputs; kDense: every operand has the output's shape.
template <typename T, typename U, typename Index, int W, bool kDense>
__global__ void binary_kernel(const T* __restrict__ a, const T* __restrict__ b, U* __restrict__ out, Index packs,
                              StridedIndexer<2> indexer, unsigned packed, BinaryOp op) {
  for (Index p = first_index<Index>(); p < packs; p += grid_stride<Index>()) {
    const Index first = p * W;
    Index offsets[2] = {first, first};
    if constexpr (!kDense) indexer.offsets(first, offsets);
    T va[W], vb[W];
    load_pack<T, W>(a, offsets[0], kDense || (packed & 1u), va);
    load_pack<T, W>(b, offsets[1], kDense || (packed & 2u), vb);
    U result[W];
#pragma unroll
    for (int w = 0; w < W; ++w) result[w] = apply_binary<T, U>(op, va[w], vb[w]);
    store_pack<U, W>(out, first, result);
  }
}

template <typename T, typename E, bool kSameShape>
__global__ void pow_kernel(const T* __restrict__ a, const E* __restrict__ b, T* __restrict__ out, int64_t n,
                           StridedIndexer<2> indexer) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t offsets[2] = {i, i};
    if constexpr (!kSameShape) indexer.offsets(i, offsets);
    out[i] = from_float<T>(kiln_pow<float>(to_float(a[offsets[0]]), static_cast<float>(to_float(b[offsets[1]]))));
  }
}

const std::unordered_map<std::string, BinaryOp>& binary_ops() {
  static const std::unordered_map<std::string, BinaryOp> ops = {
      {"Add", BinaryOp::kAdd},   {"Sub", BinaryOp::kSub},         {"Mul", BinaryOp::kMul},
      {"Div", BinaryOp::kDiv},   {"Pow", BinaryOp::kPow},         {"Min", BinaryOp::kMin},
      {"Max", BinaryOp::kMax},   {"Sum", BinaryOp::kAdd},         {"Mod", BinaryOp::kMod},
      {"Equal", BinaryOp::kEqual}, {"Less", BinaryOp::kLess},     {"Greater", BinaryOp::kGreater},
      {"LessOrEqual", BinaryOp::kLessOrEqual}, {"GreaterOrEqual", BinaryOp::kGreaterOrEqual},
      {"And", BinaryOp::kAnd},   {"Or", BinaryOp::kOr},           {"Xor", BinaryOp::kXor},
      {"Mean", BinaryOp::kMean}, {"PRelu", BinaryOp::kPRelu},
  };
  return ops;
}

template <typename T, typename U>
void launch_binary_typed(LaunchContext& ctx, BinaryOp op) {
  const TensorView& a = ctx.inputs[0];
  const TensorView& b = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const int64_t n = out.numel();
  const Shape* shapes[2] = {&a.shape, &b.shape};
  const bool dense = a.shape == out.shape && b.shape == out.shape;
  const StridedIndexer<2> indexer = dense ? dense_indexer<2>(n) : make_broadcast_indexer<2>(ctx, out.shape, shapes);
  // 16-byte packs for the floating types (integer and comparison ops stay one element a thread).
  constexpr int kWidth = std::is_same_v<T, U> && !std::is_integral_v<T> ? pack_width<T>() : 1;
  const void* const pointers[2] = {a.data, b.data};
  const bool packable = can_pack(indexer, kWidth, sizeof(T), pointers, out.data);
  const unsigned packed = packed_operands(indexer);
  dispatch_index_and_width<kWidth>(n, packable, [&]<typename Index, int W>() {
    const auto packs = static_cast<Index>(n / W);
    if (dense) {
      binary_kernel<T, U, Index, W, true><<<grid_for(packs), kBlockSize, 0, ctx.stream>>>(
          a.as<const T>(), b.as<const T>(), out.as<U>(), packs, indexer, packed, op);
    } else {
      binary_kernel<T, U, Index, W, false><<<grid_for(packs), kBlockSize, 0, ctx.stream>>>(
          a.as<const T>(), b.as<const T>(), out.as<U>(), packs, indexer, packed, op);
    }
  });
}

void launch_binary(LaunchContext& ctx) {
  if (ctx.inputs.size() != 2) {
    ctx.fail(ErrorCode::kUnsupported, ctx.inputs.size(), " inputs; the cuda backend handles 2");
  }
  BinaryOp op = binary_ops().at(std::string(ctx.op));
  if (op == BinaryOp::kMod && ctx.attrs.get_int_or("fmod", 0) != 0) op = BinaryOp::kFmod;
  const TensorView& a = ctx.inputs[0];
  const TensorView& b = ctx.inputs[1];
  if (ctx.outputs[0].numel() == 0) return;
  if (op == BinaryOp::kPow && a.dtype != b.dtype) {
    const Shape* shapes[2] = {&a.shape, &b.shape};
    const TensorView& out = ctx.outputs[0];
    const int64_t n = out.numel();
    const bool same = a.shape == out.shape && b.shape == out.shape;
    const StridedIndexer<2> indexer = same ? StridedIndexer<2>{} : make_broadcast_indexer<2>(ctx, out.shape, shapes);
    dispatch_float(ctx, a.dtype, [&]<typename T>() {
      dispatch_numeric(ctx, b.dtype, [&]<typename E>() {
        if (same) {
          pow_kernel<T, E, true><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(a.as<const T>(), b.as<const E>(), out.as<T>(), n, indexer);
        } else {
          pow_kernel<T, E, false><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(a.as<const T>(), b.as<const E>(), out.as<T>(), n, indexer);
        }
      });
    });
    check_launch(ctx);
    return;
  }
  if (op == BinaryOp::kAnd || op == BinaryOp::kOr || op == BinaryOp::kXor) {
    launch_binary_typed<bool, bool>(ctx, op);
  } else if (is_comparison(op)) {
    if (a.dtype == DType::kBool) {
      launch_binary_typed<bool, bool>(ctx, op);
    } else {
      dispatch_numeric(ctx, a.dtype, [&]<typename T>() { launch_binary_typed<T, bool>(ctx, op); });
    }
  } else if (op == BinaryOp::kMean || op == BinaryOp::kPRelu) {
    dispatch_float(ctx, a.dtype, [&]<typename T>() { launch_binary_typed<T, T>(ctx, op); });
  } else {
    dispatch_numeric(ctx, a.dtype, [&]<typename T>() { launch_binary_typed<T, T>(ctx, op); });
  }
  check_launch(ctx);
}

// ---- Clip, Where, Cast ---------------------------------------------------------------------------

template <typename T>
__global__ void clip_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t n, const T* lo, const T* hi) {
  const float low = lo ? to_float(*lo) : -kiln_infinity<float>();
  const float high = hi ? to_float(*hi) : kiln_infinity<float>();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = from_float<T>(kiln_clip<float>(to_float(in[i]), low, high));
  }
}

template <typename T>
__global__ void clip_integer_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t n, const T* lo, const T* hi) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    T x = in[i];
    if (lo && x < *lo) x = *lo;
    if (hi && x > *hi) x = *hi;
    out[i] = x;
  }
}

void launch_clip(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const int64_t n = out.numel();
  if (n == 0) return;
  for (size_t i = 1; i < 3; ++i) {
    if (ctx.has_input(i) && ctx.inputs[i].numel() != 1) ctx.fail(ErrorCode::kInvalidArgument, "min/max must be scalars");
  }
  dispatch_numeric(ctx, in.dtype, [&]<typename T>() {
    const T* lo = ctx.has_input(1) ? ctx.inputs[1].as<const T>() : nullptr;
    const T* hi = ctx.has_input(2) ? ctx.inputs[2].as<const T>() : nullptr;
    if constexpr (std::is_integral_v<T>) {
      clip_integer_kernel<T><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(in.as<const T>(), out.as<T>(), n, lo, hi);
    } else {
      clip_kernel<T><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(in.as<const T>(), out.as<T>(), n, lo, hi);
    }
  });
  check_launch(ctx);
}

template <typename Word, typename Index>
__global__ void where_kernel(const bool* __restrict__ cond, const Word* __restrict__ x, const Word* __restrict__ y,
                             Word* __restrict__ out, Index n, StridedIndexer<3> indexer) {
  for (Index i = first_index<Index>(); i < n; i += grid_stride<Index>()) {
    Index offsets[3];
    indexer.offsets(i, offsets);
    out[i] = cond[offsets[0]] ? x[offsets[1]] : y[offsets[2]];
  }
}

template <typename Word>
void launch_where_words(const LaunchContext& ctx, int64_t n, const StridedIndexer<3>& indexer) {
  const auto* cond = ctx.inputs[0].as<const bool>();
  const auto* x = ctx.inputs[1].as<const Word>();
  const auto* y = ctx.inputs[2].as<const Word>();
  auto* out = ctx.outputs[0].as<Word>();
  if (fits_32_bits(n)) {
    where_kernel<Word, uint32_t><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(cond, x, y, out, static_cast<uint32_t>(n), indexer);
  } else {
    where_kernel<Word, int64_t><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(cond, x, y, out, n, indexer);
  }
}

void launch_where(LaunchContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  const int64_t n = out.numel();
  if (n == 0) return;
  const Shape* shapes[3] = {&ctx.inputs[0].shape, &ctx.inputs[1].shape, &ctx.inputs[2].shape};
  const StridedIndexer<3> indexer = make_broadcast_indexer<3>(ctx, out.shape, shapes);
  switch (dtype_size(out.dtype)) {
    case 1: launch_where_words<uint8_t>(ctx, n, indexer); break;
    case 2: launch_where_words<uint16_t>(ctx, n, indexer); break;
    case 4: launch_where_words<uint32_t>(ctx, n, indexer); break;
    case 8: launch_where_words<uint64_t>(ctx, n, indexer); break;
    default: ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(out.dtype));
  }
  check_launch(ctx);
}

template <typename T>
__device__ __forceinline__ double to_double(T v) {
  if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) {
    return static_cast<double>(to_float(v));
  } else {
    return static_cast<double>(v);
  }
}

template <typename From, typename To>
__global__ void cast_kernel(const From* __restrict__ in, To* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    if constexpr (std::is_same_v<To, bool>) {
      out[i] = to_double(in[i]) != 0.0;
    } else if constexpr (std::is_same_v<To, __half> || std::is_same_v<To, __nv_bfloat16>) {
      out[i] = from_float<To>(static_cast<float>(to_double(in[i])));
    } else if constexpr (std::is_integral_v<To> && std::is_integral_v<From>) {
      out[i] = static_cast<To>(in[i]);
    } else {
      out[i] = static_cast<To>(to_double(in[i]));
    }
  }
}

template <typename F>
void dispatch_castable(const LaunchContext& ctx, DType dtype, F&& f) {
  switch (dtype) {
    case DType::kBool: f.template operator()<bool>(); return;
    case DType::kUInt8: f.template operator()<uint8_t>(); return;
    case DType::kInt8: f.template operator()<int8_t>(); return;
    case DType::kFloat64: f.template operator()<double>(); return;
    default: dispatch_numeric(ctx, dtype, std::forward<F>(f));
  }
}

void launch_cast(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const int64_t n = out.numel();
  if (n == 0) return;
  if (in.dtype == out.dtype) {
    KILN_CUDA_CHECK(cudaMemcpyAsync(out.data, in.data, out.nbytes(), cudaMemcpyDeviceToDevice, ctx.stream));
    return;
  }
  dispatch_castable(ctx, in.dtype, [&]<typename From>() {
    dispatch_castable(ctx, out.dtype, [&]<typename To>() {
      cast_kernel<From, To><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(in.as<const From>(), out.as<To>(), n);
    });
  });
  check_launch(ctx);
}

// Dropout runs as a copy: a training_mode the engine reads at run time could ask for dropping, which
// the copy would silently ignore (the CPU kernel refuses it per call; here the flag is in device
// memory), and the mask output is not written.
std::string refuse_dropout_it_cannot_copy(const format::EngineModel& model, const format::Layer& layer) {
  if (layer.outputs.size() > 1) return "its mask output (output 1) is computed by the cpu backend only";
  if (layer.inputs.size() > 2 && layer.inputs[2] >= 0) {
    const auto id = static_cast<size_t>(layer.inputs[2]);
    if (id >= model.tensors.size() || model.tensors[id].kind != format::TensorKind::kWeight) {
      return "its training_mode is an input read at run time (the cuda kernel runs inference only; a constant "
             "false runs)";
    }
  }
  return "";
}

}  // namespace

// What each launch function dispatches on (every dtype the registration claims must run: the
// backend-ops conformance test builds and runs each on the GPU).
void register_elementwise_kernels(CudaKernelRegistry& registry) {
  using backends::DTypeSet;
  using backends::KernelSupport;
  for (const auto& [name, spec] : unary_specs()) {
    KernelSupport support;  // Identity and Dropout copy any dtype
    if (spec.op != UnaryOp::kIdentity) support.every_tensor = spec.integers ? kCudaNumericDTypes : backends::kNnFloatDTypes;
    if (name == "Dropout") support.check = refuse_dropout_it_cannot_copy;
    registry.add(name, CudaKernel{nullptr, launch_unary}, support);
  }
  for (const auto& [name, op] : binary_ops()) {
    KernelSupport support{.every_tensor = kCudaNumericDTypes};
    if (op == BinaryOp::kAnd || op == BinaryOp::kOr || op == BinaryOp::kXor) {
      support.every_tensor = DTypeSet{DType::kBool};
    } else if (is_comparison(op)) {
      support.every_tensor = DTypeSet{DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt32, DType::kInt64,
                                      DType::kBool};
    } else if (op == BinaryOp::kMean || op == BinaryOp::kPRelu) {
      support.every_tensor = backends::kNnFloatDTypes;
    }
    registry.add(name, CudaKernel{nullptr, launch_binary}, support);
  }
  registry.add("Clip", CudaKernel{nullptr, launch_clip}, {.every_tensor = kCudaNumericDTypes});
  const KernelSupport float_predicate{.every_tensor = DTypeSet{DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kBool},
                                      .inputs = {{{0}, backends::kNnFloatDTypes}}};
  registry.add("IsNaN", CudaKernel{nullptr, launch_predicate}, float_predicate);
  registry.add("IsInf", CudaKernel{nullptr, launch_predicate}, float_predicate);
  registry.add("Not", CudaKernel{nullptr, launch_predicate}, {.every_tensor = DTypeSet{DType::kBool}});
  registry.add("Where", CudaKernel{nullptr, launch_where});
  registry.add("Cast", CudaKernel{nullptr, launch_cast});
  registry.add("CastLike", CudaKernel{nullptr, launch_cast});
}

}  // namespace kiln::cuda
