// MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv and DynamicQuantizeLinear on the CPU,
// following ONNX's reference arithmetic: products of (x - x_zero_point) summed in int32 (wrapping
// as numpy's int32 does); the QLinear forms multiply the sum by x_scale * w_scale / y_scale
// (computed in the scales' dtype), add y_zero_point in float64, round half to even and saturate
// to the output dtype.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/tensor_strided.hpp"
#include "base/half.hpp"
#include "ops/integer_linear.hpp"
#include "ops/nn_window.hpp"

namespace kiln::cpu {
namespace {

int32_t int8_at(const TensorView& t, int64_t i) {
  return t.dtype == DType::kInt8 ? t.as<const int8_t>()[i] : t.as<const uint8_t>()[i];
}

// A zero point or scale as seen by one operand: per tensor, or indexed by row or column.
struct QuantParam {
  const TensorView* view = nullptr;  // null: absent (zero point 0)
  ops::QuantAxis axis = ops::QuantAxis::kTensor;

  int32_t zero_point(int64_t row, int64_t column) const {
    return view == nullptr ? 0 : int8_at(*view, index(row, column));
  }
  double value(int64_t row, int64_t column) const { return read_as_double(*view, index(row, column)); }
  int64_t index(int64_t row, int64_t column) const {
    switch (axis) {
      case ops::QuantAxis::kRow: return row;
      case ops::QuantAxis::kColumn: return column;
      default: return 0;
    }
  }
};

QuantParam param_of(const KernelContext& ctx, size_t index, const char* what, ops::QuantAxis per_axis,
                    int64_t length) {
  QuantParam p;
  if (!ctx.has_input(index)) return p;
  p.view = &ctx.inputs[index];
  p.axis = ops::resolve_quant_axis(ops::NodeRef{ctx.node_name, ctx.op}, what, p.view->shape, per_axis, length);
  return p;
}

// `value` rounded to `dtype` (a scale dtype: float32, float16 or bfloat16).
double round_to(double value, DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return half_to_float(float_to_half(static_cast<float>(value)));
    case DType::kBFloat16: return bfloat16_to_float(float_to_bfloat16(static_cast<float>(value)));
    default: return static_cast<float>(value);
  }
}

// sum * multiplier + zero_point, rounded half to even and saturated to `out`'s dtype.
void store_requantized(const TensorView& out, int64_t i, int32_t sum, double multiplier, int32_t zero_point) {
  const double value = std::nearbyint(static_cast<double>(sum) * multiplier + zero_point);
  if (out.dtype == DType::kInt8) {
    out.as<int8_t>()[i] = static_cast<int8_t>(std::clamp(value, -128.0, 127.0));
  } else {
    out.as<uint8_t>()[i] = static_cast<uint8_t>(std::clamp(value, 0.0, 255.0));
  }
}

// C[batch, m, n] = sum_k (A - a_zp(m)) * (B - b_zp(n)), each batch's sums passed to `emit`.
template <typename Emit>
void integer_matmul(const TensorView& a, const TensorView& b,
                    const ops::IntegerMatMulGeometry& g, const QuantParam& a_zero, const QuantParam& b_zero,
                    Emit&& emit) {
  const std::vector<int64_t> a_strides = broadcast_strides(g.a_batch, g.batch);
  const std::vector<int64_t> b_strides = broadcast_strides(g.b_batch, g.batch);
  const int64_t batches = shape_numel(g.batch);
  std::vector<int64_t> index(g.batch.size(), 0);
  std::vector<int32_t> row(static_cast<size_t>(g.k));
  for (int64_t batch = 0; batch < batches; ++batch) {
    int64_t a_matrix = 0, b_matrix = 0;
    for (size_t d = 0; d < index.size(); ++d) {
      a_matrix += index[d] * a_strides[d];
      b_matrix += index[d] * b_strides[d];
    }
    const int64_t a_base = a_matrix * g.m * g.k;
    const int64_t b_base = b_matrix * g.k * g.n;
    const int64_t out_base = batch * g.m * g.n;
    for (int64_t m = 0; m < g.m; ++m) {
      const int32_t a_offset = a_zero.zero_point(m, 0);
      for (int64_t k = 0; k < g.k; ++k) row[k] = int8_at(a, a_base + m * g.k + k) - a_offset;
      for (int64_t n = 0; n < g.n; ++n) {
        const int32_t b_offset = b_zero.zero_point(0, n);
        uint32_t sum = 0;  // int32 arithmetic that wraps like numpy's, without signed overflow
        for (int64_t k = 0; k < g.k; ++k) {
          sum += static_cast<uint32_t>(row[k] * (int8_at(b, b_base + k * g.n + n) - b_offset));
        }
        emit(out_base + m * g.n + n, m, n, static_cast<int32_t>(sum));
      }
    }
    for (size_t d = index.size(); d-- > 0;) {
      if (++index[d] < g.batch[d]) break;
      index[d] = 0;
    }
  }
}

void matmul_integer_kernel(KernelContext& ctx) {
  const ops::NodeRef node{ctx.node_name, ctx.op};
  const ops::IntegerMatMulGeometry g = ops::resolve_integer_matmul(node, ctx.inputs[0].shape, ctx.inputs[1].shape);
  const QuantParam a_zero = param_of(ctx, 2, "input 2 (a_zero_point)", ops::QuantAxis::kRow, g.m);
  const QuantParam b_zero = param_of(ctx, 3, "input 3 (b_zero_point)", ops::QuantAxis::kColumn, g.n);
  int32_t* out = ctx.outputs[0].as<int32_t>();
  integer_matmul(ctx.inputs[0], ctx.inputs[1], g, a_zero, b_zero,
                 [&](int64_t i, int64_t, int64_t, int32_t sum) { out[i] = sum; });
}

void qlinear_matmul_kernel(KernelContext& ctx) {
  const ops::NodeRef node{ctx.node_name, ctx.op};
  const ops::IntegerMatMulGeometry g = ops::resolve_integer_matmul(node, ctx.inputs[0].shape, ctx.inputs[3].shape);
  using ops::QuantAxis;
  const QuantParam a_scale = param_of(ctx, 1, "input 1 (a_scale)", QuantAxis::kRow, g.m);
  const QuantParam a_zero = param_of(ctx, 2, "input 2 (a_zero_point)", QuantAxis::kRow, g.m);
  const QuantParam b_scale = param_of(ctx, 4, "input 4 (b_scale)", QuantAxis::kColumn, g.n);
  const QuantParam b_zero = param_of(ctx, 5, "input 5 (b_zero_point)", QuantAxis::kColumn, g.n);
  const QuantParam y_scale = param_of(ctx, 6, "input 6 (y_scale)", QuantAxis::kColumn, g.n);
  const QuantParam y_zero = param_of(ctx, 7, "input 7 (y_zero_point)", QuantAxis::kColumn, g.n);
  const DType scale_dtype = ctx.inputs[1].dtype;
  const TensorView& out = ctx.outputs[0];
  integer_matmul(ctx.inputs[0], ctx.inputs[3], g, a_zero, b_zero,
                 [&](int64_t i, int64_t m, int64_t n, int32_t sum) {
                   const double multiplier = round_to(
                       round_to(a_scale.value(m, n) * b_scale.value(m, n), scale_dtype) / y_scale.value(m, n),
                       scale_dtype);
                   store_requantized(out, i, sum, multiplier, y_zero.zero_point(m, n));
                 });
}

// Sums of a grouped N-D convolution of (X - x_zp) with (W - w_zp[m]); padding adds nothing (it
// stands for x_zero_point). `emit(index, m, sum)` receives each output element.
template <typename Emit>
void integer_conv(const KernelContext& ctx, const TensorView& x, const TensorView& w, int32_t x_zero,
                  const QuantParam& w_zero, Emit&& emit) {
  const Shape& xs = x.shape;
  const Shape& ws = w.shape;
  const size_t spatial = xs.size() - 2;
  const std::vector<int64_t> kernel(ws.begin() + 2, ws.end());
  const ops::nn::WindowGeometry geo = ops::nn::resolve_window(
      ops::nn::NodeLabel{ctx.node_name, ctx.op}, ctx.attrs, std::vector<int64_t>(xs.begin() + 2, xs.end()),
      kernel, false);
  const int64_t group = ctx.attrs.get_int_or("group", 1);
  const int64_t batch = xs[0], in_channels = xs[1], out_channels = ws[0];
  const int64_t group_in = in_channels / group, group_out = out_channels / group;
  const int64_t in_size = shape_numel(Shape(xs.begin() + 2, xs.end()));
  const int64_t out_size = shape_numel(Shape(geo.output.begin(), geo.output.end()));
  const int64_t kernel_size = shape_numel(Shape(kernel.begin(), kernel.end()));
  const std::vector<int64_t> in_strides = dense_strides(Shape(xs.begin() + 2, xs.end()));
  std::vector<int64_t> out_pos(spatial), kernel_pos(spatial);
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t m = 0; m < out_channels; ++m) {
      const int64_t g = m / group_out;
      const int32_t w_offset = w_zero.zero_point(m, 0);
      std::fill(out_pos.begin(), out_pos.end(), 0);
      for (int64_t o = 0; o < out_size; ++o) {
        uint32_t sum = 0;
        std::fill(kernel_pos.begin(), kernel_pos.end(), 0);
        for (int64_t kk = 0; kk < kernel_size; ++kk) {
          int64_t in_offset = 0;
          bool inside = true;
          for (size_t d = 0; d < spatial && inside; ++d) {
            const int64_t pos = out_pos[d] * geo.strides[d] - geo.pad_begin[d] + kernel_pos[d] * geo.dilations[d];
            inside = pos >= 0 && pos < xs[2 + d];
            in_offset += pos * in_strides[d];
          }
          if (inside) {
            for (int64_t c = 0; c < group_in; ++c) {
              const int64_t channel = g * group_in + c;
              const int32_t xv = int8_at(x, (n * in_channels + channel) * in_size + in_offset) - x_zero;
              const int32_t wv = int8_at(w, (m * group_in + c) * kernel_size + kk) - w_offset;
              sum += static_cast<uint32_t>(xv * wv);
            }
          }
          for (size_t d = spatial; d-- > 0;) {
            if (++kernel_pos[d] < kernel[d]) break;
            kernel_pos[d] = 0;
          }
        }
        emit((n * out_channels + m) * out_size + o, m, static_cast<int32_t>(sum));
        for (size_t d = spatial; d-- > 0;) {
          if (++out_pos[d] < geo.output[d]) break;
          out_pos[d] = 0;
        }
      }
    }
  }
}

