// CumSum, CumProd, ArgMax, ArgMin, TopK: CPU kernels (the reference; CumProd has no CUDA kernel yet).
//
// Every op works on the input seen as [outer, length, inner] lines along its axis (lines_along).
// float16/bfloat16 arrive as float32 (float_compute kernels). Floating CumSum and CumProd accumulate in
// double, integer ones wrap (two's complement). NaN ordering follows numpy/PyTorch: ArgMax and
// ArgMin return the (first or last) NaN when a line has one; TopK ranks NaN above every number, as
// ONNX Runtime and torch.topk do. Ties go to the lower index (ArgMax/ArgMin: the higher one with
// select_last_index).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/tensor_dispatch.hpp"
#include "ops/index_params.hpp"

namespace kiln::cpu {
namespace {

using ops::index::AxisLines;

template <typename T>
bool is_nan(T value) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::isnan(value);
  } else {
    (void)value;
    return false;
  }
}

// Calls fn(TypeTag<T>{}) for float (fp16/bf16 already widened), double, int32, int64 or uint16/32/64 data.
template <typename Fn>
void dispatch_index_data(const KernelContext& ctx, DType dtype, Fn&& fn) {
  if (!dispatch_among<float, double, int32_t, int64_t, uint16_t, uint32_t, uint64_t>(dtype, fn)) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 has unsupported dtype ", dtype_name(dtype),
             "; supported: float32, float16, bfloat16, float64, int32, int64, uint16, uint32, uint64");
  }
}

// ---- CumSum ---------------------------------------------------------------------------------

// Wrapping integer addition and multiplication (no signed-overflow UB); double for floating data.
template <typename T>
using CumSumAcc = std::conditional_t<std::is_floating_point_v<T>, double, uint64_t>;

// Running sums (kProduct false) or products along the lines; exclusive scans start from the
// identity (0 or 1).
template <typename T, bool kProduct = false>
void scan_lines(const T* in, T* out, const AxisLines& lines, bool exclusive, bool reverse) {
  using Acc = CumSumAcc<T>;
  std::vector<Acc> acc(static_cast<size_t>(lines.inner));
  for (int64_t o = 0; o < lines.outer; ++o) {
    std::fill(acc.begin(), acc.end(), kProduct ? Acc{1} : Acc{0});
    for (int64_t step = 0; step < lines.length; ++step) {
      const int64_t i = reverse ? lines.length - 1 - step : step;
      const int64_t base = (o * lines.length + i) * lines.inner;
      for (int64_t n = 0; n < lines.inner; ++n) {
        Acc& sum = acc[static_cast<size_t>(n)];
        const Acc value = static_cast<Acc>(in[base + n]);
        if (exclusive) out[base + n] = static_cast<T>(sum);
        if constexpr (kProduct) {
          sum *= value;
        } else {
          sum += value;
        }
        if (!exclusive) out[base + n] = static_cast<T>(sum);
      }
    }
  }
}

template <bool kProduct>
void scan_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const ops::index::CumSumParams params =
      ops::index::cumsum_params(nn::label_of(ctx), ctx.attrs, x.shape.size(), ctx.inputs[1]);
  nn::require_output_shape(ctx, 0, x.shape);
  const AxisLines lines = ops::index::lines_along(x.shape, params.axis);
  dispatch_index_data(ctx, x.dtype, [&]<typename T>(TypeTag<T>) {
    scan_lines<T, kProduct>(x.as<const T>(), ctx.outputs[0].as<T>(), lines, params.exclusive, params.reverse);
  });
}

// ---- ArgMax / ArgMin ------------------------------------------------------------------------

// Whether `value` replaces `best` in a scan in index order. NaN beats every number (numpy);
// `last` lets equal values (and later NaNs) replace the current best.
template <bool kMax, typename T>
bool replaces(T value, T best, bool last) {
  if (is_nan(best)) return last && is_nan(value);
  if (is_nan(value)) return true;
  if (last) return kMax ? value >= best : value <= best;
  return kMax ? value > best : value < best;
}

template <bool kMax, typename T>
void arg_reduce_lines(const T* in, int64_t* out, const AxisLines& lines, bool last) {
  std::vector<T> best(static_cast<size_t>(lines.inner));
  for (int64_t o = 0; o < lines.outer; ++o) {
    const T* line = in + o * lines.length * lines.inner;
    int64_t* result = out + o * lines.inner;
    for (int64_t n = 0; n < lines.inner; ++n) {
      best[static_cast<size_t>(n)] = line[n];
      result[n] = 0;
    }
    for (int64_t i = 1; i < lines.length; ++i) {
      for (int64_t n = 0; n < lines.inner; ++n) {
        const T value = line[i * lines.inner + n];
        T& current = best[static_cast<size_t>(n)];
        if (replaces<kMax>(value, current, last)) {
          current = value;
          result[n] = i;
        }
      }
    }
  }
}

