// CPU kernels of the elementwise family. Math ops are float_compute (fp16/bf16 arrive as float32)
// and compute floats with the scalar table's formulas (ops/scalar_math.h), as the CUDA kernels do;
// Where and Cast move every dtype themselves. Signed integer arithmetic wraps (two's complement)
// instead of overflowing, unsigned arithmetic wraps modulo 2^bits (as C++ and numpy do), and
// integer division by zero is reported, never executed.
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/simd_math.hpp"
#include "backends/cpu/tensor_broadcast.hpp"
#include "backends/cpu/tensor_dispatch.hpp"
#include "base/float8.hpp"
#include "base/half.hpp"
#include "base/sub_byte.hpp"
#include "ops/scalar_math.h"
#include "ops/scalar_ops.hpp"

namespace kiln::cpu {
namespace {

[[noreturn]] void fail_dtype(const KernelContext& ctx, DType dtype) {
  ctx.fail(ErrorCode::kUnsupported, "no CPU kernel for dtype ", dtype_name(dtype));
}

// Bool tensors are computed as uint8 0/1 values.
DType compute_dtype(DType dtype) {
  return dtype == DType::kBool ? DType::kUInt8 : dtype;
}

// Unsigned type wide enough that arithmetic on it neither overflows nor promotes to int.
template <typename T>
using WrapType =
    std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;

template <typename T>
T wrapping_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<WrapType<T>>(a) + static_cast<WrapType<T>>(b));
  } else {
    return kiln_add<T>(a, b);
  }
}
template <typename T>
T wrapping_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<WrapType<T>>(a) - static_cast<WrapType<T>>(b));
  } else {
    return kiln_sub<T>(a, b);
  }
}
template <typename T>
T wrapping_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<WrapType<T>>(a) * static_cast<WrapType<T>>(b));
  } else {
    return kiln_mul<T>(a, b);
  }
}
template <typename T>
T wrapping_neg(T a) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(WrapType<T>{0} - static_cast<WrapType<T>>(a));
  } else {
    return kiln_neg<T>(a);
  }
}

// ---- unary ops ------------------------------------------------------------------------------
// Float formulas are the scalar table's (ops/scalar_math.h), attribute values and defaults too
// (ops::scalar_attr_values); integer paths of Relu/Neg/Abs/Sign are written here.

struct NoAttrs {
  explicit NoAttrs(const KernelContext&) {}
};

// The node's float attributes in its scalar-table entry's order, with the table's defaults.
std::vector<float> table_attrs(const KernelContext& ctx) {
  const ops::ScalarOp* entry = ops::find_scalar_op(ctx.op, ctx.attrs);
  if (entry == nullptr) ctx.fail(ErrorCode::kUnsupported, "no scalar formula for these attributes");
  return ops::scalar_attr_values(*entry, ctx.attrs);
}

#define KILN_FLOAT_UNARY(Name, function) \
  struct Name : NoAttrs {                \
    using NoAttrs::NoAttrs;              \
    template <typename T>                \
    T operator()(T x) const {            \
      return function<T>(x);             \
    }                                    \
  };

KILN_FLOAT_UNARY(SigmoidOp, kiln_sigmoid)
KILN_FLOAT_UNARY(TanhOp, kiln_tanh)
KILN_FLOAT_UNARY(ErfOp, kiln_erf)
KILN_FLOAT_UNARY(HardSwishOp, kiln_hard_swish)
KILN_FLOAT_UNARY(SqrtOp, kiln_sqrt)
KILN_FLOAT_UNARY(ReciprocalOp, kiln_reciprocal)
KILN_FLOAT_UNARY(ExpOp, kiln_exp)
KILN_FLOAT_UNARY(LogOp, kiln_log)
KILN_FLOAT_UNARY(FloorOp, kiln_floor)
KILN_FLOAT_UNARY(CeilOp, kiln_ceil)
KILN_FLOAT_UNARY(RoundOp, kiln_round)
KILN_FLOAT_UNARY(SinOp, kiln_sin)
KILN_FLOAT_UNARY(CosOp, kiln_cos)
KILN_FLOAT_UNARY(TanOp, kiln_tan)
KILN_FLOAT_UNARY(AsinOp, kiln_asin)
KILN_FLOAT_UNARY(AcosOp, kiln_acos)
KILN_FLOAT_UNARY(AtanOp, kiln_atan)
KILN_FLOAT_UNARY(SinhOp, kiln_sinh)
KILN_FLOAT_UNARY(CoshOp, kiln_cosh)
KILN_FLOAT_UNARY(AsinhOp, kiln_asinh)
KILN_FLOAT_UNARY(AcoshOp, kiln_acosh)
KILN_FLOAT_UNARY(AtanhOp, kiln_atanh)
KILN_FLOAT_UNARY(SoftplusOp, kiln_softplus)
KILN_FLOAT_UNARY(SoftsignOp, kiln_softsign)
KILN_FLOAT_UNARY(MishOp, kiln_mish)
#undef KILN_FLOAT_UNARY

