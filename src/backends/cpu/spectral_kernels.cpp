// DFT, STFT and MelWeightMatrix on the CPU (the reference; no CUDA kernels), float32 (float16 and
// bfloat16 arrive as float32) and float64, computed in double through FftPlan.
//
// DFT transforms each line along the axis: the first dft_length samples, zero-padded past the
// input's end. The inverse scales by 1 / dft_length. With onesided, the forward transform keeps
// bins [0, n / 2] and the inverse reads bins [0, n / 2] as the half of a Hermitian spectrum (the
// imaginary parts of bin 0 and, for even n, bin n / 2 ignored, as numpy.fft.irfft does) and
// writes the real signal. STFT transforms frame f = samples [f * step, f * step + frame_length)
// times the window. MelWeightMatrix builds the triangles ONNX's reference builds.
#include <cmath>
#include <complex>
#include <optional>
#include <vector>

#include "backends/cpu/fft.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/tensor_dispatch.hpp"
#include "ops/nn_spectral.hpp"

namespace kiln::cpu {
namespace {

using Complex = std::complex<double>;

void require_float_data(const KernelContext& ctx, size_t index, const char* what) {
  const DType dtype = ctx.inputs[index].dtype;
  if (dtype != DType::kFloat32 && dtype != DType::kFloat64) {
    ctx.fail(ErrorCode::kUnsupported, "input ", index, " (", what, ") has dtype ",
             dtype_name(dtype), "; supported: float32, float16, bfloat16, float64");
  }
}

void require_dtype_match(const KernelContext& ctx, DType have, DType want, const char* what) {
  if (have != want) {
    ctx.fail(ErrorCode::kInvalidArgument, what, " has dtype ", dtype_name(have),
             " but input 0 has ", dtype_name(want));
  }
}

// The value of scalar input `index`, nullopt when absent.
std::optional<int64_t> scalar_input(const KernelContext& ctx, size_t index, const char* what) {
  if (!ctx.has_input(index)) return std::nullopt;
  const TensorView& t = ctx.inputs[index];
  if (t.numel() != 1) {
    ctx.fail(ErrorCode::kInvalidArgument, "input ", index, " (", what,
             ") must hold one value, got shape ", shape_to_string(t.shape));
  }
  return read_index(t, 0);
}

template <typename T>
void run_dft(const KernelContext& ctx, const ops::nn::DftGeometry& g) {
  const Shape& in_shape = ctx.inputs[0].shape;
  const Shape& out_shape = ctx.outputs[0].shape;
  const auto axis = static_cast<size_t>(g.axis);
  const int64_t outer =
      shape_numel(Shape(in_shape.begin(), in_shape.begin() + static_cast<std::ptrdiff_t>(axis)));
  const int64_t inner = shape_numel(
      Shape(in_shape.begin() + static_cast<std::ptrdiff_t>(axis) + 1, in_shape.end() - 1));
  const int64_t in_len = in_shape[axis];
  const int64_t out_len = out_shape[axis];
  const int64_t in_parts = in_shape.back();
  const int64_t out_parts = out_shape.back();
  const int64_t n = g.length;
  const bool irfft = g.inverse && g.onesided;
  const T* in = ctx.inputs[0].as<const T>();
  T* out = ctx.outputs[0].as<T>();
  FftPlan plan(n);
  std::vector<Complex> line(static_cast<size_t>(n));
  const double scale = g.inverse ? 1.0 / static_cast<double>(n) : 1.0;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      // Sample t of this line, zero past the input's end.
      const auto sample = [&](int64_t t) -> Complex {
        if (t >= in_len) return {};
        const T* p = in + ((o * in_len + t) * inner + i) * in_parts;
        return {static_cast<double>(p[0]), in_parts == 2 ? static_cast<double>(p[1]) : 0.0};
      };
      if (irfft) {
        line[0] = {sample(0).real(), 0.0};
        for (int64_t k = 1; 2 * k < n; ++k) {
          const Complex x = sample(k);
          line[static_cast<size_t>(k)] = x;
          line[static_cast<size_t>(n - k)] = std::conj(x);
        }
        if (n % 2 == 0 && n > 1) line[static_cast<size_t>(n / 2)] = {sample(n / 2).real(), 0.0};
      } else {
        for (int64_t t = 0; t < n; ++t) line[static_cast<size_t>(t)] = sample(t);
      }
      plan.transform(line.data(), g.inverse);
      for (int64_t k = 0; k < out_len; ++k) {
        T* p = out + ((o * out_len + k) * inner + i) * out_parts;
        const Complex y = line[static_cast<size_t>(k)] * scale;
        p[0] = static_cast<T>(y.real());
        if (out_parts == 2) p[1] = static_cast<T>(y.imag());
      }
    }
  }
}

