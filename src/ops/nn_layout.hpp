// The kiln_layout attribute (kiln extension) of 2-D Conv and the pooling ops: "NCHW" (the ONNX
// default) or "NHWC", where X/Y are [N, H, W, C] and Conv's W is [M, kH, kW, C/group]. The
// builder sets it on fp16/bf16 convolution regions for the CUDA backend (tensor cores want NHWC);
// infer functions and kernels of every backend honour it.
#pragma once

#include <string>

#include "base/attributes.hpp"
#include "base/error.hpp"
#include "kiln/types.hpp"

namespace kiln::ops::nn {

inline constexpr const char* kLayoutAttribute = "kiln_layout";

// True for kiln_layout = "NHWC", false when absent or "NCHW"; kInvalidArgument for other values.
inline bool is_nhwc_layout(const AttributeMap& attrs) {
  const std::string layout = attrs.get_string_or(kLayoutAttribute, "NCHW");
  if (layout == "NHWC") return true;
  if (layout == "NCHW") return false;
  fail(ErrorCode::kInvalidArgument, "attribute '", kLayoutAttribute,
       "' must be \"NCHW\" or \"NHWC\", got \"", layout, "\"");
}

// [N, H, W, C] -> [N, C, H, W] (also KRSC weights -> KCRS). Rank-4 shapes only.
inline Shape nhwc_to_nchw(const Shape& s) {
  return Shape{s[0], s[3], s[1], s[2]};
}

// [N, C, H, W] -> [N, H, W, C]. Rank-4 shapes only.
inline Shape nchw_to_nhwc(const Shape& s) {
  return Shape{s[0], s[2], s[3], s[1]};
}

}  // namespace kiln::ops::nn