// Ops with float attributes hold the values the table gives for the node.
#define KILN_FLOAT_UNARY_ATTRS(Name, function, ...)                  \
  struct Name {                                                      \
    std::vector<float> a;                                            \
    explicit Name(const KernelContext& ctx) : a(table_attrs(ctx)) {} \
    template <typename T>                                            \
    T operator()(T x) const {                                        \
      return function<T>(x, __VA_ARGS__);                            \
    }                                                                \
  };

KILN_FLOAT_UNARY_ATTRS(LeakyReluOp, kiln_leaky_relu, a[0])
KILN_FLOAT_UNARY_ATTRS(ThresholdedReluOp, kiln_thresholded_relu, a[0])
KILN_FLOAT_UNARY_ATTRS(EluOp, kiln_elu, a[0])
KILN_FLOAT_UNARY_ATTRS(CeluOp, kiln_celu, a[0])
KILN_FLOAT_UNARY_ATTRS(SeluOp, kiln_selu, a[0], a[1])
KILN_FLOAT_UNARY_ATTRS(HardSigmoidOp, kiln_hard_sigmoid, a[0], a[1])
#undef KILN_FLOAT_UNARY_ATTRS

// Bool results are stored as uint8 0/1.
struct IsNaNOp : NoAttrs {
  using NoAttrs::NoAttrs;
  template <typename T>
  uint8_t operator()(T x) const {
    return kiln_is_nan<T>(x) ? 1 : 0;
  }
};

struct IsInfOp {
  std::vector<float> a;  // detect_negative, detect_positive
  explicit IsInfOp(const KernelContext& ctx) : a(table_attrs(ctx)) {}
  template <typename T>
  uint8_t operator()(T x) const {
    return kiln_is_inf<T>(x, a[0], a[1]) ? 1 : 0;
  }
};

struct GeluOp {
  bool tanh_form;
  explicit GeluOp(const KernelContext& ctx) {
    const ops::ScalarOp* entry = ops::find_scalar_op(ctx.op, ctx.attrs);
    if (entry == nullptr) ctx.fail(ErrorCode::kUnsupported, "unknown 'approximate' value");
    tanh_form = entry->function == "kiln_gelu_tanh";
  }
  template <typename T>
  T operator()(T x) const {
    return tanh_form ? kiln_gelu_tanh<T>(x) : kiln_gelu<T>(x);
  }
};

struct ReluOp : NoAttrs {
  using NoAttrs::NoAttrs;
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      return kiln_relu<T>(x);
    } else {
      return x < T(0) ? T(0) : x;
    }
  }
};

struct NegOp : NoAttrs {
  using NoAttrs::NoAttrs;
  template <typename T>
  T operator()(T x) const {
    return wrapping_neg(x);  // kiln_neg for floats
  }
};

struct AbsOp : NoAttrs {
  using NoAttrs::NoAttrs;
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      return kiln_abs<T>(x);
    } else if constexpr (std::is_signed_v<T>) {
      return x < T(0) ? wrapping_neg(x) : x;
    } else {
      return x;
    }
  }
};

struct SignOp : NoAttrs {
  using NoAttrs::NoAttrs;
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      return kiln_sign<T>(x);
    } else if constexpr (std::is_signed_v<T>) {
      return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    } else {
      return x > T(0) ? T(1) : T(0);
    }
  }
};

struct NotOp : NoAttrs {
  using NoAttrs::NoAttrs;
  uint8_t operator()(uint8_t x) const { return kiln_not<float>(x != 0) ? 1 : 0; }
};

// The vectorised loop (simd_math.hpp) of the ops that have one.
template <typename Op>
constexpr std::optional<simd::Unary> kVectorForm = std::nullopt;
template <>
constexpr std::optional<simd::Unary> kVectorForm<SigmoidOp> = simd::Unary::kSigmoid;
template <>
constexpr std::optional<simd::Unary> kVectorForm<TanhOp> = simd::Unary::kTanh;
template <>
constexpr std::optional<simd::Unary> kVectorForm<ErfOp> = simd::Unary::kErf;
template <>
constexpr std::optional<simd::Unary> kVectorForm<ExpOp> = simd::Unary::kExp;

template <typename Op>
std::optional<simd::Unary> vector_form(const Op&) {
  return kVectorForm<Op>;
}
std::optional<simd::Unary> vector_form(const GeluOp& op) {
  return op.tanh_form ? simd::Unary::kGeluTanh : simd::Unary::kGelu;
}