void dft_kernel(KernelContext& ctx) {
  require_float_data(ctx, 0, "input");
  const DType dtype = ctx.inputs[0].dtype;
  require_dtype_match(ctx, ctx.outputs[0].dtype, dtype, "output 0");
  const std::optional<int64_t> length = scalar_input(ctx, 1, "dft_length");
  const std::optional<int64_t> axis =
      ctx.has_input(2) ? scalar_input(ctx, 2, "axis") : std::optional<int64_t>(-2);
  const ops::nn::DftGeometry g = ops::nn::resolve_dft(
      nn::label_of(ctx), ctx.attrs, ctx.inputs[0].shape, length, ctx.has_input(1), axis);
  nn::require_output_shape(ctx, 0, g.output);
  if (shape_numel(g.output) == 0) return;
  if (dtype == DType::kFloat64) {
    run_dft<double>(ctx, g);
  } else {
    run_dft<float>(ctx, g);
  }
}

template <typename T>
void run_stft(const KernelContext& ctx, const ops::nn::StftGeometry& g) {
  const Shape& signal_shape = ctx.inputs[0].shape;
  const int64_t batch = signal_shape[0];
  const int64_t length = signal_shape[1];
  const int64_t parts = signal_shape[2];
  const int64_t frame_length = g.frame_length;
  const int64_t bins = ctx.outputs[0].shape[2];
  const T* signal = ctx.inputs[0].as<const T>();
  const T* window = ctx.has_input(2) ? ctx.inputs[2].as<const T>() : nullptr;
  T* out = ctx.outputs[0].as<T>();
  FftPlan plan(frame_length);
  std::vector<Complex> frame(static_cast<size_t>(frame_length));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t f = 0; f < g.frames; ++f) {
      for (int64_t t = 0; t < frame_length; ++t) {
        const T* p = signal + (b * length + f * g.frame_step + t) * parts;
        const double w = window ? static_cast<double>(window[t]) : 1.0;
        frame[static_cast<size_t>(t)] = {static_cast<double>(p[0]) * w,
                                         parts == 2 ? static_cast<double>(p[1]) * w : 0.0};
      }
      plan.transform(frame.data(), false);
      T* o = out + (b * g.frames + f) * bins * 2;
      for (int64_t k = 0; k < bins; ++k) {
        o[2 * k] = static_cast<T>(frame[static_cast<size_t>(k)].real());
        o[2 * k + 1] = static_cast<T>(frame[static_cast<size_t>(k)].imag());
      }
    }
  }
}

void stft_kernel(KernelContext& ctx) {
  require_float_data(ctx, 0, "signal");
  const DType dtype = ctx.inputs[0].dtype;
  if (ctx.has_input(2)) require_dtype_match(ctx, ctx.inputs[2].dtype, dtype, "input 2 (window)");
  require_dtype_match(ctx, ctx.outputs[0].dtype, dtype, "output 0");
  const std::optional<int64_t> step = scalar_input(ctx, 1, "frame_step");
  const std::optional<int64_t> frame_length = scalar_input(ctx, 3, "frame_length");
  const Shape* window = ctx.has_input(2) ? &ctx.inputs[2].shape : nullptr;
  const ops::nn::StftGeometry g =
      ops::nn::resolve_stft(nn::label_of(ctx), ctx.attrs, ctx.inputs[0].shape, window, step,
                            frame_length, ctx.has_input(3));
  nn::require_output_shape(ctx, 0, g.output);
  if (shape_numel(g.output) == 0) return;
  if (dtype == DType::kFloat64) {
    run_stft<double>(ctx, g);
  } else {
    run_stft<float>(ctx, g);
  }
}

double scalar_float(const KernelContext& ctx, size_t index, const char* what) {
  const TensorView& t = ctx.inputs[index];
  if (t.numel() != 1) {
    ctx.fail(ErrorCode::kInvalidArgument, "input ", index, " (", what,
             ") must hold one value, got shape ", shape_to_string(t.shape));
  }
  require_float_data(ctx, index, what);
  return t.dtype == DType::kFloat64 ? *t.as<const double>()
                                    : static_cast<double>(*t.as<const float>());
}

