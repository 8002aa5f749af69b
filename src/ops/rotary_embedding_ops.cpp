// RotaryEmbedding (opset 23): see rotary_embedding.hpp.
//   RotaryEmbedding(X, cos_cache, sin_cache, position_ids?) -> Y (X's dtype and shape)
#include "ops/rotary_embedding.hpp"

#include "ops/op_families.hpp"

namespace kiln::ops {
namespace nn {
namespace {


void check_cache(const NodeLabel& node, const char* what, size_t index, const Shape& cache,
                 const RotaryGeometry& g, bool indexed) {
  const int64_t half = g.rotary_dim == kDynamicDim ? kDynamicDim : g.rotary_dim / 2;
  if (indexed) {
    if (cache.size() != 2 || !agree(cache[1], half)) {
      fail_at(node, ErrorCode::kInvalidArgument, "input ", index, " (", what,
              ") must be [max_position_id_plus_1, rotary_dim / 2 = ", half,
              "] when position_ids is given, got ", shape_to_string(cache));
    }
    return;
  }
  if (cache.size() != 3 || !agree(cache[0], g.batch) || !agree(cache[1], g.sequence) ||
      !agree(cache[2], half)) {
    fail_at(node, ErrorCode::kInvalidArgument, "input ", index, " (", what,
            ") must be [batch, sequence, rotary_dim / 2] = ",
            shape_to_string({g.batch, g.sequence, half}), " without position_ids, got ",
            shape_to_string(cache));
  }
}

}  // namespace

RotaryGeometry resolve_rotary(const NodeLabel& node, const AttributeMap& attrs, const Shape& x,
                              const Shape& cos_cache, const Shape& sin_cache,
                              const Shape* position_ids) {
  RotaryGeometry g;
  const int64_t num_heads = attrs.get_int_or("num_heads", 0);
  const int64_t interleaved = attrs.get_int_or("interleaved", 0);
  const int64_t rotary_dim = attrs.get_int_or("rotary_embedding_dim", 0);
  if (interleaved != 0 && interleaved != 1) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'interleaved' must be 0 or 1, got ",
            interleaved);
  }
  if (num_heads < 0) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'num_heads' must be >= 0, got ",
            num_heads);
  }
  g.interleaved = interleaved == 1;
  if (x.size() == 4) {
    g.heads_first = true;
    g.batch = x[0];
    g.heads = x[1];
    g.sequence = x[2];
    g.head_size = x[3];
    if (num_heads != 0 && !agree(num_heads, g.heads)) {
      fail_at(node, ErrorCode::kInvalidArgument, "attribute 'num_heads' is ", num_heads,
              " but input 0 (X) [batch, num_heads, sequence, head_size] has ", g.heads,
              " heads: ", shape_to_string(x));
    }
  } else if (x.size() == 3) {
    if (num_heads == 0) {
      fail_at(node, ErrorCode::kInvalidArgument,
              "a 3-D input 0 (X) [batch, sequence, hidden] needs attribute 'num_heads' > 0");
    }
    g.batch = x[0];
    g.sequence = x[1];
    g.heads = num_heads;
    if (known(x[2]) && x[2] % num_heads != 0) {
      fail_at(node, ErrorCode::kInvalidArgument, "input 0 (X) hidden size ", x[2],
              " is not a multiple of num_heads ", num_heads);
    }
    g.head_size = known(x[2]) ? x[2] / num_heads : kDynamicDim;
  } else {
    fail_at(node, ErrorCode::kInvalidArgument,
            "input 0 (X) must be 4-D [batch, num_heads, sequence, head_size] or 3-D [batch, "
            "sequence, hidden], got ",
            shape_to_string(x));
  }
  if (rotary_dim < 0 || rotary_dim % 2 != 0) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "attribute 'rotary_embedding_dim' must be even and >= 0, got ", rotary_dim);
  }
  if (rotary_dim != 0 && known(g.head_size) && rotary_dim > g.head_size) {
    fail_at(node, ErrorCode::kInvalidArgument, "attribute 'rotary_embedding_dim' ", rotary_dim,
            " exceeds the head size ", g.head_size);
  }
  g.rotary_dim = rotary_dim != 0 ? rotary_dim : g.head_size;
  if (rotary_dim == 0 && known(g.head_size) && g.head_size % 2 != 0) {
    fail_at(node, ErrorCode::kInvalidArgument,
            "the head size must be even to rotate whole heads, got ", g.head_size);
  }
  if (position_ids) {
    const Shape& p = *position_ids;
    if (p.size() != 2 || !agree(p[0], g.batch) || !agree(p[1], g.sequence)) {
      fail_at(node, ErrorCode::kInvalidArgument,
              "input 3 (position_ids) must be [batch, sequence] = ",
              shape_to_string({g.batch, g.sequence}), ", got ", shape_to_string(p));
    }
  }
  check_cache(node, "cos_cache", 1, cos_cache, g, position_ids != nullptr);
  check_cache(node, "sin_cache", 2, sin_cache, g, position_ids != nullptr);
  if (position_ids && !agree(cos_cache[0], sin_cache[0])) {
    fail_at(node, ErrorCode::kInvalidArgument, "inputs 1 (cos_cache) ", shape_to_string(cos_cache),
            " and 2 (sin_cache) ", shape_to_string(sin_cache), " must have the same shape");
  }
  return g;
}

}  // namespace nn

namespace {

void infer_rotary_embedding(InferContext& ctx) {
  nn::require_float_input(ctx, 0, "X");
  nn::require_same_dtype(ctx, 1, "cos_cache");
  nn::require_same_dtype(ctx, 2, "sin_cache");
  const bool indexed = ctx.has_input(3);
  if (indexed && ctx.input(3).dtype != DType::kInt64) {
    ctx.fail("input 3 (position_ids) must be int64, got ", dtype_name(ctx.input(3).dtype));
  }
  nn::resolve_rotary(nn::label_of(ctx), ctx.attrs(), ctx.input(0).shape, ctx.input(1).shape,
                     ctx.input(2).shape, indexed ? &ctx.input(3).shape : nullptr);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = ctx.input(0).shape;
}

}  // namespace

void register_rotary_embedding_ops(OpRegistry& registry) {
  registry.add(OpDef{
      "RotaryEmbedding", 3, 4, 1, 1, {}, &nn::infer_with_node_errors<infer_rotary_embedding>});
}

}  // namespace kiln::ops