// Elements per chunk below which a loop stays on one thread (waking the pool costs more).
constexpr int64_t kElementwiseGrain = 1 << 15;

template <typename Op, typename... Ts>
void unary_kernel(KernelContext& ctx) {
  const Op op(ctx);
  const TensorView& x = ctx.inputs[0];
  const TensorView& y = ctx.outputs[0];
  const int64_t n = x.numel();
  if (const std::optional<simd::Unary> form = vector_form(op);
      form && x.dtype == DType::kFloat32 && y.dtype == DType::kFloat32 && simd::level() != simd::Level::kScalar) {
    const float* in = x.as<const float>();
    float* out = y.as<float>();
    parallel_chunks(n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
      simd::unary(*form, in + begin, out + begin, end - begin);
    });
    return;
  }
  const bool ok = dispatch_among<Ts...>(compute_dtype(x.dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using R = decltype(op(T{}));
    const T* in = x.as<const T>();
    R* out = y.as<R>();
    for (int64_t i = 0; i < n; ++i) out[i] = op(in[i]);
  });
  if (!ok) fail_dtype(ctx, x.dtype);
}

// ---- binary ops -----------------------------------------------------------------------------

struct BinaryOp : NoAttrs {
  using NoAttrs::NoAttrs;
  static constexpr bool kIntegerDivision = false;  // integer kernels check for a zero divisor
};

struct AddOp : BinaryOp {
  using BinaryOp::BinaryOp;
  template <typename T>
  T operator()(T a, T b) const {
    return wrapping_add(a, b);
  }
};
struct SubOp : BinaryOp {
  using BinaryOp::BinaryOp;
  template <typename T>
  T operator()(T a, T b) const {
    return wrapping_sub(a, b);
  }
};
struct MulOp : BinaryOp {
  using BinaryOp::BinaryOp;
  template <typename T>
  T operator()(T a, T b) const {
    return wrapping_mul(a, b);
  }
};
struct DivOp : BinaryOp {
  using BinaryOp::BinaryOp;
  static constexpr bool kIntegerDivision = true;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return kiln_div<T>(a, b);
    } else {
      if constexpr (std::is_signed_v<T>) {
        if (b == T(-1)) return wrapping_neg(a);  // INT_MIN / -1 overflows
      }
      return static_cast<T>(a / b);  // integers truncate toward zero
    }
  }
};
struct ModOp : BinaryOp {
  bool fmod;
  explicit ModOp(const KernelContext& ctx)
      : BinaryOp(ctx), fmod(ctx.attrs.get_int_or("fmod", 0) != 0) {}
  static constexpr bool kIntegerDivision = true;
  template <typename T>
  T operator()(T a, T b) const {
    T r;
    if constexpr (std::is_floating_point_v<T>) {
      return fmod ? kiln_fmod<T>(a, b) : kiln_mod<T>(a, b);
    } else if constexpr (std::is_signed_v<T>) {
      if (b == T(-1)) return T(0);
      r = static_cast<T>(a % b);
    } else {
      return static_cast<T>(a % b);
    }
    // fmod=0: the result takes the divisor's sign (Python/numpy mod).
    if (!fmod && r != T(0) && ((r < T(0)) != (b < T(0)))) r = static_cast<T>(r + b);
    return r;
  }
};
struct MinOp : BinaryOp {
  using BinaryOp::BinaryOp;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return kiln_min<T>(a, b);
    } else {
      return a < b ? a : b;
    }
  }
};
struct MaxOp : BinaryOp {
  using BinaryOp::BinaryOp;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return kiln_max<T>(a, b);
    } else {
      return a > b ? a : b;
    }
  }
};
struct PReluOp : BinaryOp {
  using BinaryOp::BinaryOp;
  template <typename T>
  T operator()(T x, T slope) const {
    return kiln_prelu<T>(x, slope);
  }
};

// Comparisons (kiln_equal, ... for every dtype: the formulas are the integer ones too) and logic
// on bools stored as uint8 0/1; the results are uint8 0/1.
#define KILN_COMPARE_OP(Name, function)  \
  struct Name : BinaryOp {               \
    using BinaryOp::BinaryOp;            \
    template <typename T>                \
    uint8_t operator()(T a, T b) const { \
      return function<T>(a, b) ? 1 : 0;  \
    }                                    \
  };
KILN_COMPARE_OP(EqualOp, kiln_equal)
KILN_COMPARE_OP(LessOp, kiln_less)
KILN_COMPARE_OP(GreaterOp, kiln_greater)
KILN_COMPARE_OP(LessOrEqualOp, kiln_less_or_equal)
KILN_COMPARE_OP(GreaterOrEqualOp, kiln_greater_or_equal)
#undef KILN_COMPARE_OP