template <bool kMax>
void arg_reduce_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const ops::index::ArgReduceParams params =
      ops::index::arg_reduce_params(nn::label_of(ctx), ctx.attrs, x.shape.size());
  nn::require_output_shape(ctx, 0, ops::index::arg_reduce_shape(x.shape, params));
  if (ctx.outputs[0].dtype != DType::kInt64) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 must be int64, got ",
             dtype_name(ctx.outputs[0].dtype));
  }
  const AxisLines lines = ops::index::lines_along(x.shape, params.axis);
  if (lines.length == 0) {
    if (ctx.outputs[0].numel() == 0) return;
    ctx.fail(ErrorCode::kInvalidArgument, "cannot take ", ctx.op, " over axis ", params.axis,
             " of length 0 (input shape ", shape_to_string(x.shape), ")");
  }
  dispatch_index_data(ctx, x.dtype, [&]<typename T>(TypeTag<T>) {
    arg_reduce_lines<kMax, T>(x.as<const T>(), ctx.outputs[0].as<int64_t>(), lines,
                              params.select_last_index);
  });
}

// ---- TopK -----------------------------------------------------------------------------------

// Strict "comes first" order of (value, index) pairs: by value (descending when `largest`, NaN
// ranked above every number), then by index ascending.
template <typename T>
struct TopKOrder {
  bool largest;

  static bool greater(T a, T b) {
    if (is_nan(a)) return !is_nan(b);
    if (is_nan(b)) return false;
    return a > b;
  }
  bool operator()(const std::pair<T, int64_t>& a, const std::pair<T, int64_t>& b) const {
    if (largest ? greater(a.first, b.first) : greater(b.first, a.first)) return true;
    if (largest ? greater(b.first, a.first) : greater(a.first, b.first)) return false;
    return a.second < b.second;
  }
};

template <typename T>
void topk_lines(const T* in, T* values, int64_t* indices, const AxisLines& lines, int64_t k,
                bool largest) {
  std::vector<std::pair<T, int64_t>> line(static_cast<size_t>(lines.length));
  const TopKOrder<T> order{largest};
  const auto k_end = static_cast<std::ptrdiff_t>(k);
  for (int64_t o = 0; o < lines.outer; ++o) {
    for (int64_t n = 0; n < lines.inner; ++n) {
      const T* source = in + o * lines.length * lines.inner + n;
      for (int64_t i = 0; i < lines.length; ++i) {
        line[static_cast<size_t>(i)] = {source[i * lines.inner], i};
      }
      std::partial_sort(line.begin(), line.begin() + k_end, line.end(), order);
      const int64_t base = o * k * lines.inner + n;
      for (int64_t j = 0; j < k; ++j) {
        values[base + j * lines.inner] = line[static_cast<size_t>(j)].first;
        indices[base + j * lines.inner] = line[static_cast<size_t>(j)].second;
      }
    }
  }
}

void topk_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const ops::nn::NodeLabel node = nn::label_of(ctx);
  const ops::index::TopKParams params = ops::index::topk_params(node, ctx.attrs, x.shape.size());
  const AxisLines lines = ops::index::lines_along(x.shape, params.axis);
  const int64_t k = ops::index::topk_k(node, ctx.inputs[1], lines.length);
  Shape expected = x.shape;
  expected[static_cast<size_t>(params.axis)] = k;
  nn::require_output_shape(ctx, 0, expected);
  nn::require_output_shape(ctx, 1, expected);
  if (ctx.outputs[0].dtype != x.dtype || ctx.outputs[1].dtype != DType::kInt64) {
    ctx.fail(ErrorCode::kInvalidArgument, "outputs must be ", dtype_name(x.dtype),
             " and int64, got ", dtype_name(ctx.outputs[0].dtype), " and ",
             dtype_name(ctx.outputs[1].dtype));
  }
  dispatch_index_data(ctx, x.dtype, [&]<typename T>(TypeTag<T>) {
    topk_lines<T>(x.as<const T>(), ctx.outputs[0].as<T>(), ctx.outputs[1].as<int64_t>(), lines, k,
                  params.largest);
  });
}

}  // namespace

void register_index_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<scan_kernel<false>>(registry, "CumSum");
  nn::add_float_kernel<scan_kernel<true>>(registry, "CumProd");
  nn::add_float_kernel<arg_reduce_kernel<true>>(registry, "ArgMax");
  nn::add_float_kernel<arg_reduce_kernel<false>>(registry, "ArgMin");
  nn::add_float_kernel<topk_kernel>(registry, "TopK");
}

}  // namespace kiln::cpu
