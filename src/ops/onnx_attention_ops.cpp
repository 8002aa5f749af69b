// ONNX Attention's geometry and infer function (see ops/onnx_attention.hpp for its contract).
#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.hpp"
#include "ops/nn_common.hpp"
#include "ops/onnx_attention.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::agree;
using nn::known;

constexpr const char* kInputNames[] = {
    "Q", "K", "V", "attn_mask", "past_key", "past_value", "nonpad_kv_seqlen"};


// The known one of two dims that agree.
int64_t either(int64_t a, int64_t b) {
  return known(a) ? a : b;
}

int64_t product(int64_t a, int64_t b) {
  return known(a) && known(b) ? a * b : kDynamicDim;
}

int64_t sum(int64_t a, int64_t b) {
  return known(a) && known(b) ? a + b : kDynamicDim;
}

class Resolver {
 public:
  Resolver(std::string_view label, const AttributeMap& attrs, const OnnxAttentionInput* inputs,
           size_t count)
      : label_(label), attrs_(attrs), inputs_(inputs), count_(count) {}

  OnnxAttentionGeometry resolve() {
    check_presence_and_dtypes();
    read_attributes();
    resolve_qkv();
    resolve_past();
    resolve_nonpad();
    resolve_mask();
    resolve_outputs();
    return g_;
  }

 private:
  template <typename... Parts>
  [[noreturn]] void invalid(Parts&&... parts) const {
    fail(ErrorCode::kInvalidArgument, label_, ": ", std::forward<Parts>(parts)...);
  }
  template <typename... Parts>
  [[noreturn]] void unsupported(Parts&&... parts) const {
    fail(ErrorCode::kUnsupported, label_, ": ", std::forward<Parts>(parts)...);
  }

  bool has(size_t i) const { return i < count_ && inputs_[i].present; }
  const Shape& shape(size_t i) const { return inputs_[i].shape; }

