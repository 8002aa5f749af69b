// BatchNormalization (inference form), LayerNormalization and LRN.
#include <vector>

#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;

void infer_batch_norm(InferContext& ctx) {
  if (ctx.attrs().get_int_or("training_mode", 0) != 0) {
    nn::fail_at(label_of(ctx), ErrorCode::kUnsupported,
                "training_mode=1 is not supported; kiln runs BatchNormalization in inference mode");
  }
  if (ctx.num_outputs() > 1) {
    nn::fail_at(label_of(ctx), ErrorCode::kUnsupported, "only output 0 (Y) is supported, got ",
                ctx.num_outputs(), " outputs (running_mean/running_var need training_mode)");
  }
  nn::require_float_input(ctx, 0, "X");
  nn::require_min_rank(ctx, 0, "X", 2);
  const Shape& x = ctx.input(0).shape;
  const char* names[] = {"X", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 1; i < 5; ++i) {
    nn::require_float_input(ctx, i, names[i]);
    const Shape& s = ctx.input(i).shape;
    if (s.size() != 1 || (s[0] != kDynamicDim && x[1] != kDynamicDim && s[0] != x[1])) {
      ctx.fail("input ", i, " (", names[i], ") must have shape [", x[1],
               "] (the channels of X), got ", shape_to_string(s));
    }
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = x;
  ctx.link_same_shape(0, 0);
}

DType stash_dtype(const InferContext& ctx) {
  const int64_t stash = ctx.attrs().get_int_or("stash_type", 1);
  if (stash != static_cast<int64_t>(DType::kFloat32) &&
      stash != static_cast<int64_t>(DType::kFloat16) &&
      stash != static_cast<int64_t>(DType::kBFloat16)) {
    nn::fail_at(label_of(ctx), ErrorCode::kUnsupported,
                "attribute 'stash_type' must be 1 (float32), 10 (float16) or 16 (bfloat16), got ",
                stash);
  }
  return static_cast<DType>(stash);
}

void infer_layer_norm(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "X");
  nn::require_float_input(ctx, 1, "Scale");
  if (ctx.has_input(2)) nn::require_float_input(ctx, 2, "B");
  const Shape& x = ctx.input(0).shape;
  if (x.empty()) ctx.fail("X must have rank >= 1");
  const auto rank = static_cast<int64_t>(x.size());
  const int64_t axis = normalize_axis(ctx, ctx.attrs().get_int_or("axis", -1), rank);
  const DType stash = stash_dtype(ctx);
  const Shape normalized(x.begin() + axis, x.end());
  for (size_t i = 1; i < 3; ++i) {
    if (!ctx.has_input(i)) continue;
    const Shape& s = ctx.input(i).shape;
    bool ok = s.size() <= normalized.size();
    for (size_t j = 0; ok && j < s.size(); ++j) {
      const int64_t want = normalized[normalized.size() - s.size() + j];
      ok = s[j] == 1 || s[j] == kDynamicDim || want == kDynamicDim || s[j] == want;
    }
    if (!ok) {
      ctx.fail("input ", i, " (", i == 1 ? "Scale" : "B", ") of shape ", shape_to_string(s),
               " does not broadcast to the normalized shape ", shape_to_string(normalized));
    }
  }
  // kiln extension (the builder's residual fusion): input 3 is added to X before normalizing.
  if (ctx.has_input(3)) {
    if (ctx.input(3).dtype != ctx.input(0).dtype || ctx.input(3).shape != x) {
      ctx.fail("input 3 (residual) is ", dtype_name(ctx.input(3).dtype), " ", shape_to_string(ctx.input(3).shape),
               ", expected X's ", dtype_name(ctx.input(0).dtype), " ", shape_to_string(x));
    }
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = x;
  ctx.link_same_shape(0, 0);
  Shape stats = x;
  for (auto i = static_cast<size_t>(axis); i < stats.size(); ++i) stats[i] = 1;
  for (size_t i = 1; i < ctx.num_outputs(); ++i) {
    ctx.output(i).dtype = stash;
    ctx.output(i).shape = stats;
    for (size_t d = 0; d < static_cast<size_t>(axis); ++d) ctx.link_dim(i, d, 0, d);  // the leading dims
  }
}

// LRN's size, alpha, beta and bias, checked (the CPU kernel reads them the same way).
void infer_lrn(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "X");
  nn::require_min_rank(ctx, 0, "X", 3);
  if (!ctx.attrs().has("size")) ctx.fail("attribute 'size' is required");
  const int64_t size = ctx.attrs().get_int("size");
  if (size < 1) ctx.fail("attribute 'size' must be >= 1, got ", size);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = ctx.input(0).shape;
  ctx.link_same_shape(0, 0);
}

}  // namespace

void register_normalization_ops(OpRegistry& registry) {
  registry.add(OpDef{"LRN", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_lrn>});
  registry.add(
      OpDef{"BatchNormalization", 5, 5, 1, 3, {}, &nn::infer_with_node_errors<infer_batch_norm>});
  registry.add(
      OpDef{"LayerNormalization", 2, 4, 1, 3, {}, &nn::infer_with_node_errors<infer_layer_norm>});
}

}  // namespace kiln::ops