#define KILN_LOGIC_OP(Name, function)                 \
  struct Name : BinaryOp {                            \
    using BinaryOp::BinaryOp;                         \
    uint8_t operator()(uint8_t a, uint8_t b) const {  \
      return function<float>(a != 0, b != 0) ? 1 : 0; \
    }                                                 \
  };
KILN_LOGIC_OP(AndOp, kiln_and)
KILN_LOGIC_OP(OrOp, kiln_or)
KILN_LOGIC_OP(XorOp, kiln_xor)
#undef KILN_LOGIC_OP

// Bitwise ops on the integers' two's-complement bits.
#define KILN_BITWISE_OP(Name, expression)                        \
  struct Name : BinaryOp {                                       \
    using BinaryOp::BinaryOp;                                    \
    template <typename T>                                        \
    T operator()(T a, T b) const {                               \
      return static_cast<T>(expression);                         \
    }                                                            \
  };
KILN_BITWISE_OP(BitwiseAndOp, a & b)
KILN_BITWISE_OP(BitwiseOrOp, a | b)
KILN_BITWISE_OP(BitwiseXorOp, a ^ b)
#undef KILN_BITWISE_OP

struct BitwiseNotOp : NoAttrs {
  using NoAttrs::NoAttrs;
  template <typename T>
  T operator()(T x) const {
    return static_cast<T>(~x);
  }
};

struct BitShiftOp : BinaryOp {
  explicit BitShiftOp(const KernelContext& ctx) : BinaryOp(ctx) {
    const std::string direction = ctx.attrs.get_string_or("direction", "");
    if (direction != "LEFT" && direction != "RIGHT") {
      ctx.fail(ErrorCode::kInvalidArgument, "attribute 'direction' must be \"LEFT\" or \"RIGHT\", got \"", direction,
               "\"");
    }
    left = direction == "LEFT";
  }
  // Left shifts wrap (two's complement); right shifts of signed integers are arithmetic, of
  // unsigned ones logical. A shift by a negative amount or by the width or more gives what
  // shifting out every bit would: 0, or -1 for a negative integer shifted right (opset 28's
  // definition for signed integers; numpy's left_shift/right_shift, which the ONNX reference
  // runs, give the same for unsigned ones, e.g. uint64 1 << 64 == 0).
  template <typename T>
  T operator()(T a, T b) const {
    using U = std::make_unsigned_t<T>;
    constexpr uint64_t kBits = sizeof(T) * 8;
    bool negative_amount = false;
    bool negative_value = false;
    if constexpr (std::is_signed_v<T>) {
      negative_amount = b < T{0};
      negative_value = a < T{0};
    }
    // Non-negative here, so the amount as uint64 is exact (uint64 amounts above INT64_MAX too).
    const auto amount = static_cast<uint64_t>(b);
    if (negative_amount || amount >= kBits) return (!left && negative_value) ? static_cast<T>(-1) : T{0};
    if (left) return static_cast<T>(static_cast<U>(static_cast<U>(a) << amount));
    return static_cast<T>(a >> amount);
  }
  bool left = false;
};

template <typename T>
void check_nonzero_divisor(const KernelContext& ctx, const TensorView& divisor) {
  const T* d = divisor.as<const T>();
  const int64_t n = divisor.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (d[i] == T(0)) {
      ctx.fail(ErrorCode::kInvalidArgument, "integer division by zero (divisor element ", i, ")");
    }
  }
}

template <typename Op, typename... Ts>
void binary_kernel(KernelContext& ctx) {
  const Op op(ctx);
  const TensorView& a = ctx.inputs[0];
  const TensorView& b = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  const bool ok = dispatch_among<Ts...>(compute_dtype(a.dtype), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using R = decltype(op(T{}, T{}));
    if constexpr (Op::kIntegerDivision && std::is_integral_v<T>) {
      if (out.numel() > 0) check_nonzero_divisor<T>(ctx, b);
    }
    broadcast_binary<T, T, R>(a, b, out, op);
  });
  if (!ok) fail_dtype(ctx, a.dtype);
}

// Integer power by squaring; wraps on overflow like the other integer ops. The exponent is any
// integer type (uint64 exponents above INT64_MAX included).
template <typename T, typename E>
T integer_pow(T base, E exponent) {
  if constexpr (std::is_signed_v<E>) {
    if (exponent < 0) {
      if (base == T(1)) return T(1);
      if (base == T(-1)) return (exponent % 2 == 0) ? T(1) : T(-1);
      return T(0);
    }
  }
  auto remaining = static_cast<uint64_t>(exponent);
  T result = 1;
  while (remaining > 0) {
    if (remaining & 1) result = wrapping_mul(result, base);
    base = wrapping_mul(base, base);
    remaining >>= 1;
  }
  return result;
}