void conv_integer_kernel(KernelContext& ctx) {
  const int32_t x_zero = ctx.has_input(2) ? int8_at(ctx.inputs[2], 0) : 0;
  const QuantParam w_zero =
      param_of(ctx, 3, "input 3 (w_zero_point)", ops::QuantAxis::kRow, ctx.inputs[1].shape[0]);
  int32_t* out = ctx.outputs[0].as<int32_t>();
  integer_conv(ctx, ctx.inputs[0], ctx.inputs[1], x_zero, w_zero,
               [&](int64_t i, int64_t, int32_t sum) { out[i] = sum; });
}

void qlinear_conv_kernel(KernelContext& ctx) {
  const int64_t m_count = ctx.inputs[3].shape[0];
  const double x_scale = read_as_double(ctx.inputs[1], 0);
  const int32_t x_zero = int8_at(ctx.inputs[2], 0);
  const QuantParam w_scale = param_of(ctx, 4, "input 4 (w_scale)", ops::QuantAxis::kRow, m_count);
  const QuantParam w_zero = param_of(ctx, 5, "input 5 (w_zero_point)", ops::QuantAxis::kRow, m_count);
  const double y_scale = read_as_double(ctx.inputs[6], 0);
  const int32_t y_zero = int8_at(ctx.inputs[7], 0);
  const int32_t* bias = ctx.has_input(8) ? ctx.inputs[8].as<const int32_t>() : nullptr;
  const TensorView& out = ctx.outputs[0];
  integer_conv(ctx, ctx.inputs[0], ctx.inputs[3], x_zero, w_zero, [&](int64_t i, int64_t m, int32_t sum) {
    if (bias != nullptr) sum = static_cast<int32_t>(static_cast<uint32_t>(sum) + static_cast<uint32_t>(bias[m]));
    const double multiplier =
        static_cast<float>(static_cast<float>(x_scale * w_scale.value(m, 0)) / static_cast<float>(y_scale));
    store_requantized(out, i, sum, multiplier, y_zero);
  });
}

