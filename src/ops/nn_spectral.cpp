#include "ops/nn_spectral.hpp"

#include <string_view>

namespace kiln::ops::nn {
namespace {

bool read_flag(const NodeLabel& node, const AttributeMap& attrs, std::string_view name,
               int64_t fallback) {
  const int64_t value = attrs.get_int_or(name, fallback);
  if (value != 0 && value != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute '", name, "' must be 0 or 1, got ",
            value);
  }
  return value == 1;
}

// Fails unless the last dim (of a `what` tensor) is 1 (real) or 2 (complex) or dynamic.
void require_real_or_complex(const NodeLabel& node, const Shape& shape, std::string_view what) {
  const int64_t last = shape.back();
  if (last != kDynamicDim && last != 1 && last != 2) {
    fail_at(node, ErrorCode::kInvalidArgument, what,
            "'s last dim must be 1 (real) or 2 (real, imaginary), got ", shape_to_string(shape));
  }
}

}  // namespace

DftGeometry resolve_dft(const NodeLabel& node, const AttributeMap& attrs, const Shape& input,
                        std::optional<int64_t> dft_length, bool dft_length_present,
                        std::optional<int64_t> axis) {
  DftGeometry g;
  g.inverse = read_flag(node, attrs, "inverse", 0);
  g.onesided = read_flag(node, attrs, "onesided", 0);
  const auto rank = static_cast<int64_t>(input.size());
  if (rank < 2) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 0 (input) must have rank >= 2 ([..., signal, 1 or 2]), got ",
            shape_to_string(input));
  }
  require_real_or_complex(node, input, "input 0 (input)");
  g.complex_input = input.back() == 2;
  if (g.onesided && !g.inverse && input.back() == 2) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "onesided = 1 with inverse = 0 (a real-to-complex DFT) needs real input 0 (last dim "
            "1), got ",
            shape_to_string(input));
  }
  if (g.onesided && g.inverse && input.back() == 1) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "onesided = 1 with inverse = 1 (a complex-to-real inverse DFT) needs complex input 0 "
            "(last dim 2), got ",
            shape_to_string(input));
  }
  const bool irfft = g.onesided && g.inverse;
  g.output = input;
  g.output.back() = irfft ? 1 : 2;
  if (dft_length && *dft_length <= 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (dft_length) is ", *dft_length,
            "; it must be >= 1");
  }
  if (!axis) {  // unknown until run time: any signal dim may change
    g.axis = kDynamicDim;
    g.length = dft_length.value_or(kDynamicDim);
    for (int64_t d = 0; d + 1 < rank; ++d) g.output[static_cast<size_t>(d)] = kDynamicDim;
    return g;
  }
  g.axis = *axis < 0 ? *axis + rank : *axis;
  if (g.axis < 0 || g.axis > rank - 2) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 2 (axis) is ", *axis, "; it must lie in [",
            -rank, ", -2] or [0, ", rank - 2, "] for input 0 of shape ", shape_to_string(input),
            " (the last dim holds the complex parts)");
  }
  const int64_t signal = input[static_cast<size_t>(g.axis)];
  if (dft_length_present) {
    g.length = dft_length.value_or(kDynamicDim);
  } else if (signal == kDynamicDim) {
    g.length = kDynamicDim;
  } else {
    g.length = irfft ? 2 * (signal - 1) : signal;
    if (g.length < 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 0 (input) of shape ",
              shape_to_string(input), " gives axis ", g.axis,
              irfft ? " a default inverse length 2 * (dim - 1) of " : " a transform length of ",
              g.length, "; it must be >= 1 (give dft_length)");
    }
  }
  int64_t out_dim = g.length;
  if (g.length != kDynamicDim && g.onesided && !g.inverse) out_dim = g.length / 2 + 1;
  g.output[static_cast<size_t>(g.axis)] = out_dim;
  return g;
}