template <typename T>
T saturating_cast_from_double(double v);

template <typename T, typename E>
T pow_element(T x, E e) {
  if constexpr (std::is_integral_v<T> && std::is_integral_v<E>) {
    return integer_pow(x, e);
  } else if constexpr (std::is_integral_v<T>) {
    return saturating_cast_from_double<T>(std::pow(static_cast<double>(x), static_cast<double>(e)));
  } else if constexpr (std::is_same_v<T, float> && std::is_same_v<E, float>) {
    return kiln_pow<float>(x, e);
  } else {
    return static_cast<T>(kiln_pow<double>(static_cast<double>(x), static_cast<double>(e)));
  }
}

void pow_kernel(KernelContext& ctx) {
  const TensorView& a = ctx.inputs[0];
  const TensorView& b = ctx.inputs[1];
  const TensorView& out = ctx.outputs[0];
  bool ok = false;
  dispatch_among<float, double, int32_t, int64_t>(a.dtype, [&](auto base_tag) {
    using T = typename decltype(base_tag)::type;
    ok = dispatch_among<float, double, KILN_INT_TYPES>(b.dtype, [&](auto exp_tag) {
      using E = typename decltype(exp_tag)::type;
      broadcast_binary<T, E, T>(a, b, out, pow_element<T, E>);
    });
  });
  if (!ok)
    ctx.fail(ErrorCode::kUnsupported, "no CPU kernel for Pow(", dtype_name(a.dtype), ", ",
             dtype_name(b.dtype), ")");
}

// ---- variadic ops ---------------------------------------------------------------------------

template <typename Op, bool kMean, typename... Ts>
void variadic_kernel(KernelContext& ctx) {
  const Op op(ctx);
  const TensorView& out = ctx.outputs[0];
  const bool ok = dispatch_among<Ts...>(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const TensorView& first = ctx.inputs[0];
    copy_strided(first.data, out.data, sizeof(T), out.shape,
                 broadcast_strides(first.shape, out.shape));
    // Accumulating in place is safe: the accumulator and the output share every index.
    for (size_t i = 1; i < ctx.inputs.size(); ++i) {
      broadcast_binary<T, T, T>(out, ctx.inputs[i], out, op);
    }
    if constexpr (kMean) {
      const T count = static_cast<T>(ctx.inputs.size());
      T* o = out.as<T>();
      for (int64_t i = 0; i < out.numel(); ++i) o[i] /= count;
    }
  });
  if (!ok) fail_dtype(ctx, out.dtype);
}

// ---- Clip, Where --------------------------------------------------------------------------

void clip_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const bool ok = dispatch_among<KILN_NUMERIC_TYPES>(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T lo = std::numeric_limits<T>::lowest();
    T hi = std::numeric_limits<T>::max();
    if constexpr (std::is_floating_point_v<T>) {
      lo = -std::numeric_limits<T>::infinity();
      hi = std::numeric_limits<T>::infinity();
    }
    if (ctx.has_input(1) && ctx.inputs[1].numel() > 0) lo = ctx.inputs[1].as<const T>()[0];
    if (ctx.has_input(2) && ctx.inputs[2].numel() > 0) hi = ctx.inputs[2].as<const T>()[0];
    const T* in = x.as<const T>();
    T* o = out.as<T>();
    const int64_t n = x.numel();
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_floating_point_v<T>) {
        o[i] = kiln_clip<T>(in[i], lo, hi);
      } else {
        const T v = in[i] < lo ? lo : in[i];
        o[i] = v > hi ? hi : v;  // min(max(x, lo), hi), so lo > hi gives hi as ONNX says
      }
    }
  });
  if (!ok) fail_dtype(ctx, x.dtype);
}

template <typename E>
void where_typed(const KernelContext& ctx) {
  broadcast_ternary<uint8_t, E, E, E>(ctx.inputs[0], ctx.inputs[1], ctx.inputs[2], ctx.outputs[0],
                                      [](uint8_t c, E x, E y) { return c ? x : y; });
}

void where_kernel(KernelContext& ctx) {
  switch (dtype_size(ctx.outputs[0].dtype)) {
    case 1:
      return where_typed<uint8_t>(ctx);
    case 2:
      return where_typed<uint16_t>(ctx);
    case 4:
      return where_typed<uint32_t>(ctx);
    case 8:
      return where_typed<uint64_t>(ctx);
    default:
      fail_dtype(ctx, ctx.outputs[0].dtype);
  }
}

// ---- Cast ---------------------------------------------------------------------------------

