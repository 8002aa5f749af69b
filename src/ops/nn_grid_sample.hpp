// GridSample's attributes, read once for every backend: the interpolation mode (opset 16's
// bilinear/bicubic are opset 20's linear/cubic), the padding mode and align_corners.
#pragma once

#include <string>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

enum class GridSampleMode { kLinear, kNearest, kCubic };
enum class GridSamplePadding { kZeros, kBorder, kReflection };

struct GridSampleParams {
  GridSampleMode mode = GridSampleMode::kLinear;
  GridSamplePadding padding = GridSamplePadding::kZeros;
  bool align_corners = false;
};

// Throws kiln::Error (kInvalidArgument naming the node) for an unknown mode or padding mode or an
// align_corners other than 0 or 1.
inline GridSampleParams read_grid_sample_params(const NodeLabel& node, const AttributeMap& attrs) {
  GridSampleParams p;
  const std::string mode = attrs.get_string_or("mode", "linear");
  if (mode == "linear" || mode == "bilinear") {
    p.mode = GridSampleMode::kLinear;
  } else if (mode == "nearest") {
    p.mode = GridSampleMode::kNearest;
  } else if (mode == "cubic" || mode == "bicubic") {
    p.mode = GridSampleMode::kCubic;
  } else {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'mode' must be linear, nearest or cubic, got '", mode, "'");
  }
  const std::string padding = attrs.get_string_or("padding_mode", "zeros");
  if (padding == "zeros") {
    p.padding = GridSamplePadding::kZeros;
  } else if (padding == "border") {
    p.padding = GridSamplePadding::kBorder;
  } else if (padding == "reflection") {
    p.padding = GridSamplePadding::kReflection;
  } else {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'padding_mode' must be zeros, border or reflection, got '",
            padding, "'");
  }
  const int64_t align = attrs.get_int_or("align_corners", 0);
  if (align != 0 && align != 1) fail_at(node, ErrorCode::kInvalidArgument, "attribute 'align_corners' must be 0 or 1, got ", align);
  p.align_corners = align == 1;
  return p;
}

}  // namespace kiln::ops::nn