StftGeometry resolve_stft(const NodeLabel& node, const AttributeMap& attrs, const Shape& signal,
                          const Shape* window, std::optional<int64_t> frame_step,
                          std::optional<int64_t> frame_length, bool frame_length_present) {
  StftGeometry g;
  g.onesided = read_flag(node, attrs, "onesided", 1);
  if (signal.size() != 3) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 0 (signal) must be [batch, signal_length, 1 or 2], got ",
            shape_to_string(signal));
  }
  require_real_or_complex(node, signal, "input 0 (signal)");
  g.complex_input = signal[2] == 2;
  if (g.onesided && g.complex_input) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "onesided = 1 needs a real input 0 (signal) (last dim 1), got ",
            shape_to_string(signal));
  }
  if (frame_step && *frame_step <= 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (frame_step) is ", *frame_step,
            "; it must be >= 1");
  }
  g.frame_step = frame_step.value_or(kDynamicDim);
  if (frame_length && *frame_length <= 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 3 (frame_length) is ", *frame_length,
            "; it must be >= 1");
  }
  int64_t window_length = kDynamicDim;
  if (window) {
    if (window->size() != 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 2 (window) must be 1-D, got ",
              shape_to_string(*window));
    }
    window_length = (*window)[0];
  }
  if (frame_length_present) {
    g.frame_length = frame_length.value_or(window_length);
    if (frame_length && window_length != kDynamicDim && window_length != *frame_length) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 2 (window) has ", window_length,
              " samples but input 3 (frame_length) is ", *frame_length, "; they must agree");
    }
  } else {
    g.frame_length = window ? window_length : signal[1];
  }
  if (g.frame_length == 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "the frame length is 0 (",
            window ? "input 2 (window) is empty" : "input 0 (signal) is empty",
            "); it must be >= 1");
  }
  const int64_t length = signal[1];
  if (g.frame_length != kDynamicDim && length != kDynamicDim && g.frame_length > length) {
    fail_at(node, ErrorCode::kInvalidArgument, "the frame length ", g.frame_length,
            " is longer than input 0 (signal) of shape ", shape_to_string(signal));
  }
  const bool known =
      g.frame_length != kDynamicDim && length != kDynamicDim && g.frame_step != kDynamicDim;
  g.frames = known ? (length - g.frame_length) / g.frame_step + 1 : kDynamicDim;
  int64_t bins = g.frame_length;
  if (bins != kDynamicDim && g.onesided) bins = bins / 2 + 1;
  g.output = {signal[0], g.frames, bins, 2};
  return g;
}

DType mel_output_dtype(const NodeLabel& node, const AttributeMap& attrs) {
  const int64_t raw = attrs.get_int_or("output_datatype", static_cast<int64_t>(DType::kFloat32));
  switch (raw) {
    case static_cast<int64_t>(DType::kFloat32):
    case static_cast<int64_t>(DType::kFloat64):
    case static_cast<int64_t>(DType::kFloat16):
    case static_cast<int64_t>(DType::kBFloat16):
    case static_cast<int64_t>(DType::kUInt8):
    case static_cast<int64_t>(DType::kUInt16):
    case static_cast<int64_t>(DType::kUInt32):
    case static_cast<int64_t>(DType::kUInt64):
    case static_cast<int64_t>(DType::kInt8):
    case static_cast<int64_t>(DType::kInt16):
    case static_cast<int64_t>(DType::kInt32):
    case static_cast<int64_t>(DType::kInt64):
      return static_cast<DType>(raw);
    default:
      fail_at(node, ErrorCode::kUnsupported, "attribute 'output_datatype' is ", raw,
              "; supported: a float (1, 10, 11, 16) or integer (2-7, 12, 13) ONNX data type");
  }
}

Shape mel_output_shape(const NodeLabel& node, std::optional<int64_t> num_mel_bins,
                       std::optional<int64_t> dft_length) {
  if (num_mel_bins && *num_mel_bins <= 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 0 (num_mel_bins) is ", *num_mel_bins,
            "; it must be >= 1");
  }
  if (dft_length && *dft_length <= 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (dft_length) is ", *dft_length,
            "; it must be >= 1");
  }
  return {dft_length ? *dft_length / 2 + 1 : kDynamicDim, num_mel_bins.value_or(kDynamicDim)};
}

}  // namespace kiln::ops::nn
