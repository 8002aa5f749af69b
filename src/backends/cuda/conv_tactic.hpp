// The tactic string a Conv layer records (attribute kiln_tactic, timing cache entries): which
// implementation runs the convolution. Plain C++ (no CUDA headers) so that the CPU-only build can
// test the encoding.
//
//   "cudnn:algo=<A>,math=<M>"  cuDNN's convolution API, cudnnConvolutionFwdAlgo_t A, cudnnMathType_t M
//   "kiln_depthwise"           kiln's own depthwise kernel (depthwise_conv_kernels.hpp; NHWC: rows)
//   "kiln_depthwise_tiled"     the same, NHWC with the tiled kernel
#pragma once

#include <charconv>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::cuda {

struct ConvTactic {
  enum class Kind { kCudnn, kKilnDepthwise, kKilnDepthwiseTiled };
  Kind kind = Kind::kCudnn;
  int algo = 0;  // kCudnn only
  int math = 0;  // kCudnn only

  static ConvTactic cudnn(int algo, int math) { return ConvTactic{Kind::kCudnn, algo, math}; }
  static ConvTactic kiln_depthwise(bool tiled = false) {
    return ConvTactic{tiled ? Kind::kKilnDepthwiseTiled : Kind::kKilnDepthwise, 0, 0};
  }
  bool operator==(const ConvTactic&) const = default;
};

inline constexpr std::string_view kKilnDepthwiseTactic = "kiln_depthwise";
inline constexpr std::string_view kKilnDepthwiseTiledTactic = "kiln_depthwise_tiled";

// The recorded form of `tactic` (above). Needs algo, math >= 0 for kCudnn.
inline std::string encode_conv_tactic(const ConvTactic& tactic) {
  if (tactic.kind == ConvTactic::Kind::kKilnDepthwise) return std::string(kKilnDepthwiseTactic);
  if (tactic.kind == ConvTactic::Kind::kKilnDepthwiseTiled) return std::string(kKilnDepthwiseTiledTactic);
  return "cudnn:algo=" + std::to_string(tactic.algo) + ",math=" + std::to_string(tactic.math);
}

namespace detail {
// Reads a non-negative decimal int at the front of `text` and drops it; false when there is none.
inline bool take_count(std::string_view& text, int& value) {
  const char* end = text.data() + text.size();
  const auto [next, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc() || next == text.data() || value < 0) return false;
  text.remove_prefix(static_cast<size_t>(next - text.data()));
  return true;
}

inline bool take_prefix(std::string_view& text, std::string_view prefix) {
  if (text.substr(0, prefix.size()) != prefix) return false;
  text.remove_prefix(prefix.size());
  return true;
}
}  // namespace detail

// The tactic `text` names, or nullopt when it is not exactly one of the forms above (an engine
// from another kiln version, a hand-edited cache): the layer then chooses again.
inline std::optional<ConvTactic> decode_conv_tactic(std::string_view text) {
  if (text == kKilnDepthwiseTactic) return ConvTactic::kiln_depthwise();
  if (text == kKilnDepthwiseTiledTactic) return ConvTactic::kiln_depthwise(true);
  ConvTactic tactic;
  if (!detail::take_prefix(text, "cudnn:algo=") || !detail::take_count(text, tactic.algo) ||
      !detail::take_prefix(text, ",math=") || !detail::take_count(text, tactic.math) || !text.empty()) {
    return std::nullopt;
  }
  return tactic;
}

}  // namespace kiln::cuda
