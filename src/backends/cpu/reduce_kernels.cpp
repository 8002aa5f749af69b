// Reduce* on the CPU. One pass over the input in memory order, accumulating into one accumulator
// per output element (double for floating data, int64 for integer data).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/middle_axis_mean.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/simd_math.hpp"
#include "ops/nn_reduce_axes.hpp"

namespace kiln::cpu {
namespace {

enum class Reduction { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kSumSquare, kLogSum, kLogSumExp };

// Calls visit(input_offset, output_offset) for every input element, in memory order.
template <typename Visit>
void for_each_element(const Shape& input, const std::vector<bool>& mask, Visit&& visit) {
  const size_t rank = input.size();
  const int64_t total = shape_numel(input);
  if (total == 0) return;
  // One buffer for the odometer index and the output strides over the input's axes (0 on
  // reduced axes).
  std::unique_ptr<int64_t[]> state(new int64_t[2 * rank + 1]());
  int64_t* index = state.get();
  int64_t* out_strides = state.get() + rank;
  int64_t stride = 1;
  for (size_t i = rank; i-- > 0;) {
    if (mask[i]) continue;
    out_strides[i] = stride;
    stride *= input[i];
  }
  int64_t out_offset = 0;
  for (int64_t flat = 0; flat < total; ++flat) {
    visit(flat, out_offset);
    for (size_t i = rank; i-- > 0;) {
      out_offset += out_strides[i];
      if (++index[i] < input[i]) break;
      out_offset -= out_strides[i] * input[i];
      index[i] = 0;
    }
  }
}

template <typename Acc>
Acc initial_value(Reduction r) {
  switch (r) {
    case Reduction::kProd:
      return Acc{1};
    case Reduction::kMax:
    case Reduction::kLogSumExp:
      if constexpr (std::numeric_limits<Acc>::has_infinity) {
        return -std::numeric_limits<Acc>::infinity();
      } else {
        return std::numeric_limits<Acc>::lowest();
      }
    case Reduction::kMin:
      if constexpr (std::numeric_limits<Acc>::has_infinity) {
        return std::numeric_limits<Acc>::infinity();
      } else {
        return std::numeric_limits<Acc>::max();
      }
    default:
      return Acc{0};
  }
}

template <typename T, typename Acc>
void reduce(Reduction r, const TensorView& x, const std::vector<bool>& mask, T* out,
            int64_t out_count) {
  const T* in = x.as<const T>();
  std::vector<Acc> acc(static_cast<size_t>(out_count), initial_value<Acc>(r));
  auto run = [&](auto&& step) {
    for_each_element(x.shape, mask, [&](int64_t i, int64_t o) {
      step(acc[static_cast<size_t>(o)], static_cast<Acc>(in[i]));
    });
  };
  std::vector<Acc> maxima;
  switch (r) {
    case Reduction::kSum:
    case Reduction::kMean:
    case Reduction::kLogSum:
      run([](Acc& a, Acc v) { a += v; });
      break;
    case Reduction::kProd:
      run([](Acc& a, Acc v) { a *= v; });
      break;
    case Reduction::kMax:
      run([](Acc& a, Acc v) {
        if (v > a || v != v) a = v;  // v != v: NaN propagates
      });
      break;
    case Reduction::kMin:
      run([](Acc& a, Acc v) {
        if (v < a || v != v) a = v;
      });
      break;
    case Reduction::kL1:
      run([](Acc& a, Acc v) { a += v < 0 ? -v : v; });
      break;
    case Reduction::kL2:
    case Reduction::kSumSquare:
      run([](Acc& a, Acc v) { a += v * v; });
      break;
    case Reduction::kLogSumExp:
      // Two passes: the maximum, then the sum of exp(x - max), for numerical stability.
      run([](Acc& a, Acc v) {
        if (v > a || v != v) a = v;
      });
      maxima = acc;
      std::fill(acc.begin(), acc.end(), Acc{0});
      for_each_element(x.shape, mask, [&](int64_t i, int64_t o) {
        const Acc m = maxima[static_cast<size_t>(o)];
        if (std::isinf(static_cast<double>(m))) return;  // all -inf (or +inf present)
        acc[static_cast<size_t>(o)] += std::exp(static_cast<Acc>(in[i]) - m);
      });
      break;
  }
  const int64_t in_count = x.numel();
  const double per_output = out_count > 0 ? static_cast<double>(in_count) / out_count : 0.0;
  for (int64_t o = 0; o < out_count; ++o) {
    const Acc a = acc[static_cast<size_t>(o)];
    switch (r) {
      case Reduction::kMean:
        out[o] = static_cast<T>(static_cast<double>(a) / per_output);
        break;
      case Reduction::kL2:
        out[o] = static_cast<T>(std::sqrt(static_cast<double>(a)));
        break;
      case Reduction::kLogSum:
        out[o] = static_cast<T>(std::log(static_cast<double>(a)));
        break;
      case Reduction::kLogSumExp: {
        const double m = static_cast<double>(maxima[static_cast<size_t>(o)]);
        out[o] = static_cast<T>(std::isinf(m) ? m : m + std::log(static_cast<double>(a)));
        break;
      }
      default:
        out[o] = static_cast<T>(a);
    }
  }
}

// The fast path for float32 Sum, Mean and Max whose reduced axes (size-1 axes aside) are one
// contiguous block, [outer, reduced, inner] (global pooling in NCHW and NHWC, row statistics):
// rows reduced with the vector loops, or rows of `inner` accumulated in double, over the
// context's threads. Same accumulation type as the reference (double sums; Max exact), so only
// the summation order differs. Returns false for other cases.
bool try_reduce_contiguous(Reduction r, const TensorView& x, const std::vector<bool>& mask, float* out) {
  if (r != Reduction::kSum && r != Reduction::kMean && r != Reduction::kMax) return false;
  if (simd::level() == simd::Level::kScalar) return false;
  int64_t outer = 1, reduced = 1, inner = 1;
  int state = 0;  // 0: before the block, 1: in it, 2: after it
  for (size_t i = 0; i < x.shape.size(); ++i) {
    const int64_t dim = x.shape[i];
    if (dim == 1) continue;
    if (mask[i]) {
      if (state == 2) return false;
      state = 1;
      reduced *= dim;
    } else {
      if (state == 1) state = 2;
      (state == 0 ? outer : inner) *= dim;
    }
  }
  if (reduced == 0 || outer * inner == 0) return false;
  if (r == Reduction::kMax && inner != 1) return false;
  const float* in = x.as<const float>();
  const double divisor = r == Reduction::kMean ? static_cast<double>(reduced) : 1.0;
  if (inner == 1) {
    parallel_chunks(outer, std::max<int64_t>(1, (int64_t{1} << 15) / reduced), [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        const float* row = in + o * reduced;
        out[o] = r == Reduction::kMax ? simd::max(row, reduced)
                                      : static_cast<float>(simd::sum(row, reduced) / divisor);
      }
    });
    return true;
  }
  // Columns: out[o, i] = sum over j of in[o, j, i].
  middle_axis_mean(in, outer, reduced, inner, divisor, out);
  return true;
}

template <Reduction kReduction>
void reduce_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  std::vector<int64_t> axes;
  if (ctx.has_input(1) && ctx.inputs[1].numel() > 0) axes = read_indices(ctx.inputs[1]);
  const bool keepdims = ops::nn::read_flag(nn::label_of(ctx), ctx.attrs, "keepdims", true);
  const bool noop = ops::nn::read_flag(nn::label_of(ctx), ctx.attrs, "noop_with_empty_axes", false);
  const std::vector<bool> mask =
      ops::nn::reduce_axis_mask(nn::label_of(ctx), axes, x.shape.size(), noop);
  nn::require_output_shape(ctx, 0, ops::nn::reduced_shape(x.shape, mask, keepdims));
  if (ctx.outputs[0].dtype != x.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output dtype ", dtype_name(ctx.outputs[0].dtype),
             " differs from the input's ", dtype_name(x.dtype));
  }
  const int64_t out_count = ctx.outputs[0].numel();
  const bool integer_ok = ops::nn::reduce_accepts_integers(ctx.op);
  switch (x.dtype) {
    case DType::kFloat32:
      if (try_reduce_contiguous(kReduction, x, mask, ctx.outputs[0].as<float>())) return;
      reduce<float, double>(kReduction, x, mask, ctx.outputs[0].as<float>(), out_count);
      return;
    case DType::kFloat64:
      reduce<double, double>(kReduction, x, mask, ctx.outputs[0].as<double>(), out_count);
      return;
    case DType::kInt64:
      if (!integer_ok) break;
      reduce<int64_t, int64_t>(kReduction, x, mask, ctx.outputs[0].as<int64_t>(), out_count);
      return;
    case DType::kInt32:
      if (!integer_ok) break;
      reduce<int32_t, int64_t>(kReduction, x, mask, ctx.outputs[0].as<int32_t>(), out_count);
      return;
    case DType::kBool: {
      if (kReduction != Reduction::kMax && kReduction != Reduction::kMin) break;
      // Bytes 0 or 1: the maximum is "any", the minimum "all". An empty set gives the identity
      // (int64's lowest or highest), which the last step turns into false or true.
      uint8_t* out = ctx.outputs[0].as<uint8_t>();
      reduce<uint8_t, int64_t>(kReduction, x, mask, out, out_count);
      for (int64_t o = 0; o < out_count; ++o) out[o] = out[o] != 0 ? 1 : 0;
      return;
    }
    default:
      break;
  }
  ctx.fail(ErrorCode::kUnsupported, "input 0 has unsupported dtype ", dtype_name(x.dtype));
}

}  // namespace

void register_reduce_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<reduce_kernel<Reduction::kSum>>(registry, "ReduceSum");
  nn::add_float_kernel<reduce_kernel<Reduction::kMean>>(registry, "ReduceMean");
  nn::add_float_kernel<reduce_kernel<Reduction::kMax>>(registry, "ReduceMax");
  nn::add_float_kernel<reduce_kernel<Reduction::kMin>>(registry, "ReduceMin");
  nn::add_float_kernel<reduce_kernel<Reduction::kProd>>(registry, "ReduceProd");
  nn::add_float_kernel<reduce_kernel<Reduction::kL1>>(registry, "ReduceL1");
  nn::add_float_kernel<reduce_kernel<Reduction::kL2>>(registry, "ReduceL2");
  nn::add_float_kernel<reduce_kernel<Reduction::kSumSquare>>(registry, "ReduceSumSquare");
  nn::add_float_kernel<reduce_kernel<Reduction::kLogSum>>(registry, "ReduceLogSum");
  nn::add_float_kernel<reduce_kernel<Reduction::kLogSumExp>>(registry, "ReduceLogSumExp");
}

}  // namespace kiln::cpu