  void check_presence_and_dtypes() {
    for (size_t i = 0; i < 3; ++i) {
      if (!has(i)) invalid("input ", i, " (", kInputNames[i], ") is missing");
    }
    if (has(6)) {
      if (inputs_[6].dtype != DType::kInt64) {
        invalid("input 6 (nonpad_kv_seqlen) must be int64, got ", dtype_name(inputs_[6].dtype));
      }
      g_.has_nonpad = true;
    }
    const DType dtype = inputs_[0].dtype;
    if (dtype == DType::kFloat64)
      unsupported("Q has dtype float64; kiln supports float32, float16 and bfloat16");
    if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
      invalid("Q has dtype ", dtype_name(dtype), ", expected a floating dtype");
    }
    for (size_t i : {1, 2, 4, 5}) {
      if (has(i) && inputs_[i].dtype != dtype) {
        unsupported(kInputNames[i], " has dtype ", dtype_name(inputs_[i].dtype), " but Q has ",
                    dtype_name(dtype), "; kiln needs one dtype for Q, K, V and the past");
      }
    }
    if (has(3)) {
      const DType mask = inputs_[3].dtype;
      g_.mask_is_bool = mask == DType::kBool;
      if (!g_.mask_is_bool && mask != dtype) {
        unsupported("attn_mask has dtype ", dtype_name(mask),
                    "; kiln supports a bool mask or one of Q's dtype (", dtype_name(dtype), ")");
      }
      g_.has_mask = true;
    }
    if (has(4) != has(5)) {
      invalid("past_key and past_value must be given together; got only ",
              has(4) ? "past_key" : "past_value");
    }
    g_.has_past = has(4);
  }

  void read_attributes() {
    const int64_t causal = attrs_.get_int_or("is_causal", 0);
    if (causal != 0 && causal != 1) invalid("attribute 'is_causal' must be 0 or 1, got ", causal);
    g_.causal = causal == 1;
    const int64_t mode = attrs_.get_int_or("qk_matmul_output_mode", 0);
    if (mode < 0 || mode > 3) invalid("attribute 'qk_matmul_output_mode' must be 0..3, got ", mode);
    g_.qk_output_mode = static_cast<int>(mode);
    // Opset 25's sliding window: -1 leaves that side unbounded.
    for (const char* name : {"left_window_size", "right_window_size"}) {
      if (attrs_.get_int_or(name, -1) < -1) {
        invalid("attribute '", name, "' must be -1 or >= 0, got ", attrs_.get_int(name));
      }
    }
    g_.left_window = attrs_.get_int_or("left_window_size", -1);
    g_.right_window = attrs_.get_int_or("right_window_size", -1);
    g_.softcap = attrs_.get_float_or("softcap", 0.0f);
    if (!std::isfinite(g_.softcap) || g_.softcap < 0.0f) {
      invalid("attribute 'softcap' must be a finite value >= 0, got ", g_.softcap);
    }
    if (attrs_.has("softmax_precision")) {
      const int64_t precision = attrs_.get_int("softmax_precision");
      if (precision != static_cast<int64_t>(DType::kFloat32) &&
          precision != static_cast<int64_t>(DType::kFloat16) &&
          precision != static_cast<int64_t>(DType::kBFloat16) &&
          precision != static_cast<int64_t>(DType::kFloat64)) {
        unsupported("attribute 'softmax_precision' is ", precision,
                    "; kiln supports the floating types 1 (float), 10 (float16), 16 (bfloat16) and "
                    "11 (double)");
      }
    }
    for (const char* name : {"q_num_heads", "kv_num_heads"}) {
      if (attrs_.has(name) && attrs_.get_int(name) <= 0) {
        invalid("attribute '", name, "' must be positive, got ", attrs_.get_int(name));
      }
    }
  }

  void resolve_qkv() {
    const size_t rank = shape(0).size();
    if (rank != 3 && rank != 4) invalid("Q must have rank 3 or 4, got ", shape_to_string(shape(0)));
    for (size_t i : {1, 2}) {
      if (shape(i).size() != rank) {
        invalid(kInputNames[i], " ", shape_to_string(shape(i)), " must have Q's rank ", rank,
                " (Q ", shape_to_string(shape(0)), ")");
      }
    }
    const Shape &q = shape(0), &k = shape(1), &v = shape(2);
    const auto mismatch = [&](size_t i, const char* what) {
      invalid(kInputNames[i], " ", shape_to_string(shape(i)), " does not match Q ",
              shape_to_string(q), ": ", what);
    };
    if (!agree(q[0], k[0]) || !agree(q[0], v[0]))
      mismatch(agree(q[0], k[0]) ? 2 : 1, "batch sizes differ");
    g_.batch = either(either(q[0], k[0]), v[0]);
    if (rank == 4) {
      g_.q_heads = q[1];
      g_.kv_heads = either(k[1], v[1]);
      if (!agree(k[1], v[1])) mismatch(2, "K and V head counts differ");
      g_.q_length = q[2];
      if (!agree(k[2], v[2])) mismatch(2, "K and V sequence lengths differ");
      g_.kv_length = either(k[2], v[2]);
      if (!agree(q[3], k[3])) mismatch(1, "head sizes differ");
      g_.head_size = either(q[3], k[3]);
      g_.v_head_size = v[3];
      for (const auto& [name, dim] :
           {std::pair{"q_num_heads", g_.q_heads}, std::pair{"kv_num_heads", g_.kv_heads}}) {
        if (attrs_.has(name) && known(dim) && attrs_.get_int(name) != dim) {
          invalid("attribute '", name, "' is ", attrs_.get_int(name),
                  " but the rank-4 inputs have ", dim, " heads");
        }
      }
    } else {
      g_.rank3 = true;
      if (!attrs_.has("q_num_heads") || !attrs_.has("kv_num_heads")) {
        invalid("rank-3 Q, K and V need the attributes q_num_heads and kv_num_heads");
      }
      g_.q_heads = attrs_.get_int("q_num_heads");
      g_.kv_heads = attrs_.get_int("kv_num_heads");
      g_.q_length = q[1];
      if (!agree(k[1], v[1])) mismatch(2, "K and V sequence lengths differ");
      g_.kv_length = either(k[1], v[1]);
      const auto split = [&](size_t i, int64_t heads) {
        const int64_t hidden = shape(i)[2];
        if (!known(hidden)) return kDynamicDim;
        if (hidden % heads != 0) {
          invalid(kInputNames[i], " ", shape_to_string(shape(i)), ": hidden size ", hidden,
                  " is not a multiple of ", heads, " heads");
        }
        return hidden / heads;
      };
      g_.head_size = split(0, g_.q_heads);
      const int64_t k_head = split(1, g_.kv_heads);
      if (!agree(g_.head_size, k_head)) mismatch(1, "head sizes differ");
      g_.head_size = either(g_.head_size, k_head);
      g_.v_head_size = split(2, g_.kv_heads);
    }
    if (known(g_.q_heads) && known(g_.kv_heads) && g_.q_heads % g_.kv_heads != 0) {
      invalid("q heads (", g_.q_heads, ") must be a multiple of kv heads (", g_.kv_heads, ")");
    }
    g_.scale = attrs_.has("scale") ? attrs_.get_float("scale")
               : known(g_.head_size) && g_.head_size > 0
                   ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(g_.head_size)))
                   : 0.0f;
  }

  void resolve_past() {
    g_.total_length = g_.kv_length;
    if (!g_.has_past) return;
    const Shape &pk = shape(4), &pv = shape(5);
    const auto check = [&](size_t i, int64_t feature) {
      const Shape& p = shape(i);
      if (p.size() != 4 || !agree(p[0], g_.batch) || !agree(p[1], g_.kv_heads) ||
          !agree(p[3], feature)) {
        invalid(kInputNames[i], " ", shape_to_string(p), " does not match [batch ", g_.batch,
                ", kv heads ", g_.kv_heads, ", past length, ", feature, "]");
      }
    };
    check(4, g_.head_size);
    check(5, g_.v_head_size);
    if (!agree(pk[2], pv[2]))
      invalid("past_key ", shape_to_string(pk), " and past_value ", shape_to_string(pv),
              " have different past lengths");
    g_.past_length = either(pk[2], pv[2]);
    g_.total_length = sum(g_.past_length, g_.kv_length);
  }

  void resolve_nonpad() {
    if (!g_.has_nonpad) return;
    if (g_.has_past) {
      invalid("input 6 (nonpad_kv_seqlen) cannot be combined with past_key and past_value");
    }
    const Shape& lengths = shape(6);
    if (lengths.size() != 1 || !agree(lengths[0], g_.batch)) {
      invalid("input 6 (nonpad_kv_seqlen) ", shape_to_string(lengths), " must be [batch ", g_.batch, "]");
    }
  }

  void resolve_mask() {
    if (!g_.has_mask) return;
    const Shape& mask = shape(3);
    const int64_t full[4] = {g_.batch, g_.q_heads, g_.q_length, g_.total_length};
    if (mask.size() > 4) invalid("attn_mask ", shape_to_string(mask), " has rank > 4");
    const size_t offset = 4 - mask.size();
    int64_t stride = 1;
    bool strides_known = true;
    for (size_t i = 4; i-- > 0;) {
      if (i < offset) continue;
      const int64_t dim = mask[i - offset];
      // The key dim may stop short of the total length: the keys past it are masked.
      const bool short_keys = i == 3 && known(dim) && known(full[3]) && dim > 1 && dim < full[3];
      if (short_keys) g_.mask_keys = dim;
      if (known(dim) && dim != 1 && !short_keys && !agree(dim, full[i])) {
        invalid("attn_mask ", shape_to_string(mask), " does not broadcast to [", full[0], ", ",
                full[1], ", ", full[2], ", ", full[3], "]");
      }
      strides_known = strides_known && known(dim);
      g_.mask_strides[i] = dim == 1 ? 0 : stride;
      stride = product(stride, dim);
    }
    if (!strides_known) std::fill(std::begin(g_.mask_strides), std::end(g_.mask_strides), 0);
  }

  void resolve_outputs() {
    g_.y_shape = g_.rank3 ? Shape{g_.batch, g_.q_length, product(g_.q_heads, g_.v_head_size)}
                          : Shape{g_.batch, g_.q_heads, g_.q_length, g_.v_head_size};
    g_.present_key_shape = {g_.batch, g_.kv_heads, g_.total_length, g_.head_size};
    g_.present_value_shape = {g_.batch, g_.kv_heads, g_.total_length, g_.v_head_size};
    g_.qk_shape = {g_.batch, g_.q_heads, g_.q_length, g_.total_length};
  }

  std::string_view label_;
  const AttributeMap& attrs_;
  const OnnxAttentionInput* inputs_;
  size_t count_;
  OnnxAttentionGeometry g_;
};

