// FusedAttention's geometry and infer function (see ops/attention.hpp for its contract).
#include <algorithm>
#include <array>
#include <string>

#include "base/error.hpp"
#include "ops/attention.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

// Memory order of a rank-4 tensor: order[i] is the logical dim (0 batch, 1 head, 2 sequence,
// 3 feature) at memory position i, outermost first.
using Layout = std::array<int, 4>;
constexpr Layout kBHSD = {0, 1, 2, 3};
constexpr Layout kBHDS = {0, 1, 3, 2};  // K given transposed

Layout layout_attribute(std::string_view label, const AttributeMap& attrs, const char* name) {
  const std::string value = attrs.get_string_or(name, "BHSD");
  static constexpr std::string_view kLetters = "BHSD";
  Layout order{};
  bool seen[4] = {};
  bool valid = value.size() == 4;
  for (size_t i = 0; valid && i < 4; ++i) {
    const size_t dim = kLetters.find(value[i]);
    valid = dim != std::string_view::npos && !seen[dim];
    if (valid) {
      seen[dim] = true;
      order[i] = static_cast<int>(dim);
    }
  }
  if (!valid) {
    fail(ErrorCode::kInvalidArgument, label, ": attribute '", name,
         "' must be the letters B, H, S and D in memory order (e.g. \"BHSD\", \"BSHD\"), got \"",
         value, "\"");
  }
  return order;
}

// Logical (batch, head, sequence, feature) dims of a rank-4 tensor in `layout`.
void logical_dims(std::string_view label, const char* tensor, const Shape& shape,
                  const Layout& layout, int64_t (&dims)[4]) {
  if (shape.size() != 4) {
    fail(ErrorCode::kInvalidArgument, label, ": ", tensor, " must have rank 4, got ",
         shape_to_string(shape));
  }
  for (int64_t dim : shape) {
    if (dim == kDynamicDim)
      fail(ErrorCode::kInvalidArgument, label, ": ", tensor, " needs a static shape, got ",
           shape_to_string(shape));
  }
  for (size_t i = 0; i < 4; ++i) dims[layout[i]] = shape[i];
}

// Strides along (batch, head, sequence, feature) of a dense tensor with those logical dims laid
// out in `layout`.
void strides_of(const int64_t (&dims)[4], const Layout& layout, int64_t (&strides)[4]) {
  int64_t stride = 1;
  for (size_t i = 4; i-- > 0;) {
    strides[layout[i]] = stride;
    stride *= dims[layout[i]];
  }
}

void infer_attention(InferContext& ctx) {
  const std::string label = "node '" + std::string(ctx.node_name()) + "' (FusedAttention)";
  const DType dtype = ctx.input(0).dtype;
  const bool packed = ctx.attrs().get_int_or("qkv_packed", 0) != 0;
  const char* first = packed ? "QKV" : "Q";
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    ctx.fail(first, " has dtype ", dtype_name(dtype), ", expected float32, float16 or bfloat16");
  }
  for (size_t i = 1; i < 4; ++i) {
    if (ctx.has_input(i) && ctx.input(i).dtype != dtype) {
      ctx.fail("input ", i, " has dtype ", dtype_name(ctx.input(i).dtype), " but ", first, " has ",
               dtype_name(dtype));
    }
  }
  const auto shape = [&](size_t i) { return ctx.has_input(i) ? &ctx.input(i).shape : nullptr; };
  const AttentionGeometry geometry =
      resolve_attention(label, ctx.attrs(), ctx.input(0).shape, shape(1), shape(2), shape(3));
  ctx.output(0).dtype = dtype;
  ctx.output(0).shape = geometry.out_shape;
}

