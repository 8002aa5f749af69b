// ConvTranspose (ONNX opsets 11-21): X [N, C, D1..Dn], W [C, M/group, k1..kn], optional B [M];
// Y [N, M, O1..On] with the extents of conv_transpose_geometry.hpp. 1 to 3 spatial axes.
#include <algorithm>
#include <string>
#include <vector>

#include "base/checked_math.hpp"
#include "ops/conv_transpose_geometry.hpp"
#include "ops/nn_layout.hpp"
#include "ops/nn_window.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace nn {
namespace {

// The output_shape attribute's spatial extents (empty when absent). The spec gives one entry per
// spatial axis; N and C in front (rank + 2 entries, as some converters write) are skipped.
std::vector<int64_t> read_output_shape(const NodeLabel& node, const AttributeMap& attrs,
                                       size_t rank) {
  if (!attrs.has("output_shape")) return {};
  std::vector<int64_t> values = attrs.get_ints("output_shape");
  if (values.size() == rank + 2) values.erase(values.begin(), values.begin() + 2);
  if (values.size() != rank) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'output_shape' must have ", rank,
            " entries (one per spatial axis), got ", values.size(), " ", list_to_string(values));
  }
  for (int64_t v : values) {
    if (v < 1) {
      fail_at(node, ErrorCode::kInvalidArgument,
              "attribute 'output_shape' entries must be >= 1, got ", list_to_string(values));
    }
  }
  return values;
}

}  // namespace

ConvTransposeGeometry resolve_conv_transpose(const NodeLabel& node, const AttributeMap& attrs,
                                             std::span<const int64_t> input_spatial,
                                             std::vector<int64_t> kernel) {
  const size_t rank = input_spatial.size();
  if (rank == 0) fail_at(node, ErrorCode::kInvalidArgument, "X has no spatial dimensions");
  if (kernel.size() != rank) {
    fail_at(node, ErrorCode::kInvalidArgument, "the kernel has ", kernel.size(),
            " spatial dims but X has ", rank);
  }
  ConvTransposeGeometry g;
  g.kernel = std::move(kernel);
  g.strides = read_axis_attribute(node, attrs, "strides", rank, 1, 1);
  g.dilations = read_axis_attribute(node, attrs, "dilations", rank, 1, 1);
  g.output_padding = read_axis_attribute(node, attrs, "output_padding", rank, 0, 0);
  const std::vector<int64_t> pads = read_axis_attribute(node, attrs, "pads", 2 * rank, 0, 0);
  const std::vector<int64_t> output_shape = read_output_shape(node, attrs, rank);
  const AutoPad auto_pad = read_auto_pad(node, attrs);
  const bool same_upper = auto_pad == AutoPad::kSameUpper;
  const bool same_lower = auto_pad == AutoPad::kSameLower;
  const bool valid = auto_pad == AutoPad::kValid;
  if (auto_pad != AutoPad::kNotSet &&
      std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; })) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'pads' ", list_to_string(pads),
            " cannot be combined with auto_pad '", attrs.get_string("auto_pad"), "'");
  }
  g.pad_begin.assign(rank, 0);
  g.pad_end.assign(rank, 0);
  g.output.assign(rank, kDynamicDim);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t stride = g.strides[i];
    const int64_t output_padding = g.output_padding[i];
    // PyTorch's rule (and ONNX Runtime's first check): a larger output_padding would only add
    // positions no input reaches.
    if (output_padding >= std::max(stride, g.dilations[i])) {
      fail_at(node, ErrorCode::kInvalidArgument, "attribute 'output_padding' entry ", i,
              " must be less than max(stride, dilation) = ", std::max(stride, g.dilations[i]),
              ", got ", output_padding, " (output_padding ", list_to_string(g.output_padding), ")");
    }
    if (g.kernel[i] != kDynamicDim && g.kernel[i] < 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "kernel extents must be >= 1, got ",
              list_to_string(g.kernel));
    }
    if (!valid && !same_upper && !same_lower) {
      g.pad_begin[i] = pads[i];
      g.pad_end[i] = pads[i + rank];
    }
    const int64_t in = input_spatial[i];
    if (in == 0) {
      fail_at(node, ErrorCode::kInvalidArgument, "spatial axis ", i,
              " of X has extent 0; ConvTranspose needs at least one input position");
    }
    if (in < 0 || g.kernel[i] < 0) {
      // Unknown until run time, unless output_shape fixes the extent.
      if (!output_shape.empty()) g.output[i] = output_shape[i];
      continue;
    }
    // Attribute values up to 2^63 - 1: sums and products must not wrap into a plausible extent.
    auto fits = [&](std::optional<int64_t> value) {
      if (!value) {
        fail_at(node, ErrorCode::kInvalidArgument, "spatial axis ", i,
                ": the strides, kernel, dilations, pads and output_padding overflow 64-bit sizes");
      }
      return *value;
    };
    const int64_t dilated_kernel = fits(mul_no_overflow(g.kernel[i] - 1, g.dilations[i])) + 1;
    const int64_t full = fits(add_no_overflow(fits(mul_no_overflow(stride, in - 1)), dilated_kernel));
    int64_t out = 0;
    if (!output_shape.empty() || same_upper || same_lower) {
      out = output_shape.empty() ? fits(mul_no_overflow(in, stride)) : output_shape[i];
      const int64_t largest = fits(add_no_overflow(full, std::max(stride - 1, output_padding)));
      if (out > largest) {
        fail_at(node, ErrorCode::kInvalidArgument, "attribute 'output_shape' entry ", i,
                " must be at most ", largest, " (stride * (in - 1) + dilated kernel ", full,
                " + max(stride - 1, output_padding)) for input extent ", in, ", got ", out);
      }
      const int64_t total = std::max<int64_t>(0, fits(add_no_overflow(full, output_padding)) - out);
      g.pad_begin[i] = same_upper ? total / 2 : total - total / 2;
      g.pad_end[i] = total - g.pad_begin[i];
      // SAME without output_shape: where the full extent falls short of in * stride, ONNX
      // Runtime keeps the full extent rather than padding with zeros (and so does kiln).
      if (output_shape.empty()) out = full + output_padding - total;
    } else {
      out = fits(add_no_overflow(full, output_padding)) - g.pad_begin[i] - g.pad_end[i];
      if (out < 1) {
        fail_at(node, ErrorCode::kInvalidArgument, "attribute 'pads' ", list_to_string(pads),
                " leave no output on spatial axis ", i, ": stride * (in - 1) + dilated kernel ",
                full, " + output_padding ", output_padding, " - pads = ", out);
      }
    }
    g.output[i] = out;
  }
  return g;
}

}  // namespace nn

