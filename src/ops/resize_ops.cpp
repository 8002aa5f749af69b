// Resize (opset 19 form): X, roi?, scales?, sizes?; exactly one of scales and sizes is given. An
// absent input or one with zero elements counts as not given.
#include <vector>

#include "ops/nn_common.hpp"
#include "ops/nn_resize.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;

bool is_given(const InferContext& ctx, size_t index) {
  if (!ctx.has_input(index)) return false;
  for (int64_t d : ctx.input(index).shape) {
    if (d == 0) return false;
  }
  return true;
}

void infer_resize(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "X");
  const Shape& x = ctx.input(0).shape;
  if (x.empty()) ctx.fail("X must have rank >= 1, got a scalar");
  const nn::ResizeAttributes attrs =
      nn::read_resize_attributes(label_of(ctx), ctx.attrs(), x.size());
  const bool has_scales = is_given(ctx, 2);
  const bool has_sizes = is_given(ctx, 3);
  if (has_scales == has_sizes) {
    ctx.fail(has_scales ? "only one of 'scales' (input 2) and 'sizes' (input 3) may be given"
                        : "one of 'scales' (input 2) and 'sizes' (input 3) must be given");
  }
  if (attrs.transform == nn::CoordinateTransform::kTfCropAndResize) {
    if (has_scales) {
      // ONNX's text sizes the output as floor(in * (roi_end - roi_start) * scale), its reference
      // and ONNX Runtime as floor(in * scale): refused rather than guessed.
      nn::fail_at(label_of(ctx), ErrorCode::kUnsupported,
                  "coordinate_transformation_mode 'tf_crop_and_resize' with 'scales' is not "
                  "supported (the ONNX spec and its reference disagree on the output size); give "
                  "'sizes' (input 3)");
    }
    if (!is_given(ctx, 1)) {
      ctx.fail("coordinate_transformation_mode 'tf_crop_and_resize' needs input 1 (roi)");
    }
    const ValueInfo& roi = ctx.input(1);
    if (!is_floating(roi.dtype)) {
      ctx.fail("input 1 (roi) must be a float tensor, got ", dtype_name(roi.dtype));
    }
    if (roi.shape.size() != 1) {
      ctx.fail("input 1 (roi) must be 1-D, got shape ", shape_to_string(roi.shape));
    }
    const auto roi_length = static_cast<int64_t>(2 * attrs.axes.size());
    if (roi.shape[0] != kDynamicDim && roi.shape[0] != roi_length) {
      ctx.fail("input 1 (roi) has ", roi.shape[0], " entries, expected ", 2 * attrs.axes.size(),
               " (a start and an end per resized axis)");
    }
  }
  const ValueInfo& info = ctx.input(has_scales ? 2 : 3);
  if (has_scales && !is_floating(info.dtype)) {
    ctx.fail("input 2 (scales) must be float32, got ", dtype_name(info.dtype));
  }
  if (has_sizes && info.dtype != DType::kInt64 && info.dtype != DType::kInt32) {
    ctx.fail("input 3 (sizes) must be int64, got ", dtype_name(info.dtype));
  }
  if (info.shape.size() != 1) {
    ctx.fail("input ", has_scales ? 2 : 3, " must be 1-D, got shape ", shape_to_string(info.shape));
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  if (!info.value) {
    // Values known only at run time: the rank is known, the resized dims are not.
    if (info.shape[0] != kDynamicDim && info.shape[0] != static_cast<int64_t>(attrs.axes.size())) {
      ctx.fail("input ", has_scales ? 2 : 3, " has ", info.shape[0], " entries, expected ",
               attrs.axes.size());
    }
    Shape out = x;
    for (size_t axis : attrs.axes) out[axis] = kDynamicDim;
    ctx.output(0).shape = std::move(out);
    return;
  }
  const TensorView values = view_of(*info.value);
  if (has_scales) {
    std::vector<float> scales(static_cast<size_t>(values.numel()));
    for (size_t i = 0; i < scales.size(); ++i) {
      scales[i] = static_cast<float>(read_as_double(values, static_cast<int64_t>(i)));
    }
    ctx.output(0).shape = nn::plan_resize_from_scales(label_of(ctx), attrs, x, scales).output;
  } else {
    ctx.output(0).shape =
        nn::plan_resize_from_sizes(label_of(ctx), attrs, x, read_indices(values)).output;
  }
}

}  // namespace

void register_resize_ops(OpRegistry& registry) {
  registry.add(OpDef{"Resize", 1, 4, 1, 1, {1, 2, 3}, &nn::infer_with_node_errors<infer_resize>});
}

}  // namespace kiln::ops
