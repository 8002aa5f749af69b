#include "ops/nn_resize.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace kiln::ops::nn {

ResizeAttributes read_resize_attributes(const NodeLabel& node, const AttributeMap& attrs,
                                        size_t rank) {
  ResizeAttributes out;
  const std::string mode = attrs.get_string_or("mode", "nearest");
  if (mode == "nearest") {
    out.mode = ResizeMode::kNearest;
  } else if (mode == "linear") {
    out.mode = ResizeMode::kLinear;
  } else if (mode == "cubic") {
    out.mode = ResizeMode::kCubic;
  } else {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'mode' must be nearest, linear or cubic, got '", mode, "'");
  }

  const std::string transform = attrs.get_string_or("coordinate_transformation_mode", "half_pixel");
  if (transform == "half_pixel") {
    out.transform = CoordinateTransform::kHalfPixel;
  } else if (transform == "half_pixel_symmetric") {
    out.transform = CoordinateTransform::kHalfPixelSymmetric;
  } else if (transform == "pytorch_half_pixel") {
    out.transform = CoordinateTransform::kPytorchHalfPixel;
  } else if (transform == "align_corners") {
    out.transform = CoordinateTransform::kAlignCorners;
  } else if (transform == "asymmetric") {
    out.transform = CoordinateTransform::kAsymmetric;
  } else if (transform == "tf_crop_and_resize") {
    out.transform = CoordinateTransform::kTfCropAndResize;
  } else {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'coordinate_transformation_mode' has unknown value '", transform, "'");
  }

  const std::string nearest = attrs.get_string_or("nearest_mode", "round_prefer_floor");
  if (nearest == "round_prefer_floor") {
    out.rounding = NearestRounding::kRoundPreferFloor;
  } else if (nearest == "round_prefer_ceil") {
    out.rounding = NearestRounding::kRoundPreferCeil;
  } else if (nearest == "floor") {
    out.rounding = NearestRounding::kFloor;
  } else if (nearest == "ceil") {
    out.rounding = NearestRounding::kCeil;
  } else {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'nearest_mode' must be round_prefer_floor, round_prefer_ceil, floor or "
            "ceil, got '",
            nearest, "'");
  }

  const std::string policy = attrs.get_string_or("keep_aspect_ratio_policy", "stretch");
  if (policy == "stretch") {
    out.policy = AspectRatioPolicy::kStretch;
  } else if (policy == "not_larger") {
    out.policy = AspectRatioPolicy::kNotLarger;
  } else if (policy == "not_smaller") {
    out.policy = AspectRatioPolicy::kNotSmaller;
  } else {
    fail_at(
        node, ErrorCode::kInvalidArgument,
        "attribute 'keep_aspect_ratio_policy' must be stretch, not_larger or not_smaller, got '",
        policy, "'");
  }

  const int64_t antialias = attrs.get_int_or("antialias", 0);
  if (antialias != 0 && antialias != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'antialias' must be 0 or 1, got ",
            antialias);
  }
  out.antialias = antialias == 1;
  if (out.antialias && out.mode == ResizeMode::kNearest) {
    fail_at(node, ErrorCode::kUnsupported,
            "attribute 'antialias' = 1 applies to modes 'linear' and 'cubic', not 'nearest'");
  }
  const int64_t exclude_outside = attrs.get_int_or("exclude_outside", 0);
  if (exclude_outside != 0 && exclude_outside != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'exclude_outside' must be 0 or 1, got ",
            exclude_outside);
  }
  out.exclude_outside = exclude_outside == 1;
  out.cubic_coeff_a = attrs.get_float_or("cubic_coeff_a", -0.75f);
  if (!std::isfinite(out.cubic_coeff_a)) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'cubic_coeff_a' must be finite, got ",
            out.cubic_coeff_a);
  }
  out.extrapolation_value = attrs.get_float_or("extrapolation_value", 0.0f);

  if (attrs.has("axes")) {
    std::vector<bool> seen(rank, false);
    const auto signed_rank = static_cast<int64_t>(rank);
    for (int64_t axis : attrs.get_ints("axes")) {
      if (axis < -signed_rank || axis >= signed_rank) {
        fail_at(node, ErrorCode::kInvalidArgument, "attribute 'axes': axis ", axis,
                " is out of range for rank ", rank);
      }
      const auto normalized = static_cast<size_t>(axis < 0 ? axis + signed_rank : axis);
      if (seen[normalized]) {
        fail_at(node, ErrorCode::kInvalidArgument, "attribute 'axes' lists axis ", axis, " twice");
      }
      seen[normalized] = true;
      out.axes.push_back(normalized);
    }
  } else {
    for (size_t i = 0; i < rank; ++i) out.axes.push_back(i);
  }
  return out;
}