namespace {

using nn::label_of;

void infer_conv_transpose(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "X");
  nn::require_same_dtype(ctx, 1, "W");
  nn::require_min_rank(ctx, 0, "X", 3);
  if (nn::is_nhwc_layout(ctx.attrs())) {
    ctx.fail("attribute 'kiln_layout' must be \"NCHW\": ConvTranspose has no NHWC form");
  }
  const Shape& x = ctx.input(0).shape;
  const Shape& w = ctx.input(1).shape;
  const size_t spatial = x.size() - 2;
  if (spatial > 3) {
    nn::fail_at(label_of(ctx), ErrorCode::kUnsupported, "X ", shape_to_string(x), " has ", spatial,
                " spatial dimensions; supported: 1 to 3");
  }
  if (w.size() != x.size()) {
    ctx.fail("W must have the rank of X (", x.size(), "), got ", shape_to_string(w));
  }
  const int64_t group = ctx.attrs().get_int_or("group", 1);
  if (group < 1) ctx.fail("attribute 'group' must be >= 1, got ", group);

  const std::vector<int64_t> kernel = nn::kernel_extents(ctx, w);
  // W is [C, M / group, k...]: its first dim is X's channel count.
  const int64_t in_channels = x[1];
  if (in_channels != kDynamicDim && w[0] != kDynamicDim && in_channels != w[0]) {
    ctx.fail("X has ", in_channels, " channels but W ", shape_to_string(w), " expects ", w[0],
             " (W is [C, M/group, k...])");
  }
  const int64_t channels = in_channels != kDynamicDim ? in_channels : w[0];
  if (channels != kDynamicDim && channels % group != 0) {
    ctx.fail("X's ", channels, " channels are not divisible by attribute 'group' = ", group);
  }
  const auto product = mul_no_overflow(w[1], group);
  if (w[1] != kDynamicDim && !product) {
    ctx.fail("W's ", w[1], " output channels per group times group ", group,
             " overflow 64-bit sizes");
  }
  const int64_t out_channels = w[1] == kDynamicDim ? kDynamicDim : *product;
  if (ctx.has_input(2)) {
    nn::require_same_dtype(ctx, 2, "B");
    const Shape& b = ctx.input(2).shape;
    if (b.size() != 1 ||
        (b[0] != kDynamicDim && out_channels != kDynamicDim && b[0] != out_channels)) {
      ctx.fail("B must have shape [", out_channels, "] (W's dim 1 ", w[1], " x group ", group,
               "), got ", shape_to_string(b));
    }
  }
  const nn::ConvTransposeGeometry geometry = nn::resolve_conv_transpose(
      label_of(ctx), ctx.attrs(), std::vector<int64_t>(x.begin() + 2, x.end()), kernel);
  Shape out{x[0], out_channels};
  out.insert(out.end(), geometry.output.begin(), geometry.output.end());
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = std::move(out);
  ctx.link_dim(0, 0, 0, 0);  // symbolic dims: the batch
}

}  // namespace

void register_conv_transpose_ops(OpRegistry& registry) {
  registry.add(
      OpDef{"ConvTranspose", 2, 3, 1, 1, {}, &nn::infer_with_node_errors<infer_conv_transpose>});
}

}  // namespace kiln::ops
