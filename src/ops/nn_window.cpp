#include "ops/nn_window.hpp"

#include <algorithm>
#include <string>

#include "base/checked_math.hpp"

namespace kiln::ops::nn {
namespace {

// b > 0. Written without a + b - 1, which overflows for extents and strides near 2^63.
int64_t ceil_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b + (a % b != 0 ? 1 : 0) : -((-a) / b);
}

// Kernel, dilation, stride and pads are attribute values up to 2^63 - 1: their sums and products
// must not wrap into a plausible extent.
int64_t fits(const NodeLabel& node, size_t axis, std::optional<int64_t> value) {
  if (!value) {
    fail_at(node, ErrorCode::kInvalidArgument, "spatial axis ", axis,
            ": the kernel, dilations, strides and pads overflow 64-bit sizes");
  }
  return *value;
}

}  // namespace

std::string list_to_string(const std::vector<int64_t>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(values[i]);
  }
  return out + "]";
}

AutoPad read_auto_pad(const NodeLabel& node, const AttributeMap& attrs) {
  const std::string auto_pad = attrs.get_string_or("auto_pad", "NOTSET");
  if (auto_pad == "NOTSET") return AutoPad::kNotSet;
  if (auto_pad == "SAME_UPPER") return AutoPad::kSameUpper;
  if (auto_pad == "SAME_LOWER") return AutoPad::kSameLower;
  if (auto_pad == "VALID") return AutoPad::kValid;
  fail_at(node, ErrorCode::kInvalidArgument,
          "attribute 'auto_pad' must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '", auto_pad,
          "'");
}

std::vector<int64_t> kernel_extents(const InferContext& ctx, const Shape& w) {
  std::vector<int64_t> kernel(w.begin() + 2, w.end());
  if (!ctx.attrs().has("kernel_shape")) return kernel;
  const std::vector<int64_t> attr =
      read_axis_attribute(label_of(ctx), ctx.attrs(), "kernel_shape", kernel.size(), 1, 1);
  for (size_t i = 0; i < kernel.size(); ++i) {
    if (kernel[i] != kDynamicDim && kernel[i] != attr[i]) {
      ctx.fail("attribute 'kernel_shape' ", shape_to_string(attr),
               " does not match the weight shape ", shape_to_string(w));
    }
  }
  return attr;
}

std::vector<int64_t> read_axis_attribute(const NodeLabel& node, const AttributeMap& attrs,
                                         const char* name, size_t expected_size, int64_t min,
                                         int64_t fallback) {
  if (!attrs.has(name)) return std::vector<int64_t>(expected_size, fallback);
  std::vector<int64_t> values = attrs.get_ints(name);
  if (values.size() != expected_size) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute '", name, "' must have ", expected_size,
            " entries, got ", values.size(), " ", list_to_string(values));
  }
  for (int64_t v : values) {
    if (v < min) {
      fail_at(node, ErrorCode::kInvalidArgument, "attribute '", name, "' entries must be >= ", min,
              ", got ", list_to_string(values));
    }
  }
  return values;
}

WindowGeometry resolve_window(const NodeLabel& node, const AttributeMap& attrs,
                              std::span<const int64_t> input_spatial, std::vector<int64_t> kernel,
                              bool ceil_mode) {
  const size_t rank = input_spatial.size();
  if (rank == 0) fail_at(node, ErrorCode::kInvalidArgument, "input has no spatial dimensions");
  if (kernel.size() != rank) {
    fail_at(node, ErrorCode::kInvalidArgument, "kernel has ", kernel.size(),
            " spatial dims but the input has ", rank);
  }
  WindowGeometry g;
  g.kernel = std::move(kernel);
  g.strides = read_axis_attribute(node, attrs, "strides", rank, 1, 1);
  g.dilations = read_axis_attribute(node, attrs, "dilations", rank, 1, 1);
  const std::vector<int64_t> pads = read_axis_attribute(node, attrs, "pads", 2 * rank, 0, 0);
  const AutoPad auto_pad = read_auto_pad(node, attrs);
  const bool same_upper = auto_pad == AutoPad::kSameUpper;
  const bool same_lower = auto_pad == AutoPad::kSameLower;
  const bool valid = auto_pad == AutoPad::kValid;
  g.pad_begin.assign(rank, 0);
  g.pad_end.assign(rank, 0);
  g.output.assign(rank, kDynamicDim);
  g.keeps_extent.assign(rank, false);
  for (size_t i = 0; i < rank; ++i) {
    if (g.strides[i] == 1 && g.kernel[i] >= 1) {
      // Padded by exactly the dilated kernel's extent minus one (pads are >= 0).
      const std::optional<int64_t> reach = mul_no_overflow(g.kernel[i] - 1, g.dilations[i]);
      const bool pads_reach = reach && (valid ? *reach == 0 : pads[i] <= *reach && pads[i + rank] == *reach - pads[i]);
      g.keeps_extent[i] = same_upper || same_lower || pads_reach;
    }
    if (g.kernel[i] != kDynamicDim && g.kernel[i] < 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "kernel extents must be >= 1, got ",
              list_to_string(g.kernel));
    }
    const int64_t in = input_spatial[i];
    if (in < 0 || g.kernel[i] < 0) continue;  // dynamic: output extent unknown until run time
    const int64_t effective_kernel =
        fits(node, i, mul_no_overflow(g.kernel[i] - 1, g.dilations[i])) + 1;
    const int64_t stride = g.strides[i];
    int64_t out = 0;
    if (same_upper || same_lower) {
      out = ceil_div(in, stride);
      const int64_t last_start = fits(node, i, mul_no_overflow(out - 1, stride));
      const int64_t reach = fits(node, i, add_no_overflow(last_start, effective_kernel));
      const int64_t total = std::max<int64_t>(0, reach - in);
      const int64_t small_half = total / 2;
      g.pad_begin[i] = same_upper ? small_half : total - small_half;
      g.pad_end[i] = total - g.pad_begin[i];
    } else {
      if (!valid) {
        g.pad_begin[i] = pads[i];
        g.pad_end[i] = pads[i + rank];
      }
      const int64_t begin_padded = fits(node, i, add_no_overflow(in, g.pad_begin[i]));
      const int64_t padded = fits(node, i, add_no_overflow(begin_padded, g.pad_end[i]));
      const int64_t span = padded - effective_kernel;
      if (span < 0) {
        fail_at(node, ErrorCode::kInvalidArgument, "spatial axis ", i, " of extent ", in,
                " (padded ", padded, ") is smaller than the dilated kernel extent ",
                effective_kernel);
      }
      out = (ceil_mode ? ceil_div(span, stride) : span / stride) + 1;
      // The last window must start inside the input or the begin padding (in + pad_begin fits:
      // it is at most `padded`).
      const auto last_start = mul_no_overflow(out - 1, stride);
      if (ceil_mode && (!last_start || *last_start >= in + g.pad_begin[i])) --out;
    }
    g.output[i] = out;
  }
  return g;
}

}  // namespace kiln::ops::nn