namespace {

// A float extent as a dim. Converting a float of 2^63 or more to int64 is undefined behaviour, so
// an extent that large (from a huge scale or input) is an error instead.
int64_t extent_from_float(const NodeLabel& node, size_t axis, float extent) {
  if (!(extent < 9.2233720e18f)) {
    fail_at(node, ErrorCode::kInvalidArgument, "the output extent of axis ", axis, " (", extent,
            ") overflows 64-bit sizes");
  }
  return static_cast<int64_t>(extent);
}

}  // namespace

ResizePlan plan_resize_from_scales(const NodeLabel& node, const ResizeAttributes& attrs,
                                   const Shape& input, const std::vector<float>& scales) {
  if (scales.size() != attrs.axes.size()) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 2 (scales) has ", scales.size(),
            " entries, expected ", attrs.axes.size(), " (one per resized axis)");
  }
  ResizePlan plan{input, std::vector<float>(input.size(), 1.0f)};
  for (size_t i = 0; i < scales.size(); ++i) {
    const float scale = scales[i];
    if (!(scale > 0.0f) || !std::isfinite(scale)) {
      fail_at(node, ErrorCode::kInvalidArgument, "scales must be positive and finite, got ", scale,
              " at index ", i);
    }
    const size_t axis = attrs.axes[i];
    plan.scales[axis] = scale;
    // Computed in float, as ONNX Runtime does, so that e.g. 10 * 0.7f gives 7.
    if (input[axis] != kDynamicDim) {
      plan.output[axis] =
          extent_from_float(node, axis, std::floor(static_cast<float>(input[axis]) * scale));
    }
  }
  return plan;
}

ResizePlan plan_resize_from_sizes(const NodeLabel& node, const ResizeAttributes& attrs,
                                  const Shape& input, const std::vector<int64_t>& sizes) {
  if (sizes.size() != attrs.axes.size()) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 3 (sizes) has ", sizes.size(),
            " entries, expected ", attrs.axes.size(), " (one per resized axis)");
  }
  ResizePlan plan{input, std::vector<float>(input.size(), 1.0f)};
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] < 0) {
      fail_at(node, ErrorCode::kInvalidArgument, "sizes must be >= 0, got ", sizes[i], " at index ",
              i);
    }
  }
  if (attrs.policy == AspectRatioPolicy::kStretch) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      const size_t axis = attrs.axes[i];
      plan.output[axis] = sizes[i];
      if (input[axis] > 0) {
        plan.scales[axis] = static_cast<float>(sizes[i]) / static_cast<float>(input[axis]);
      }
    }
    return plan;
  }
  // One scale for every resized axis: the largest that fits (not_larger) or the smallest that
  // covers (not_smaller) the requested sizes.
  const bool not_larger = attrs.policy == AspectRatioPolicy::kNotLarger;
  float scale =
      not_larger ? std::numeric_limits<float>::max() : std::numeric_limits<float>::lowest();
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t in = input[attrs.axes[i]];
    if (in == kDynamicDim) {
      for (size_t axis : attrs.axes) plan.output[axis] = kDynamicDim;
      return plan;
    }
    if (in == 0) {
      fail_at(node, ErrorCode::kInvalidArgument, "cannot keep the aspect ratio of an empty axis ",
              attrs.axes[i]);
    }
    const float candidate = static_cast<float>(sizes[i]) / static_cast<float>(in);
    scale = not_larger ? std::min(scale, candidate) : std::max(scale, candidate);
  }
  for (size_t axis : attrs.axes) {
    plan.scales[axis] = scale;
    plan.output[axis] =
        extent_from_float(node, axis, std::round(scale * static_cast<float>(input[axis])));
  }
  return plan;
}

std::vector<std::pair<double, double>> resize_roi(const NodeLabel& node,
                                                  const ResizeAttributes& attrs, size_t rank,
                                                  const std::vector<double>& roi) {
  if (roi.size() != 2 * attrs.axes.size()) {
    fail_at(node, ErrorCode::kInvalidArgument, "input 1 (roi) has ", roi.size(),
            " entries, expected ", 2 * attrs.axes.size(),
            " (a start and an end per resized axis) for coordinate_transformation_mode "
            "'tf_crop_and_resize'");
  }
  std::vector<std::pair<double, double>> box(rank, {0.0, 1.0});
  for (size_t i = 0; i < attrs.axes.size(); ++i) {
    if (!std::isfinite(roi[i]) || !std::isfinite(roi[i + attrs.axes.size()])) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 1 (roi) must be finite");
    }
    box[attrs.axes[i]] = {roi[i], roi[i + attrs.axes.size()]};
  }
  return box;
}

}  // namespace kiln::ops::nn
