// MaxPool (with its optional Indices output), MaxUnpool, AveragePool, LpPool, GlobalAveragePool and
// GlobalMaxPool over 1-3 spatial axes. With
// kiln_layout = "NHWC" (2-D only, see nn_layout.hpp) X and Y are [N, H, W, C].
#include <optional>
#include <vector>

#include "ops/max_unpool.hpp"
#include "ops/nn_common.hpp"
#include "ops/nn_layout.hpp"
#include "ops/nn_window.hpp"
#include "ops/op_families.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;

// X's shape in NCHW order; fails when kiln_layout = "NHWC" is set on a tensor that is not 4-D.
Shape nchw_input_shape(const InferContext& ctx, bool nhwc) {
  const Shape& x = ctx.input(0).shape;
  if (!nhwc) return x;
  if (x.size() != 4) {
    ctx.fail("kiln_layout \"NHWC\" needs a 4-D X (2-D pooling), got ", shape_to_string(x));
  }
  return nn::nhwc_to_nchw(x);
}

void infer_pool(InferContext& ctx) {
  const DType x_dtype = ctx.input(0).dtype;
  // MaxPool also takes int8 and uint8 (opset 12); the CPU kernel compares them as float32.
  if (ctx.op() == "MaxPool" && (x_dtype == DType::kInt8 || x_dtype == DType::kUInt8)) {
  } else if (ctx.op() == "MaxPool" && !nn::is_float_compute_dtype(x_dtype)) {
    nn::fail_at(label_of(ctx), ErrorCode::kUnsupported, "input 0 (X) has dtype ",
                dtype_name(x_dtype), "; supported: float32, float16, bfloat16, int8, uint8");
  } else {
    nn::require_float_input(ctx, 0, "X");
  }
  nn::require_min_rank(ctx, 0, "X", 3);
  const bool nhwc = nn::is_nhwc_layout(ctx.attrs());
  const bool indices = ctx.num_outputs() > 1;
  if (indices && nhwc) {
    nn::fail_at(label_of(ctx), ErrorCode::kUnsupported,
                "the Indices output of MaxPool is computed for the NCHW layout only");
  }
  const Shape x = nchw_input_shape(ctx, nhwc);
  const size_t spatial = x.size() - 2;
  if (!ctx.attrs().has("kernel_shape")) ctx.fail("missing required attribute 'kernel_shape'");
  const std::vector<int64_t> kernel =
      nn::read_axis_attribute(label_of(ctx), ctx.attrs(), "kernel_shape", spatial, 1, 1);
  const int64_t ceil_mode = ctx.attrs().get_int_or("ceil_mode", 0);
  if (ceil_mode != 0 && ceil_mode != 1) {
    ctx.fail("attribute 'ceil_mode' must be 0 or 1, got ", ceil_mode);
  }
  if (ctx.op() == "MaxPool") {
    const int64_t storage_order = ctx.attrs().get_int_or("storage_order", 0);
    if (storage_order != 0 && storage_order != 1) {
      ctx.fail("attribute 'storage_order' must be 0 or 1, got ", storage_order);
    }
  } else if (ctx.op() == "LpPool") {
    // Opset 1's p was a float; kiln takes LpPool from opset 2, where it is an integer.
    const int64_t p = ctx.attrs().get_int_or("p", 2);
    if (p < 1) ctx.fail("attribute 'p' must be >= 1, got ", p);
  } else {
    const int64_t include_pad = ctx.attrs().get_int_or("count_include_pad", 0);
    if (include_pad != 0 && include_pad != 1) {
      ctx.fail("attribute 'count_include_pad' must be 0 or 1, got ", include_pad);
    }
  }
  const nn::WindowGeometry geometry =
      nn::resolve_window(label_of(ctx), ctx.attrs(), std::vector<int64_t>(x.begin() + 2, x.end()),
                         kernel, ceil_mode != 0);
  Shape out{x[0], x[1]};
  out.insert(out.end(), geometry.output.begin(), geometry.output.end());
  if (indices) {  // MaxPool's Indices: int64 flat positions in X, one per output element
    ctx.output(1).dtype = DType::kInt64;
    ctx.output(1).shape = out;
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = nhwc ? nn::nchw_to_nhwc(out) : std::move(out);
  // Symbolic dims: batch and channels, and spatial axes whose window keeps the extent, in the
  // layout's own positions (Indices exists for NCHW only).
  const size_t channel_axis = nhwc ? 3 : 1;
  const size_t first_spatial = nhwc ? 1 : 2;
  for (size_t o = 0; o < ctx.num_outputs(); ++o) {
    ctx.link_dim(o, 0, 0, 0);
    ctx.link_dim(o, channel_axis, 0, channel_axis);
    for (size_t i = 0; i < geometry.keeps_extent.size(); ++i) {
      if (geometry.keeps_extent[i]) ctx.link_dim(o, first_spatial + i, 0, first_spatial + i);
    }
  }
}

void infer_global_pool(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "X");
  nn::require_min_rank(ctx, 0, "X", 3);
  const bool nhwc = nn::is_nhwc_layout(ctx.attrs());
  Shape out = nchw_input_shape(ctx, nhwc);
  for (size_t i = 2; i < out.size(); ++i) out[i] = 1;
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = nhwc ? nn::nchw_to_nhwc(out) : std::move(out);
  ctx.link_dim(0, 0, 0, 0);
  ctx.link_dim(0, nhwc ? 3 : 1, 0, nhwc ? 3 : 1);
}

