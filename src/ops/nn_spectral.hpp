// DFT (opset 20 form: axis as input 2), STFT and MelWeightMatrix (opset 17): their attributes and
// the output geometry the values of their scalar inputs decide, resolved once for the infer
// functions (where a value may be unknown, leaving its dims dynamic) and the CPU kernels (where
// every value is known). The importer turns DFT-17's `axis` attribute into input 2.
#pragma once

#include <cstdint>
#include <optional>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

// One DFT node's transform along `axis` of a [..., 1 or 2] tensor (the last dim holds the real
// part, or the real and imaginary parts).
struct DftGeometry {
  int64_t axis = 0;    // normalised into [0, rank - 2]
  int64_t length = 0;  // the transform's length n (dft_length); kDynamicDim when unknown
  bool inverse = false;
  bool onesided = false;  // forward: RFFT (keeps n / 2 + 1 bins); inverse: IRFFT (real output)
  bool complex_input = false;
  Shape output;  // kDynamicDim where an unknown value decides the dim
};

// Needs `input` of rank >= 2 (a dim may be dynamic). `dft_length` and `axis` are the values of
// inputs 1 and 2: nullopt when the input is absent (`*_present` false) or its value unknown.
// Returns the geometry; an unknown axis leaves every dim but the last dynamic. Fails
// (kInvalidArgument naming the node and the input) for a last dim other than 1 or 2, an axis
// outside [-r, -2] U [0, r - 2], dft_length <= 0, onesided with complex input for the forward
// transform or real input for the inverse one, and an IRFFT default length below 1.
DftGeometry resolve_dft(const NodeLabel& node, const AttributeMap& attrs, const Shape& input,
                        std::optional<int64_t> dft_length, bool dft_length_present,
                        std::optional<int64_t> axis);

// One STFT node: frames of `frame_length` samples every `frame_step` samples of a
// [batch, signal_length, 1 or 2] signal, each multiplied by the window and transformed.
struct StftGeometry {
  int64_t frame_step = 0;    // kDynamicDim when unknown
  int64_t frame_length = 0;  // kDynamicDim when unknown
  int64_t frames = 0;        // kDynamicDim when unknown
  bool onesided = true;
  bool complex_input = false;
  Shape output;  // [batch, frames, onesided ? frame_length / 2 + 1 : frame_length, 2]
};

// Needs the signal's and the window's shapes (window nullptr when absent) and the values of
// frame_step (nullopt when unknown) and frame_length (nullopt when absent or unknown;
// `frame_length_present` says which). Fails (kInvalidArgument naming the node and the input) for
// a signal not [batch, length, 1 or 2], frame_step <= 0, frame_length <= 0 or past the signal,
// a window not 1-D or of another length than frame_length, and onesided with complex input.
StftGeometry resolve_stft(const NodeLabel& node, const AttributeMap& attrs, const Shape& signal,
                          const Shape* window, std::optional<int64_t> frame_step,
                          std::optional<int64_t> frame_length, bool frame_length_present);

// MelWeightMatrix's output dtype (attribute output_datatype, default float32). Fails
// (kUnsupported naming the node) for a dtype outside the op's list (no bool).
DType mel_output_dtype(const NodeLabel& node, const AttributeMap& attrs);

// The [dft_length / 2 + 1, num_mel_bins] output shape; a dim is kDynamicDim when its value is
// unknown. Fails (kInvalidArgument naming the node and the input) for num_mel_bins or dft_length
// <= 0.
Shape mel_output_shape(const NodeLabel& node, std::optional<int64_t> num_mel_bins,
                       std::optional<int64_t> dft_length);

}  // namespace kiln::ops::nn