// Float -> integer: truncate toward zero, saturate out-of-range values, NaN -> 0 (ONNX leaves
// these undefined; this avoids C++ undefined behaviour).
template <typename T>
T saturating_cast_from_double(double v) {
  if (std::isnan(v)) return T(0);
  const double t = std::trunc(v);
  if (t <= static_cast<double>(std::numeric_limits<T>::lowest())) {
    return std::numeric_limits<T>::lowest();
  }
  if (t >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(t);
}

// The source element as a native arithmetic value.
template <typename S>
auto load_native(S v) {
  if constexpr (std::is_same_v<S, Float16Bits>) {
    return half_to_float(v.bits);
  } else if constexpr (std::is_same_v<S, BFloat16Bits>) {
    return bfloat16_to_float(v.bits);
  } else if constexpr (std::is_same_v<S, BoolByte>) {
    return static_cast<uint8_t>(v.value != 0 ? 1 : 0);
  } else {
    return v;
  }
}

template <typename D, typename S>
D convert_element(S src) {
  const auto v = load_native(src);
  using V = decltype(v);
  if constexpr (std::is_same_v<D, Float16Bits>) {
    return D{float_to_half(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<D, BFloat16Bits>) {
    return D{float_to_bfloat16(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<D, BoolByte>) {
    return D{static_cast<uint8_t>(v != V(0) ? 1 : 0)};
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<V>) {
    return saturating_cast_from_double<D>(static_cast<double>(v));
  } else {
    return static_cast<D>(v);  // integer narrowing wraps (two's complement, C++20)
  }
}

void cast_view(const KernelContext& ctx, const TensorView& in, const TensorView& out);

bool is_sub_byte_int(DType dtype) { return is_sub_byte(dtype) && dtype != DType::kFloat4E2M1; }

// The dtypes kiln stores as codes, whose casts go through a wider type here: float8 (all five),
// float4e2m1 and the sub-byte integers.
bool is_coded(DType dtype) {
  return is_float8(dtype) || is_sub_byte(dtype) || dtype == DType::kFloat8E8M0;
}

// Casts from and to the coded dtypes, as ONNX's reference computes them: float8 (opset 19),
// float8e8m0 (opset 24: via float32, `saturate` and `round_mode`), float4e2m1 (round to nearest
// even, saturating at ±6) and int4/uint4/int2/uint2 (integers wrap; floats truncate, NaN and
// out-of-range values give 0). Sources are widened to int64 (sub-byte integers), float32
// (float8/float4/e8m0) first; targets are reached from int64 (integer sources of sub-byte
// integers), float64 (float4e2m1 and sub-byte integers from floats) or float32 (the float8s).
void cast_coded_view(const KernelContext& ctx, const TensorView& in, const TensorView& out) {
  const int64_t n = in.numel();
  const auto count = static_cast<size_t>(n);
  const auto* in_codes = in.as<const uint8_t>();
  // 1. A coded source becomes int64 (sub-byte integers) or float32 (the floats) first.
  if (is_coded(in.dtype)) {
    if (is_sub_byte_int(in.dtype)) {
      std::vector<int64_t> values(count);
      for (size_t i = 0; i < count; ++i) values[i] = sub_byte_int_value(in_codes[i], in.dtype);
      return cast_view(ctx, TensorView{DType::kInt64, in.shape, values.data()}, out);
    }
    std::vector<float> values(count);
    for (size_t i = 0; i < count; ++i) {
      const uint8_t code = in_codes[i];
      values[i] = in.dtype == DType::kFloat4E2M1   ? float4e2m1_to_float(code)
                  : in.dtype == DType::kFloat8E8M0 ? float8e8m0_to_float(code)
                                                   : float8_to_float(code, *float8_format(in.dtype));
    }
    return cast_view(ctx, TensorView{DType::kFloat32, in.shape, values.data()}, out);
  }
  // 2. A plain source to a coded target.
  auto* codes = out.as<uint8_t>();
  if (is_sub_byte_int(out.dtype) && !is_floating(in.dtype)) {  // integers and bool wrap
    std::vector<int64_t> values(count);
    cast_view(ctx, in, TensorView{DType::kInt64, in.shape, values.data()});
    for (size_t i = 0; i < count; ++i) codes[i] = sub_byte_int_wrap(values[i], out.dtype);
    return;
  }
  if (is_sub_byte(out.dtype)) {
    std::vector<double> values(count);
    cast_view(ctx, in, TensorView{DType::kFloat64, in.shape, values.data()});
    for (size_t i = 0; i < count; ++i) {
      codes[i] = out.dtype == DType::kFloat4E2M1 ? double_to_float4e2m1(values[i])
                                                 : sub_byte_int_from_double(values[i], out.dtype);
    }
    return;
  }
  std::vector<float> values(count);
  cast_view(ctx, in, TensorView{DType::kFloat32, in.shape, values.data()});
  const bool saturate = ctx.attrs.get_int_or("saturate", 1) != 0;
  if (out.dtype == DType::kFloat8E8M0) {
    const std::optional<E8M0Rounding> rounding =
        e8m0_rounding_from_name(ctx.attrs.get_string_or("round_mode", "up"));
    if (!rounding) ctx.fail(ErrorCode::kInvalidArgument, "attribute 'round_mode' must be up, down or nearest");
    for (size_t i = 0; i < count; ++i) codes[i] = float_to_float8e8m0(values[i], saturate, *rounding);
    return;
  }
  const Float8Format format = *float8_format(out.dtype);
  for (size_t i = 0; i < count; ++i) codes[i] = float_to_float8(values[i], format, saturate);
}

void cast_view(const KernelContext& ctx, const TensorView& in, const TensorView& out) {
  if (in.dtype == out.dtype) {
    if (in.nbytes() > 0) std::memcpy(out.data, in.data, in.nbytes());
    return;
  }
  if (is_coded(in.dtype) || is_coded(out.dtype)) return cast_coded_view(ctx, in, out);
  const int64_t n = in.numel();
  bool ok = false;
  dispatch_among<KILN_ALL_TYPES>(in.dtype, [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    ok = dispatch_among<KILN_ALL_TYPES>(out.dtype, [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      const S* s = in.as<const S>();
      D* d = out.as<D>();
      for (int64_t i = 0; i < n; ++i) d[i] = convert_element<D>(s[i]);
    });
  });
  if (!ok) {
    ctx.fail(ErrorCode::kUnsupported, "no CPU cast from ", dtype_name(in.dtype), " to ",
             dtype_name(out.dtype));
  }
}

void cast_kernel(KernelContext& ctx) {
  cast_view(ctx, ctx.inputs[0], ctx.outputs[0]);
}

}  // namespace

void register_elementwise_kernels(CpuKernelRegistry& registry) {
  registry.add("Sigmoid", {unary_kernel<SigmoidOp, KILN_FLOAT_TYPES>, true});
  registry.add("Tanh", {unary_kernel<TanhOp, KILN_FLOAT_TYPES>, true});
  registry.add("Erf", {unary_kernel<ErfOp, KILN_FLOAT_TYPES>, true});
  registry.add("Gelu", {unary_kernel<GeluOp, KILN_FLOAT_TYPES>, true});
  registry.add("HardSigmoid", {unary_kernel<HardSigmoidOp, KILN_FLOAT_TYPES>, true});
  registry.add("HardSwish", {unary_kernel<HardSwishOp, KILN_FLOAT_TYPES>, true});
  registry.add("Sqrt", {unary_kernel<SqrtOp, KILN_FLOAT_TYPES>, true});
  registry.add("Reciprocal", {unary_kernel<ReciprocalOp, KILN_FLOAT_TYPES>, true});
  registry.add("Exp", {unary_kernel<ExpOp, KILN_FLOAT_TYPES>, true});
  registry.add("Log", {unary_kernel<LogOp, KILN_FLOAT_TYPES>, true});
  registry.add("Floor", {unary_kernel<FloorOp, KILN_FLOAT_TYPES>, true});
  registry.add("Ceil", {unary_kernel<CeilOp, KILN_FLOAT_TYPES>, true});
  registry.add("Round", {unary_kernel<RoundOp, KILN_FLOAT_TYPES>, true});
  registry.add("Sin", {unary_kernel<SinOp, KILN_FLOAT_TYPES>, true});
  registry.add("Cos", {unary_kernel<CosOp, KILN_FLOAT_TYPES>, true});
  registry.add("Tan", {unary_kernel<TanOp, KILN_FLOAT_TYPES>, true});
  registry.add("Asin", {unary_kernel<AsinOp, KILN_FLOAT_TYPES>, true});
  registry.add("Acos", {unary_kernel<AcosOp, KILN_FLOAT_TYPES>, true});
  registry.add("Atan", {unary_kernel<AtanOp, KILN_FLOAT_TYPES>, true});
  registry.add("Sinh", {unary_kernel<SinhOp, KILN_FLOAT_TYPES>, true});
  registry.add("Cosh", {unary_kernel<CoshOp, KILN_FLOAT_TYPES>, true});
  registry.add("Asinh", {unary_kernel<AsinhOp, KILN_FLOAT_TYPES>, true});
  registry.add("Acosh", {unary_kernel<AcoshOp, KILN_FLOAT_TYPES>, true});
  registry.add("Atanh", {unary_kernel<AtanhOp, KILN_FLOAT_TYPES>, true});
  registry.add("Softplus", {unary_kernel<SoftplusOp, KILN_FLOAT_TYPES>, true});
  registry.add("Softsign", {unary_kernel<SoftsignOp, KILN_FLOAT_TYPES>, true});
  registry.add("Mish", {unary_kernel<MishOp, KILN_FLOAT_TYPES>, true});
  registry.add("LeakyRelu", {unary_kernel<LeakyReluOp, KILN_FLOAT_TYPES>, true});
  registry.add("Elu", {unary_kernel<EluOp, KILN_FLOAT_TYPES>, true});
  registry.add("Celu", {unary_kernel<CeluOp, KILN_FLOAT_TYPES>, true});
  registry.add("Selu", {unary_kernel<SeluOp, KILN_FLOAT_TYPES>, true});
  registry.add("ThresholdedRelu", {unary_kernel<ThresholdedReluOp, KILN_FLOAT_TYPES>, true});
  registry.add("Relu", {unary_kernel<ReluOp, KILN_FLOAT_TYPES, KILN_SIGNED_INT_TYPES>, true});
  registry.add("Neg", {unary_kernel<NegOp, KILN_FLOAT_TYPES, KILN_SIGNED_INT_TYPES>, true});
  registry.add("Abs", {unary_kernel<AbsOp, KILN_NUMERIC_TYPES>, true});
  registry.add("Sign", {unary_kernel<SignOp, KILN_NUMERIC_TYPES>, true});
  registry.add("IsNaN", {unary_kernel<IsNaNOp, KILN_FLOAT_TYPES>, true});
  registry.add("IsInf", {unary_kernel<IsInfOp, KILN_FLOAT_TYPES>, true});
  registry.add("Not", {unary_kernel<NotOp, uint8_t>, true});

  registry.add("Add", {binary_kernel<AddOp, KILN_NUMERIC_TYPES>, true});
  registry.add("Sub", {binary_kernel<SubOp, KILN_NUMERIC_TYPES>, true});
  registry.add("Mul", {binary_kernel<MulOp, KILN_NUMERIC_TYPES>, true});
  registry.add("Div", {binary_kernel<DivOp, KILN_NUMERIC_TYPES>, true});
  registry.add("Mod", {binary_kernel<ModOp, KILN_NUMERIC_TYPES>, true});
  registry.add("PRelu", {binary_kernel<PReluOp, KILN_FLOAT_TYPES>, true});
  registry.add("Pow", {pow_kernel, true});
  registry.add("Equal", {binary_kernel<EqualOp, KILN_NUMERIC_TYPES>, true});
  registry.add("Less", {binary_kernel<LessOp, KILN_NUMERIC_TYPES>, true});
  registry.add("Greater", {binary_kernel<GreaterOp, KILN_NUMERIC_TYPES>, true});
  registry.add("LessOrEqual", {binary_kernel<LessOrEqualOp, KILN_NUMERIC_TYPES>, true});
  registry.add("GreaterOrEqual", {binary_kernel<GreaterOrEqualOp, KILN_NUMERIC_TYPES>, true});
  registry.add("And", {binary_kernel<AndOp, uint8_t>, true});
  registry.add("Or", {binary_kernel<OrOp, uint8_t>, true});
  registry.add("Xor", {binary_kernel<XorOp, uint8_t>, true});
  registry.add("BitwiseAnd", {binary_kernel<BitwiseAndOp, KILN_INT_TYPES>, true});
  registry.add("BitwiseOr", {binary_kernel<BitwiseOrOp, KILN_INT_TYPES>, true});
  registry.add("BitwiseXor", {binary_kernel<BitwiseXorOp, KILN_INT_TYPES>, true});
  registry.add("BitwiseNot", {unary_kernel<BitwiseNotOp, KILN_INT_TYPES>, true});
  registry.add("BitShift", {binary_kernel<BitShiftOp, KILN_INT_TYPES>, true});

  registry.add("Min", {variadic_kernel<MinOp, false, KILN_NUMERIC_TYPES>, true});
  registry.add("Max", {variadic_kernel<MaxOp, false, KILN_NUMERIC_TYPES>, true});
  registry.add("Sum", {variadic_kernel<AddOp, false, KILN_NUMERIC_TYPES>, true});
  registry.add("Mean", {variadic_kernel<AddOp, true, KILN_FLOAT_TYPES>, true});

  registry.add("Clip", {clip_kernel, true});
  registry.add("Where", {where_kernel, false});
  registry.add("Cast", {cast_kernel, false});
  registry.add("CastLike", {cast_kernel, false});
}

}  // namespace kiln::cpu