// MaxUnpool: X [N, C, spatial...] and its MaxPool indices (int64, X's shape) scattered into
// zeros of the inferred shape, which sits at the origin of output_shape (input 2) when given.
void infer_max_unpool(InferContext& ctx) {
  nn::require_min_rank(ctx, 0, "X", 3);
  const Shape& x = ctx.input(0).shape;
  require_dtype(ctx, "input 1 (I)", ctx.input(1).dtype, {DType::kInt64});
  const Shape& i = ctx.input(1).shape;
  if (i.size() != x.size()) {
    ctx.fail("input 1 (I) must have X's shape ", shape_to_string(x), ", got ", shape_to_string(i));
  }
  for (size_t d = 0; d < x.size(); ++d) {
    if (x[d] != kDynamicDim && i[d] != kDynamicDim && x[d] != i[d]) {
      ctx.fail("input 1 (I) must have X's shape ", shape_to_string(x), ", got ", shape_to_string(i));
    }
  }
  Shape out = nn::max_unpool_inferred_shape(label_of(ctx), ctx.attrs(), x);
  if (ctx.has_input(2)) {
    const int64_t length = index_vector_length(ctx, 2, "output_shape");
    if (length != kDynamicDim && length != static_cast<int64_t>(x.size())) {
      ctx.fail("input 2 (output_shape) must have ", x.size(), " elements (X's rank), got ", length);
    }
    const std::optional<std::vector<int64_t>> given = known_indices(ctx, 2, "output_shape");
    if (!given) {
      out.assign(x.size(), kDynamicDim);
    } else {
      for (size_t d = 0; d < out.size(); ++d) {
        const int64_t want = (*given)[d];
        const bool too_small = out[d] != kDynamicDim && want < out[d];
        if (too_small || (d < 2 && x[d] != kDynamicDim && want != x[d])) {
          ctx.fail("input 2 (output_shape) ", shape_to_string(*given), " must keep X's N and C and hold the ",
                   "unpooled shape ", shape_to_string(out));
        }
      }
      out = *given;
    }
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = std::move(out);
}

}  // namespace

namespace nn {

Shape max_unpool_inferred_shape(const NodeLabel& node, const AttributeMap& attrs, const Shape& x) {
  const size_t spatial = x.size() - 2;
  if (!attrs.has("kernel_shape")) fail_at(node, ErrorCode::kInvalidArgument, "missing required attribute 'kernel_shape'");
  const std::vector<int64_t> kernel = read_axis_attribute(node, attrs, "kernel_shape", spatial, 1, 1);
  const std::vector<int64_t> strides = read_axis_attribute(node, attrs, "strides", spatial, 1, 1);
  const std::vector<int64_t> pads = read_axis_attribute(node, attrs, "pads", 2 * spatial, 0, 0);
  Shape out{x[0], x[1]};
  for (size_t d = 0; d < spatial; ++d) {
    const int64_t in = x[2 + d];
    if (in == kDynamicDim) {
      out.push_back(kDynamicDim);
      continue;
    }
    const int64_t extent = (in - 1) * strides[d] - pads[d] - pads[spatial + d] + kernel[d];
    if (extent < 1) {
      fail_at(node, ErrorCode::kInvalidArgument, "the unpooled extent of spatial axis ", d, " is ", extent,
              " (input ", in, ", stride ", strides[d], ", pads ", pads[d], " and ", pads[spatial + d],
              ", kernel ", kernel[d], ")");
    }
    out.push_back(extent);
  }
  return out;
}

}  // namespace nn

void register_pooling_ops(OpRegistry& registry) {
  registry.add(OpDef{"MaxPool", 1, 1, 1, 2, {}, &nn::infer_with_node_errors<infer_pool>});
  registry.add(OpDef{"AveragePool", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_pool>});
  registry.add(OpDef{"MaxUnpool", 2, 3, 1, 1, {2}, &nn::infer_with_node_errors<infer_max_unpool>});
  registry.add(OpDef{"LpPool", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_pool>});
  registry.add(
      OpDef{"GlobalAveragePool", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_global_pool>});
  registry.add(
      OpDef{"GlobalMaxPool", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_global_pool>});
}

}  // namespace kiln::ops