void mel_weight_matrix_kernel(KernelContext& ctx) {
  const int64_t mel_bins = *scalar_input(ctx, 0, "num_mel_bins");
  const int64_t dft_length = *scalar_input(ctx, 1, "dft_length");
  const int64_t sample_rate = *scalar_input(ctx, 2, "sample_rate");
  const double lower_hz = scalar_float(ctx, 3, "lower_edge_hertz");
  const double upper_hz = scalar_float(ctx, 4, "upper_edge_hertz");
  const Shape shape = ops::nn::mel_output_shape(nn::label_of(ctx), mel_bins, dft_length);
  nn::require_output_shape(ctx, 0, shape);
  if (sample_rate <= 0)
    ctx.fail(ErrorCode::kInvalidArgument, "input 2 (sample_rate) is ", sample_rate,
             "; it must be >= 1");
  const int64_t spectrogram_bins = shape[0];

  // num_mel_bins + 2 edges evenly spaced on the mel scale (the reference steps by a
  // (num_mel_bins + 2)-th of the range), each mapped down to a spectrogram bin.
  const auto to_mel = [](double hz) { return 2595.0 * std::log1p(hz / 700.0) / std::log(10.0); };
  const double low_mel = to_mel(lower_hz);
  const double mel_step = (to_mel(upper_hz) - low_mel) / static_cast<double>(mel_bins + 2);
  std::vector<int64_t> edges(static_cast<size_t>(mel_bins + 2));
  for (int64_t e = 0; e < mel_bins + 2; ++e) {
    const double hz =
        700.0 * std::expm1((static_cast<double>(e) * mel_step + low_mel) / 2595.0 * std::log(10.0));
    const double bin =
        std::floor(static_cast<double>(dft_length + 1) * hz / static_cast<double>(sample_rate));
    // The last edge only bounds the last triangle (exclusive), so it may sit one past the end.
    const int64_t limit = e == mel_bins + 1 ? spectrogram_bins + 1 : spectrogram_bins;
    if (!(bin >= 0.0 && bin < static_cast<double>(limit))) {
      ctx.fail(ErrorCode::kInvalidArgument, "lower_edge_hertz ", lower_hz, " and upper_edge_hertz ",
               upper_hz, " put mel edge ", e, " (", hz, " Hz) at spectrogram bin ", bin,
               ", outside [0, ", limit, ") for dft_length ", dft_length, " and sample_rate ",
               sample_rate, " (the edges must lie in [0, sample_rate / 2])");
    }
    edges[static_cast<size_t>(e)] = static_cast<int64_t>(bin);
  }
  std::vector<double> matrix(static_cast<size_t>(spectrogram_bins * mel_bins), 0.0);
  const auto at = [&](int64_t bin, int64_t mel) -> double& {
    return matrix[static_cast<size_t>(bin * mel_bins + mel)];
  };
  for (int64_t m = 0; m < mel_bins; ++m) {
    const int64_t left = edges[static_cast<size_t>(m)];
    const int64_t center = edges[static_cast<size_t>(m + 1)];
    const int64_t right = edges[static_cast<size_t>(m + 2)];
    if (center == left) {
      at(center, m) = 1.0;
    } else {
      for (int64_t j = left; j <= center; ++j)
        at(j, m) = static_cast<double>(j - left) / static_cast<double>(center - left);
    }
    for (int64_t j = center; j < right; ++j)
      at(j, m) = static_cast<double>(right - j) / static_cast<double>(right - center);
  }
  void* out = ctx.outputs[0].data;
  const bool stored = dispatch_among<KILN_NUMERIC_TYPES>(ctx.outputs[0].dtype, [&]<typename T>(TypeTag<T>) {
    T* dst = static_cast<T*>(out);
    for (size_t i = 0; i < matrix.size(); ++i) dst[i] = static_cast<T>(matrix[i]);
  });
  if (!stored) {
    ctx.fail(ErrorCode::kUnsupported, "output 0 has dtype ", dtype_name(ctx.outputs[0].dtype),
             "; supported: float32, float16, bfloat16, float64 and the integer types");
  }
}

}  // namespace

void register_spectral_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<dft_kernel>(registry, "DFT");
  nn::add_float_kernel<stft_kernel>(registry, "STFT");
  nn::add_float_kernel<mel_weight_matrix_kernel>(registry, "MelWeightMatrix");
}

}  // namespace kiln::cpu
