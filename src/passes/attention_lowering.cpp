#include "passes/attention_lowering.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "ops/onnx_attention.hpp"
#include "passes/pass.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using ir::kNoValue;
using ir::ValueId;

constexpr double kMinusInfinity = -std::numeric_limits<double>::infinity();

std::shared_ptr<HostTensor> int64_tensor(const std::vector<int64_t>& values, bool scalar = false) {
  auto tensor = std::make_shared<HostTensor>(
      DType::kInt64, scalar ? Shape{} : Shape{static_cast<int64_t>(values.size())});
  if (!values.empty())
    std::memcpy(tensor->bytes.data(), values.data(), values.size() * sizeof(int64_t));
  return tensor;
}

std::shared_ptr<HostTensor> scalar_tensor(DType dtype, double value) {
  auto tensor = std::make_shared<HostTensor>(dtype, Shape{});
  const std::vector<uint8_t> bytes = scalar_bytes(dtype, value);
  std::memcpy(tensor->bytes.data(), bytes.data(), bytes.size());
  return tensor;
}

// Writes the nodes that compute one Attention node into `out`, in order.
class AttentionLowering {
 public:
  AttentionLowering(ir::Graph& graph, const ir::Node& node, std::unordered_set<std::string>& names)
      : graph_(graph), node_(node), names_(names) {
    ops::OnnxAttentionInput inputs[7];
    count_ = std::min<size_t>(node.inputs.size(), 7);
    for (size_t i = 0; i < count_; ++i) {
      const ValueId id = node.inputs[i];
      if (id == kNoValue) continue;
      inputs[i] = {true, graph.value(id).dtype, graph.value(id).shape};
    }
    g_ = ops::resolve_onnx_attention(describe_node(node), node.attrs, inputs, count_);
    dtype_ = graph.value(node.inputs[0]).dtype;
    // What the lowering does not spell yet: the node stays an Attention node, which only the CPU
    // kernel runs (a host layer of a CUDA engine).
    kept_ = g_.mask_keys != kDynamicDim || g_.has_nonpad || g_.left_window >= 0 || g_.right_window >= 0;
    if (kept_) return;
    if (!node.attrs.has("scale") && g_.head_size == kDynamicDim) {
      unsupported("the default scale 1/sqrt(head_size) needs a static head size; give 'scale'");
    }
  }

  // The node has a feature the lowering does not take (a mask shorter than the keys,
  // nonpad_kv_seqlen, a sliding window): lower() must not be called.
  bool kept() const { return kept_; }

  void lower(std::vector<ir::Node>& out) {
    out_ = &out;
    const ValueId q = heads_first(node_.inputs[0], g_.q_heads, g_.head_size, "q");
    ValueId k = heads_first(node_.inputs[1], g_.kv_heads, g_.head_size, "k");
    ValueId v = heads_first(node_.inputs[2], g_.kv_heads, g_.v_head_size, "v");
    if (g_.has_past) {
      k = emit("Concat", "present_key", {node_.inputs[4], k}, {{"axis", Attribute::of_int(2)}},
               output(1));
      v = emit("Concat", "present_value", {node_.inputs[5], v}, {{"axis", Attribute::of_int(2)}},
               output(2));
    } else {
      if (output(1) != kNoValue) emit("Identity", "present_key", {k}, {}, output(1));
      if (output(2) != kNoValue) emit("Identity", "present_value", {v}, {}, output(2));
    }
    k = repeated_heads(k, g_.head_size, "k");
    v = repeated_heads(v, g_.v_head_size, "v");

    // Q·sqrt(scale) · (Kᵀ·sqrt(scale)), as the ONNX function body spells it.
    const ValueId root =
        constant("root_scale", scalar_tensor(dtype_, std::sqrt(static_cast<double>(g_.scale))));
    const ValueId scaled_q = emit("Mul", "q_scaled", {q, root});
    const ValueId key_t =
        emit("Transpose", "k_t", {k}, {{"perm", Attribute::of_ints({0, 1, 3, 2})}});
    const ValueId scaled_k = emit("Mul", "k_scaled", {key_t, root});
    ValueId scores = emit("MatMul", "scores", {scaled_q, scaled_k});
    qk_output(scores, 0);
    if (g_.softcap > 0.0f) {
      const ValueId cap = constant("softcap", scalar_tensor(dtype_, g_.softcap));
      scores = emit("Mul", "capped",
                    {emit("Tanh", "tanh", {emit("Div", "scores_over_cap", {scores, cap})}), cap});
    }
    qk_output(scores, 1);
    if (const ValueId bias = attention_bias(); bias != kNoValue) {
      scores = emit("Add", "masked", {scores, bias});
    }
    qk_output(scores, 2);
    ValueId probabilities = emit("Softmax", "softmax", {scores}, {{"axis", Attribute::of_int(-1)}});
    // A mask can leave a row without keys: its softmax is NaN, ONNX's result 0.
    if (g_.has_mask) {
      const ValueId is_nan = emit("IsNaN", "is_nan", {probabilities});
      probabilities = emit("Where", "guard",
                           {is_nan, constant("zero", scalar_tensor(dtype_, 0.0)), probabilities});
    }
    qk_output(probabilities, 3);
    if (g_.rank3) {
      const ValueId context = emit("MatMul", "context", {probabilities, v});
      const ValueId interleaved =
          emit("Transpose", "context_t", {context}, {{"perm", Attribute::of_ints({0, 2, 1, 3})}});
      // The hidden size spelled out where known: with dynamic dims a -1 would stay unknown.
      const int64_t hidden = g_.v_head_size == kDynamicDim ? -1 : g_.q_heads * g_.v_head_size;
      emit("Reshape", "y", {interleaved, constant("y_shape", int64_tensor({0, 0, hidden}))}, {},
           output(0));
    } else {
      emit("MatMul", "y", {probabilities, v}, {}, output(0));
    }
  }

