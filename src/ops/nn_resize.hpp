// Resize attribute parsing and output-shape planning, shared by the Resize infer function and
// the CPU kernel.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

enum class ResizeMode { kNearest, kLinear };
enum class CoordinateTransform {
  kHalfPixel,
  kHalfPixelSymmetric,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric,
};
enum class NearestRounding { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil };
enum class AspectRatioPolicy { kStretch, kNotLarger, kNotSmaller };

struct ResizeAttributes {
  ResizeMode mode = ResizeMode::kNearest;
  CoordinateTransform transform = CoordinateTransform::kHalfPixel;
  NearestRounding rounding = NearestRounding::kRoundPreferFloor;
  AspectRatioPolicy policy = AspectRatioPolicy::kStretch;
  std::vector<size_t> axes;  // the axes scales/sizes refer to (normalised; all axes by default)
};

// Validates every attribute. Unsupported but valid choices (cubic, tf_crop_and_resize,
// antialias=1) fail with kUnsupported; malformed ones with kInvalidArgument.
ResizeAttributes read_resize_attributes(const NodeLabel& node, const AttributeMap& attrs,
                                        size_t rank);

struct ResizePlan {
  Shape output;               // kDynamicDim where unknown
  std::vector<float> scales;  // per input axis: the scale the coordinate transform uses
};

// Plans from the `scales` input's values (one per entry of attrs.axes): out = floor(in * scale).
ResizePlan plan_resize_from_scales(const NodeLabel& node, const ResizeAttributes& attrs,
                                   const Shape& input, const std::vector<float>& scales);
// Plans from the `sizes` input's values, applying keep_aspect_ratio_policy.
ResizePlan plan_resize_from_sizes(const NodeLabel& node, const ResizeAttributes& attrs,
                                  const Shape& input, const std::vector<int64_t>& sizes);

}  // namespace kiln::ops::nn
