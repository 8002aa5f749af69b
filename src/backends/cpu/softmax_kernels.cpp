// Softmax and LogSoftmax on the CPU: subtract the maximum, sum the exponentials in double.
// float32 (float16/bfloat16 arrive converted) and float64.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/simd_math.hpp"

namespace kiln::cpu {
namespace {

template <bool kLog, typename T>
void softmax_typed(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const auto rank = static_cast<int64_t>(x.shape.size());
  int64_t axis = ctx.attrs.get_int_or("axis", -1);
  if (rank == 0 || axis < -rank || axis >= rank) {
    ctx.fail(ErrorCode::kInvalidArgument, "axis ", axis, " is out of range for input ",
             shape_to_string(x.shape));
  }
  if (axis < 0) axis += rank;
  nn::require_output_shape(ctx, 0, x.shape);
  const int64_t extent = x.shape[static_cast<size_t>(axis)];
  const int64_t inner = shape_numel(Shape(x.shape.begin() + axis + 1, x.shape.end()));
  const int64_t outer = shape_numel(Shape(x.shape.begin(), x.shape.begin() + axis));
  const T* in = x.as<const T>();
  T* out = ctx.outputs[0].as<T>();
  std::vector<double> sums(static_cast<size_t>(inner));
  std::vector<T> maxima(static_cast<size_t>(inner));
  std::vector<T> factors(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    const T* xo = in + o * extent * inner;
    T* yo = out + o * extent * inner;
    std::fill(maxima.begin(), maxima.end(), -std::numeric_limits<T>::infinity());
    std::fill(sums.begin(), sums.end(), 0.0);
    // Rows along the axis are strided by `inner`; walking i innermost keeps memory contiguous.
    for (int64_t e = 0; e < extent; ++e) {
      for (int64_t i = 0; i < inner; ++i) {
        // A NaN never wins the comparison but still poisons the sum below.
        T& m = maxima[static_cast<size_t>(i)];
        m = xo[e * inner + i] > m ? xo[e * inner + i] : m;
      }
    }
    for (int64_t e = 0; e < extent; ++e) {
      for (int64_t i = 0; i < inner; ++i) {
        // exp in T (the result is T anyway); the sum accumulates in double.
        const T exp_value = std::exp(xo[e * inner + i] - maxima[static_cast<size_t>(i)]);
        sums[static_cast<size_t>(i)] += exp_value;
        if constexpr (!kLog) yo[e * inner + i] = exp_value;
      }
    }
    // Softmax scales by 1/sum; LogSoftmax subtracts max + log(sum).
    for (int64_t i = 0; i < inner; ++i) {
      const auto j = static_cast<size_t>(i);
      factors[j] = kLog ? static_cast<T>(maxima[j] + std::log(sums[j]))
                        : static_cast<T>(1.0 / sums[j]);
    }
    for (int64_t e = 0; e < extent; ++e) {
      for (int64_t i = 0; i < inner; ++i) {
        if constexpr (kLog) {
          yo[e * inner + i] = xo[e * inner + i] - factors[static_cast<size_t>(i)];
        } else {
          yo[e * inner + i] *= factors[static_cast<size_t>(i)];
        }
      }
    }
  }
}

// The fast path for float32 over the last axis (inner == 1): the vector loops, rows split over
// the context's threads. The maximum, the float exponentials and the double sum are the
// reference's; only exp itself differs (within 2 ulp).
template <bool kLog>
bool try_softmax_rows(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const auto rank = static_cast<int64_t>(x.shape.size());
  int64_t axis = ctx.attrs.get_int_or("axis", -1);
  if (x.dtype != DType::kFloat32 || rank == 0 || axis < -rank || axis >= rank) return false;
  if (axis < 0) axis += rank;
  if (axis != rank - 1 || simd::level() == simd::Level::kScalar) return false;
  nn::require_output_shape(ctx, 0, x.shape);
  const int64_t extent = x.shape.back();
  if (extent == 0) return true;
  const int64_t rows = x.numel() / extent;
  const float* in = x.as<const float>();
  float* out = ctx.outputs[0].as<float>();
  parallel_chunks(rows, std::max<int64_t>(1, (int64_t{1} << 14) / extent), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float* xr = in + row * extent;
      float* yr = out + row * extent;
      const float maximum = simd::max(xr, extent);
      const double sum = simd::exp_shifted_sum(xr, maximum, yr, extent);
      if constexpr (kLog) {
        const auto shift = static_cast<float>(maximum + std::log(sum));
        for (int64_t i = 0; i < extent; ++i) yr[i] = xr[i] - shift;
      } else {
        simd::scale(yr, static_cast<float>(1.0 / sum), yr, extent);
      }
    }
  });
  return true;
}

template <bool kLog>
void softmax_kernel(KernelContext& ctx) {
  const DType dtype = ctx.inputs[0].dtype;
  if ((dtype != DType::kFloat32 && dtype != DType::kFloat64) || ctx.outputs[0].dtype != dtype) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 ", dtype_name(dtype), " and output 0 ",
             dtype_name(ctx.outputs[0].dtype),
             ": supported are float32, float16, bfloat16 and float64, the same for both");
  }
  if (try_softmax_rows<kLog>(ctx)) return;
  if (dtype == DType::kFloat64) {
    softmax_typed<kLog, double>(ctx);
  } else {
    softmax_typed<kLog, float>(ctx);
  }
}

}  // namespace

void register_softmax_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<softmax_kernel<false>>(registry, "Softmax");
  nn::add_float_kernel<softmax_kernel<true>>(registry, "LogSoftmax");
}

}  // namespace kiln::cpu