// uint8 quantization with a scale and zero point that map [min(x, 0), max(x, 0)] onto [0, 255],
// all in float32 as the spec's formulas are.
void dynamic_quantize_linear_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const float* in = x.as<const float>();
  const int64_t count = x.numel();
  float highest = 0.0f, lowest = 0.0f;
  for (int64_t i = 0; i < count; ++i) {
    highest = std::fmax(highest, in[i]);
    lowest = std::fmin(lowest, in[i]);
  }
  const float scale = (highest == lowest ? 1.0f : highest - lowest) / 255.0f;
  const float zero_point = std::nearbyint(std::clamp(0.0f - lowest / scale, 0.0f, 255.0f));
  uint8_t* out = ctx.outputs[0].as<uint8_t>();
  for (int64_t i = 0; i < count; ++i) {
    const float q = std::nearbyint(in[i] / scale) + zero_point;
    out[i] = static_cast<uint8_t>(std::isnan(q) ? zero_point : std::clamp(q, 0.0f, 255.0f));
  }
  *ctx.outputs[1].as<float>() = scale;
  *ctx.outputs[2].as<uint8_t>() = static_cast<uint8_t>(zero_point);
}

}  // namespace

void register_integer_linear_kernels(CpuKernelRegistry& registry) {
  // Integer operands and scales of their own dtypes: the kernels read every dtype themselves.
  registry.add("MatMulInteger", {matmul_integer_kernel, false});
  registry.add("QLinearMatMul", {qlinear_matmul_kernel, false});
  registry.add("ConvInteger", {conv_integer_kernel, false});
  registry.add("QLinearConv", {qlinear_conv_kernel, false});
  registry.add("DynamicQuantizeLinear", {dynamic_quantize_linear_kernel, false});
}

}  // namespace kiln::cpu