 private:
  template <typename... Parts>
  [[noreturn]] void unsupported(Parts&&... parts) const {
    fail(ErrorCode::kUnsupported, describe_node(node_), ": ", std::forward<Parts>(parts)...);
  }

  // Output `i` of the node, or kNoValue when it has none.
  ValueId output(size_t i) const { return i < node_.outputs.size() ? node_.outputs[i] : kNoValue; }

  void qk_output(ValueId value, int mode) {
    if (g_.qk_output_mode == mode && output(3) != kNoValue)
      emit("Identity", "qk_matmul_output", {value}, {}, output(3));
  }

  // A rank-3 [B, S, heads·size] input as [B, heads, S, size]; rank-4 inputs as they are.
  ValueId heads_first(ValueId x, int64_t heads, int64_t size, const std::string& tag) {
    if (!g_.rank3) return x;
    const std::vector<int64_t> shape = {0, 0, heads, size == kDynamicDim ? -1 : size};
    const ValueId split =
        emit("Reshape", tag + "_heads", {x, constant(tag + "_heads_shape", int64_tensor(shape))});
    return emit("Transpose", tag + "_bhsd", {split}, {{"perm", Attribute::of_ints({0, 2, 1, 3})}});
  }

  // Grouped-query attention: each of the kv heads of [B, kv_heads, T, size] repeated for its
  // q_heads / kv_heads query heads (h0, h0, h1, h1, ...).
  ValueId repeated_heads(ValueId x, int64_t size, const std::string& tag) {
    const int64_t group = g_.q_heads / g_.kv_heads;
    if (group == 1) return x;
    if (size == kDynamicDim && g_.total_length == kDynamicDim) {
      unsupported("grouped-query attention needs a static head size or sequence length");
    }
    const ValueId lifted = emit("Unsqueeze", tag + "_group_axis",
                                {x, constant(tag + "_group_axes", int64_tensor({2}))});
    const ValueId expanded =
        emit("Expand", tag + "_groups",
             {lifted, constant(tag + "_groups_shape", int64_tensor({1, 1, group, 1, 1}))});
    const std::vector<int64_t> shape =
        size != kDynamicDim ? std::vector<int64_t>{0, g_.q_heads, -1, size}
                            : std::vector<int64_t>{0, g_.q_heads, g_.total_length, -1};
    return emit("Reshape", tag + "_repeated",
                {expanded, constant(tag + "_repeated_shape", int64_tensor(shape))});
  }

  // The additive bias: the mask (a bool mask as 0 / -inf) plus the causal pattern; kNoValue
  // without either.
  ValueId attention_bias() {
    ValueId mask = kNoValue;
    if (g_.has_mask) {
      mask = node_.inputs[3];
      if (g_.mask_is_bool) {
        mask = emit("Where", "mask_bias",
                    {mask, constant("mask_keep", scalar_tensor(dtype_, 0.0)),
                     constant("mask_drop", scalar_tensor(dtype_, kMinusInfinity))});
      }
    }
    if (!g_.causal) return mask;
    const ValueId causal = causal_bias();
    return mask == kNoValue ? causal : emit("Add", "bias", {mask, causal});
  }