// The packed form: QKV holds B, S, T (which of q, k, v: 3), H and D in the memory order of
// attribute qkv_layout (default "BSTHD", [B, S, 3, H, D]); Q, K and V are its slices along T.
void resolve_packed(std::string_view label, const AttributeMap& attrs, const Shape& qkv,
                    AttentionGeometry& g) {
  for (const char* name : {"q_layout", "k_layout", "v_layout"}) {
    if (attrs.has(name)) {
      fail(ErrorCode::kInvalidArgument, label, ": attribute '", name,
           "' does not apply with qkv_packed = 1 (qkv_layout gives QKV's layout)");
    }
  }
  if (attrs.get_int_or("k_transposed", 0) != 0) {
    fail(ErrorCode::kInvalidArgument, label, ": k_transposed must be 0 with qkv_packed = 1");
  }
  static constexpr std::string_view kLetters = "BSTHD";
  const std::string layout = attrs.get_string_or("qkv_layout", "BSTHD");
  bool valid_layout = layout.size() == 5;
  for (char letter : kLetters) valid_layout = valid_layout && std::count(layout.begin(), layout.end(), letter) == 1;
  if (!valid_layout) {
    fail(ErrorCode::kInvalidArgument, label,
         ": attribute 'qkv_layout' must be the letters B, S, T, H and D in memory order (e.g. \"BSTHD\", "
         "\"SBTHD\"), got \"",
         layout, "\"");
  }
  const bool static_shape =
      std::none_of(qkv.begin(), qkv.end(), [](int64_t d) { return d == kDynamicDim; });
  const size_t which = layout.find('T');
  if (qkv.size() != 5 || !static_shape || qkv[which] != 3) {
    fail(ErrorCode::kInvalidArgument, label, ": QKV (input 0) must have a static shape of 5 dims in qkv_layout \"",
         layout, "\" with 3 along T, got ", shape_to_string(qkv));
  }
  int64_t size[5] = {}, stride[5] = {};  // per letter of kLetters
  int64_t running = 1;
  for (size_t i = 5; i-- > 0;) {
    const size_t letter = kLetters.find(layout[i]);
    size[letter] = qkv[i];
    stride[letter] = running;
    running *= qkv[i];
  }
  enum { kB, kS, kT, kH, kD };
  g.qkv_packed = true;
  g.batch = size[kB];
  g.query_length = g.key_length = size[kS];
  g.heads = size[kH];
  g.head_dim = g.value_dim = size[kD];
  const int64_t strides[4] = {stride[kB], stride[kH], stride[kS], stride[kD]};
  for (int i = 0; i < 4; ++i) g.q_strides[i] = g.k_strides[i] = g.v_strides[i] = strides[i];
  g.q_offset = 0;
  g.k_offset = stride[kT];
  g.v_offset = 2 * stride[kT];
}

void resolve_separate(std::string_view label, const AttributeMap& attrs, const Shape& q,
                      const Shape& k, const Shape& v, AttentionGeometry& g) {
  const Layout q_layout = layout_attribute(label, attrs, "q_layout");
  Layout k_layout = layout_attribute(label, attrs, "k_layout");
  const Layout v_layout = layout_attribute(label, attrs, "v_layout");
  if (attrs.get_int_or("k_transposed", 0) != 0) {  // the older spelling of k_layout "BHDS"
    if (k_layout != kBHSD) {
      fail(ErrorCode::kInvalidArgument, label, ": k_transposed needs k_layout \"BHSD\"");
    }
    k_layout = kBHDS;
  }
  int64_t qd[4], kd[4], vd[4];
  logical_dims(label, "Q", q, q_layout, qd);
  logical_dims(label, "K", k, k_layout, kd);
  logical_dims(label, "V", v, v_layout, vd);
  strides_of(qd, q_layout, g.q_strides);
  strides_of(kd, k_layout, g.k_strides);
  strides_of(vd, v_layout, g.v_strides);
  g.batch = qd[0];
  g.heads = qd[1];
  g.query_length = qd[2];
  g.head_dim = qd[3];
  g.key_length = kd[2];
  g.value_dim = vd[3];
  const auto mismatch = [&](const char* what, const Shape& shape) {
    fail(ErrorCode::kInvalidArgument, label, ": ", what, " ", shape_to_string(shape),
         " does not match Q ", shape_to_string(q));
  };
  if (kd[0] != g.batch || kd[1] != g.heads || kd[3] != g.head_dim) mismatch("K", k);
  if (vd[0] != g.batch || vd[1] != g.heads || vd[2] != g.key_length) mismatch("V", v);
}

}  // namespace