void infer_onnx_attention(InferContext& ctx) {
  const std::string label = "node '" + std::string(ctx.node_name()) + "' (Attention)";
  OnnxAttentionInput inputs[7];
  const size_t count = std::min<size_t>(ctx.num_inputs(), 7);
  for (size_t i = 0; i < count; ++i) {
    inputs[i] = {ctx.has_input(i), ctx.input(i).dtype, ctx.input(i).shape};
  }
  const OnnxAttentionGeometry g = resolve_onnx_attention(label, ctx.attrs(), inputs, count);
  const DType dtype = ctx.input(0).dtype;
  const Shape* shapes[4] = {&g.y_shape, &g.present_key_shape, &g.present_value_shape, &g.qk_shape};
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    ctx.output(i).dtype = dtype;
    ctx.output(i).shape = *shapes[i];
  }
}

}  // namespace

OnnxAttentionGeometry resolve_onnx_attention(std::string_view label, const AttributeMap& attrs,
                                             const OnnxAttentionInput* inputs, size_t count) {
  return Resolver(label, attrs, inputs, count).resolve();
}

void register_onnx_attention_ops(OpRegistry& registry) {
  // Input 6 is nonpad_kv_seqlen (opset 24).
  registry.add(OpDef{"Attention", 3, 7, 1, 4, {}, &infer_onnx_attention});
}

}  // namespace kiln::ops
