// Resize attribute parsing and output-shape planning, shared by the Resize infer function and
// the CPU kernel.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "base/attributes.hpp"
#include "ops/nn_common.hpp"

namespace kiln::ops::nn {

enum class ResizeMode { kNearest, kLinear, kCubic };
enum class CoordinateTransform {
  kHalfPixel,
  kHalfPixelSymmetric,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric,
  kTfCropAndResize,  // maps into the roi input's box; outside it, extrapolation_value
};
enum class NearestRounding { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil };
enum class AspectRatioPolicy { kStretch, kNotLarger, kNotSmaller };

struct ResizeAttributes {
  ResizeMode mode = ResizeMode::kNearest;
  CoordinateTransform transform = CoordinateTransform::kHalfPixel;
  NearestRounding rounding = NearestRounding::kRoundPreferFloor;
  AspectRatioPolicy policy = AspectRatioPolicy::kStretch;
  std::vector<size_t> axes;  // the axes scales/sizes refer to (normalised; all axes by default)
  float cubic_coeff_a = -0.75f;
  bool exclude_outside = false;  // taps outside the input weigh 0 (the rest renormalised)
  bool antialias = false;        // linear/cubic: the filter widens by 1 / scale when downscaling
  float extrapolation_value = 0.0f;

  // Whether the interpolation goes beyond nearest and 2-tap linear with clamped coordinates:
  // cubic, antialias or tf_crop_and_resize (the filter-tap path of the CPU kernel).
  bool uses_filter_taps() const {
    return mode == ResizeMode::kCubic || antialias ||
           transform == CoordinateTransform::kTfCropAndResize;
  }
};

// Validates every attribute. Malformed ones fail with kInvalidArgument naming the attribute;
// antialias=1 with mode 'nearest' (which the ONNX reference refuses too) with kUnsupported.
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

// Per input axis: tf_crop_and_resize's box [start, end] in normalised coordinates, from the roi
// input's values ([starts..., ends...], one of each per entry of attrs.axes); [0, 1] on the
// other axes. Fails naming the node when the length is not 2 * axes.size().
std::vector<std::pair<double, double>> resize_roi(const NodeLabel& node,
                                                  const ResizeAttributes& attrs, size_t rank,
                                                  const std::vector<double>& roi);

}  // namespace kiln::ops::nn