AttentionGeometry resolve_attention(std::string_view label, const AttributeMap& attrs,
                                    const Shape& q, const Shape& k, const Shape& v,
                                    const Shape* mask) {
  return resolve_attention(label, attrs, q, &k, &v, mask);
}

AttentionGeometry resolve_attention(std::string_view label, const AttributeMap& attrs,
                                    const Shape& q, const Shape* k, const Shape* v,
                                    const Shape* mask) {
  AttentionGeometry g;
  if (!attrs.has("scale"))
    fail(ErrorCode::kInvalidArgument, label, ": attribute 'scale' is required");
  g.scale = attrs.get_float("scale");
  g.nan_to_zero = attrs.get_int_or("nan_to_zero", 0) != 0;
  const Layout out_layout = layout_attribute(label, attrs, "out_layout");
  if (attrs.get_int_or("qkv_packed", 0) != 0) {
    if (k != nullptr || v != nullptr) {
      fail(ErrorCode::kInvalidArgument, label,
           ": with qkv_packed = 1 inputs 1 and 2 (K, V) must be absent, ",
           "Q, K and V are read from input 0; got ",
           k != nullptr ? "K " + shape_to_string(*k) : std::string(),
           k != nullptr && v != nullptr ? " and " : "",
           v != nullptr ? "V " + shape_to_string(*v) : std::string());
    }
    resolve_packed(label, attrs, q, g);
  } else {
    if (k == nullptr || v == nullptr) {
      fail(ErrorCode::kInvalidArgument, label, ": input ", k == nullptr ? "1 (K)" : "2 (V)",
           " is missing (only the qkv_packed = 1 form leaves K and V out)");
    }
    resolve_separate(label, attrs, q, *k, *v, g);
  }

  const int64_t out_dims[4] = {g.batch, g.heads, g.query_length, g.value_dim};
  strides_of(out_dims, out_layout, g.out_strides);
  g.out_shape.clear();
  for (int dim : out_layout) g.out_shape.push_back(out_dims[dim]);
  if (mask != nullptr) {
    g.has_mask = true;
    const int64_t full[4] = {g.batch, g.heads, g.query_length, g.key_length};
    if (mask->size() > 4) {
      fail(ErrorCode::kInvalidArgument, label, ": mask ", shape_to_string(*mask), " has rank > 4");
    }
    const size_t offset = 4 - mask->size();
    int64_t stride = 1;
    for (size_t i = 4; i-- > 0;) {
      if (i < offset) {
        g.mask_strides[i] = 0;
        continue;
      }
      const int64_t dim = (*mask)[i - offset];
      if (dim != 1 && dim != full[i]) {
        fail(ErrorCode::kInvalidArgument, label, ": mask ", shape_to_string(*mask),
             " does not broadcast to [", full[0], ", ", full[1], ", ", full[2], ", ", full[3], "]");
      }
      g.mask_strides[i] = dim == 1 ? 0 : stride;
      stride *= dim;
    }
  }
  return g;
}

bool attention_fits_tensor_cores(DType dtype, const AttentionGeometry& g) {
  if (dtype != DType::kFloat16 && dtype != DType::kBFloat16) return false;
  if (g.head_dim % 16 != 0 || g.value_dim % 16 != 0 || g.head_dim > 128 || g.value_dim > 128)
    return false;
  // Heads and batches are grid dims y and z, whose limit is 65535.
  if (g.heads > 65535 || g.batch > 65535) return false;
  // The output too: the kernel stores rows of 8 elements (16 bytes) along the feature dim.
  for (const int64_t* strides : {g.q_strides, g.k_strides, g.v_strides, g.out_strides}) {
    if (strides[3] != 1 || strides[2] % 8 != 0 || strides[1] % 8 != 0 || strides[0] % 8 != 0)
      return false;
  }
  return g.q_offset % 8 == 0 && g.k_offset % 8 == 0 && g.v_offset % 8 == 0;
}

void register_attention_ops(OpRegistry& registry) {
  // Inputs 1 and 2 are optional in the registry because the packed form leaves them out; the
  // infer function checks that each form has the inputs it needs.
  registry.add(OpDef{"FusedAttention", 1, 4, 1, 1, {}, &infer_attention});
}

}  // namespace kiln::ops