  // 0 where query i may see key j (j <= i + past length), -inf elsewhere: [Sq, T].
  ValueId causal_bias() {
    if (g_.q_length != kDynamicDim && g_.total_length != kDynamicDim) {
      auto tensor = std::make_shared<HostTensor>(dtype_, Shape{g_.q_length, g_.total_length});
      const std::vector<uint8_t> keep = scalar_bytes(dtype_, 0.0),
                                 drop = scalar_bytes(dtype_, kMinusInfinity);
      const size_t size = keep.size();
      for (int64_t i = 0; i < g_.q_length; ++i) {
        for (int64_t j = 0; j < g_.total_length; ++j) {
          const auto at = static_cast<size_t>(i * g_.total_length + j) * size;
          std::memcpy(tensor->bytes.data() + at, (j > i + g_.past_length ? drop : keep).data(),
                      size);
        }
      }
      return constant("causal_bias", tensor);
    }
    if (g_.past_length == kDynamicDim) unsupported("is_causal with a dynamic past length");
    // Dynamic lengths: Trilu of ones of shape [Sq, T], as exporters write it.
    const ValueId q_shape = emit("Shape", "q_shape", {node_.inputs[0]});
    const ValueId k_shape = emit("Shape", "k_shape", {node_.inputs[1]});
    const int64_t seq_axis = g_.rank3 ? 1 : 2;
    const auto dim = [&](ValueId shape, const std::string& tag) {
      return emit("Slice", tag,
                  {shape, constant(tag + "_start", int64_tensor({seq_axis})),
                   constant(tag + "_end", int64_tensor({seq_axis + 1}))});
    };
    ValueId keys = dim(k_shape, "kv_length");
    if (g_.past_length > 0)
      keys = emit("Add", "total_length",
                  {keys, constant("past_length", int64_tensor({g_.past_length}))});
    const ValueId dims = emit("Concat", "causal_dims", {dim(q_shape, "q_length"), keys},
                              {{"axis", Attribute::of_int(0)}});
    auto one = std::make_shared<HostTensor>(dtype_, Shape{1});
    const std::vector<uint8_t> one_bytes = scalar_bytes(dtype_, 1.0);
    std::memcpy(one->bytes.data(), one_bytes.data(), one_bytes.size());
    const ValueId ones =
        emit("ConstantOfShape", "causal_ones", {dims}, {{"value", Attribute::of_tensor(one)}});
    const ValueId lower =
        emit("Trilu", "causal_lower",
             {ones, constant("causal_offset", int64_tensor({g_.past_length}, true))},
             {{"upper", Attribute::of_int(0)}});
    const ValueId hidden = emit("Equal", "causal_hidden",
                                {lower, constant("causal_zero", scalar_tensor(dtype_, 0.0))});
    return emit("Where", "causal_bias",
                {hidden, constant("causal_drop", scalar_tensor(dtype_, kMinusInfinity)),
                 constant("causal_keep", scalar_tensor(dtype_, 0.0))});
  }

  ValueId constant(const std::string& tag, std::shared_ptr<HostTensor> tensor) {
    return graph_.add_constant(unique_value_name(graph_, node_.name + "/" + tag),
                               std::move(tensor));
  }

  // Appends a node `op` named after the Attention node and `tag`; its output is `output` or a new
  // value (dtype and shape come from inference after the splice).
  ValueId emit(const std::string& op, const std::string& tag, std::vector<ValueId> inputs,
               std::vector<std::pair<std::string, Attribute>> attrs = {},
               ValueId output = kNoValue) {
    ir::Node node;
    node.name = take_node_name(names_, node_.name + "/" + tag);
    node.op_type = op;
    node.inputs = std::move(inputs);
    for (auto& [name, value] : attrs) node.attrs.set(name, std::move(value));
    return append_node(graph_, *out_, std::move(node), output, dtype_);
  }

  ir::Graph& graph_;
  const ir::Node& node_;
  std::unordered_set<std::string>& names_;
  size_t count_ = 0;
  ops::OnnxAttentionGeometry g_;
  DType dtype_ = DType::kFloat32;
  bool kept_ = false;
  std::vector<ir::Node>* out_ = nullptr;
};

bool is_onnx_attention(const ir::Node& node) {
  return !node.removed && node.op_type == "Attention" && node.domain.empty();
}

}  // namespace

int lower_attention(ir::Graph& graph) {
  int count = 0;
  for (const ir::Node& node : graph.nodes) count += is_onnx_attention(node) ? 1 : 0;
  if (count == 0) return 0;

  std::unordered_set<std::string> names;
  for (const ir::Node& node : graph.nodes) {
    if (!node.removed) names.insert(node.name);
  }
  int lowered = 0;
  std::vector<ir::Node> rewritten;
  rewritten.reserve(graph.nodes.size() + 24 * static_cast<size_t>(count));
  std::vector<size_t> added;
  std::vector<std::pair<ValueId, Shape>> results;
  for (ir::Node& node : graph.nodes) {
    if (node.removed) continue;
    if (!is_onnx_attention(node)) {
      rewritten.push_back(std::move(node));
      continue;
    }
    AttentionLowering lowering(graph, node, names);
    if (lowering.kept()) {
      rewritten.push_back(std::move(node));
      continue;
    }
    for (ValueId out : node.outputs) results.emplace_back(out, graph.value(out).shape);
    const size_t first = rewritten.size();
    lowering.lower(rewritten);
    ++lowered;
    for (size_t n = first; n < rewritten.size(); ++n) added.push_back(n);
  }
  graph.nodes = std::move(rewritten);
  graph.compact();
  for (size_t index : added) infer_node_outputs(graph, index);
  for (const auto& [output, shape] : results) {
    const Shape& now = graph.value(output).shape;
    bool same = now.size() == shape.size();
    for (size_t i = 0; same && i < shape.size(); ++i)
      same = shape[i] == kDynamicDim || shape[i] == now[i];
    if (!same) {
      fail(ErrorCode::kInternal, "Attention lowering changed the shape of '",
           graph.value(output).name, "' from ", shape_to_string(shape), " to ",
           shape_to_string(now));
    }
  }
  return lowered;
}

}  // namespace kiln::passes
