#include "frontend/onnx/flex_attention.hpp"

#include <cmath>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.hpp"

namespace kiln::onnx {
namespace {

// One FlexAttention expansion: each op() adds a node to the host and returns its output's name.
class FlexAttentionExpansion {
 public:
  FlexAttentionExpansion(const FlatNode& node, ImportGraphHost& host) : node_(node), host_(host) {}

  void run();

 private:
  template <typename... Parts>
  [[noreturn]] void refuse(Parts&&... parts) const {
    fail(ErrorCode::kUnsupported, host_.source(), ": node '", node_.name,
         "' (FlexAttention): ", std::forward<Parts>(parts)...);
  }
  template <typename... Parts>
  [[noreturn]] void fail_with(ErrorCode code, Parts&&... parts) const {
    fail(code, host_.source(), ": node '", node_.name,
         "' (FlexAttention): ", std::forward<Parts>(parts)...);
  }

  std::string op(const std::string& op_type, const std::vector<std::string>& inputs,
                 AttributeMap attrs = {}, std::string output = "") {
    const std::string node_name = detail::concat(node_.name, "/", op_type, "_", count_++);
    if (output.empty()) output = host_.flattener().unique_name(node_name);
    host_.add_op(node_name, op_type, inputs, {output}, std::move(attrs));
    return output;
  }
  std::string cast(const std::string& value, DType to, std::string output = "") {
    AttributeMap attrs;
    attrs.set("to", Attribute::of_int(static_cast<int64_t>(to)));
    return op("Cast", {value}, std::move(attrs), std::move(output));
  }
  std::string ints(const std::vector<int64_t>& values) {
    auto t =
        std::make_shared<HostTensor>(DType::kInt64, Shape{static_cast<int64_t>(values.size())});
    for (size_t i = 0; i < values.size(); ++i) t->data<int64_t>()[i] = values[i];
    return host_.add_constant(node_.name + "/ints", std::move(t));
  }

  ir::Value input(size_t index, std::string_view what);
  std::string repeat_heads(const std::string& value, int64_t group);
  // Inlines the body of graph attribute `name` (if present) on `value`; returns its output in
  // `dtype`.
  std::string modify(const std::string& value, const proto::Attribute* body, std::string_view name,
                     DType dtype);

  const FlatNode& node_;
  ImportGraphHost& host_;
  size_t count_ = 0;
};

bool is_float_type(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16 ||
         dtype == DType::kFloat64;
}

ir::Value FlexAttentionExpansion::input(size_t index, std::string_view what) {
  const std::string& name = node_.inputs[index];
  const ir::Value value = host_.evaluate(name);
  if (value.shape.size() != 4) {
    refuse(what, " '", name, "' has rank ", value.shape.size(),
           "; FlexAttention needs rank-4 inputs");
  }
  if (!is_float_type(value.dtype)) {
    refuse(what, " '", name, "' is ", dtype_name(value.dtype),
           "; kiln runs FlexAttention on float16, bfloat16, float32 and float64");
  }
  return value;
}

// (B, Hkv, S, D) -> (B, Hkv * group, S, D), each head repeated `group` times in a row: query head
// h reads K/V head floor(h / group).
std::string FlexAttentionExpansion::repeat_heads(const std::string& value, int64_t group) {
  const std::string unsqueezed = op("Unsqueeze", {value, ints({2})});
  const std::string expanded = op("Expand", {unsqueezed, ints({1, 1, group, 1, 1})});
  const std::string shape = op("Mul", {op("Shape", {value}), ints({1, group, 1, 1})});
  return op("Reshape", {expanded, shape});
}

std::string FlexAttentionExpansion::modify(const std::string& value, const proto::Attribute* body,
                                           std::string_view name, DType dtype) {
  if (body == nullptr) return value;
  const proto::Graph& graph = *body->g;
  if (graph.inputs.size() != 1 || graph.outputs.size() != 1) {
    fail_with(ErrorCode::kCorruptFile, "its ", name, " graph declares ", graph.inputs.size(),
              " inputs and ", graph.outputs.size(), " outputs; it needs exactly one of each");
  }
  const InlinedSubgraph inlined = host_.flattener().inline_subgraph(
      graph, node_, {value}, detail::concat(node_.name, "/", name, "/"));
  host_.add_subgraph(inlined);
  const std::string& out = inlined.outputs[0];
  const ir::Value result = host_.evaluate(out);
  if (result.shape.size() != 4) {
    fail_with(ErrorCode::kInvalidArgument, "its ", name, " graph returns rank ",
              result.shape.size(), "; it must keep the rank-4 shape of its input");
  }
  return result.dtype == dtype ? out : cast(out, dtype);
}

void FlexAttentionExpansion::run() {
  if (node_.opset != 1) {
    refuse(node_.opset == 0
               ? std::string("the model does not import the ai.onnx.preview domain")
               : detail::concat("ai.onnx.preview opset ", node_.opset,
                                " is not supported by kiln (FlexAttention is opset 1)"));
  }
  if (node_.inputs.size() != 3 || node_.outputs.size() != 1) {
    fail_with(ErrorCode::kCorruptFile, "has ", node_.inputs.size(), " inputs and ",
              node_.outputs.size(), " outputs; expected Q, K, V and Y");
  }
  for (const std::string& in : node_.inputs) {
    if (in.empty()) fail_with(ErrorCode::kCorruptFile, "inputs Q, K and V are all required");
  }
  if (node_.outputs[0].empty()) fail_with(ErrorCode::kCorruptFile, "output Y is missing");

  const proto::Attribute* scale_attr = nullptr;
  const proto::Attribute* score_mod = nullptr;
  const proto::Attribute* prob_mod = nullptr;
  const proto::Attribute* precision_attr = nullptr;
  for (const FlatAttribute& attr : node_.attributes) {
    const proto::Attribute& a = *attr.value;
    const auto expect_type = [&](int32_t type, std::string_view type_name) {
      if (a.type != type) {
        fail_with(ErrorCode::kCorruptFile, "attribute '", attr.name, "' must be ", type_name);
      }
      return &a;
    };
    if (attr.name == "scale") {
      scale_attr = expect_type(proto::Attribute::kFloat, "a FLOAT");
    } else if (attr.name == "softmax_precision") {
      precision_attr = expect_type(proto::Attribute::kInt, "an INT");
    } else if (attr.name == "score_mod" || attr.name == "prob_mod") {
      expect_type(proto::Attribute::kGraph, "a GRAPH");
      if (!a.g) fail_with(ErrorCode::kCorruptFile, "attribute '", attr.name, "' has no graph");
      (attr.name == "score_mod" ? score_mod : prob_mod) = &a;
    } else {
      refuse("attribute '", attr.name,
             "' is not supported by kiln (FlexAttention takes scale, score_mod, prob_mod and "
             "softmax_precision)");
    }
  }

  const ir::Value q = input(0, "Q");
  const ir::Value k = input(1, "K");
  const ir::Value v = input(2, "V");
  if (k.dtype != q.dtype || v.dtype != q.dtype) {
    fail_with(ErrorCode::kInvalidArgument, "Q, K and V must share one type; got ",
              dtype_name(q.dtype), ", ", dtype_name(k.dtype), " and ", dtype_name(v.dtype));
  }
  const auto dims_differ = [](int64_t a, int64_t b) {
    return a != kDynamicDim && b != kDynamicDim && a != b;
  };
  if (dims_differ(k.shape[1], v.shape[1]) || dims_differ(k.shape[2], v.shape[2])) {
    fail_with(ErrorCode::kInvalidArgument,
              "K and V must share their head count and sequence length; got K ",
              shape_to_string(k.shape), " and V ", shape_to_string(v.shape));
  }
  if (dims_differ(q.shape[3], k.shape[3])) {
    fail_with(ErrorCode::kInvalidArgument, "Q and K must share their head size; got Q ",
              shape_to_string(q.shape), " and K ", shape_to_string(k.shape));
  }

  DType softmax_type = q.dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  if (precision_attr) {
    const int64_t p = precision_attr->i;
    if (p != static_cast<int64_t>(DType::kFloat32) && p != static_cast<int64_t>(DType::kFloat16) &&
        p != static_cast<int64_t>(DType::kBFloat16) && p != static_cast<int64_t>(DType::kFloat64)) {
      refuse("softmax_precision ", p,
             " is not supported (FLOAT 1, FLOAT16 10, BFLOAT16 16 or DOUBLE 11)");
    }
    softmax_type = static_cast<DType>(p);
  }

  float scale = 0.0f;
  if (scale_attr) {
    scale = scale_attr->f;
  } else {
    if (q.shape[3] == kDynamicDim && k.shape[3] == kDynamicDim) {
      refuse(
          "without a 'scale' attribute kiln needs the head size (Q's last dim) at build time; Q "
          "is ",
          shape_to_string(q.shape));
    }
    const int64_t head_size = q.shape[3] != kDynamicDim ? q.shape[3] : k.shape[3];
    scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_size)));
  }

  std::string keys = node_.inputs[1];
  std::string values = node_.inputs[2];
  const int64_t q_heads = q.shape[1];
  const int64_t kv_heads = k.shape[1] != kDynamicDim ? k.shape[1] : v.shape[1];
  if (q_heads == kDynamicDim || kv_heads == kDynamicDim) {
    refuse("kiln needs the query and key/value head counts at build time; got Q ",
           shape_to_string(q.shape), " and K ", shape_to_string(k.shape));
  }
  if (q_heads != kv_heads) {
    if (kv_heads <= 0 || q_heads % kv_heads != 0) {
      fail_with(ErrorCode::kInvalidArgument, "q_num_heads ", q_heads,
                " must be a multiple of kv_num_heads ", kv_heads);
    }
    keys = repeat_heads(keys, q_heads / kv_heads);
    values = repeat_heads(values, q_heads / kv_heads);
  }

  // Q and K are each scaled by sqrt(scale) (computed in float32, then rounded to the input type),
  // which keeps 16-bit scores in range as the spec's reference does.
  auto sqrt_scale = std::make_shared<HostTensor>(DType::kFloat32, Shape{});
  *sqrt_scale->data<float>() = std::sqrt(scale);
  std::string factor = host_.add_constant(node_.name + "/sqrt_scale", std::move(sqrt_scale));
  if (q.dtype != DType::kFloat32) factor = cast(factor, q.dtype);
  AttributeMap transpose;
  transpose.set("perm", Attribute::of_ints({0, 1, 3, 2}));
  const std::string scaled_keys =
      op("Transpose", {op("Mul", {keys, factor})}, std::move(transpose));
  std::string scores = op("MatMul", {op("Mul", {node_.inputs[0], factor}), scaled_keys});
  if (softmax_type != q.dtype) scores = cast(scores, softmax_type);
  scores = modify(scores, score_mod, "score_mod", softmax_type);
  AttributeMap softmax;
  softmax.set("axis", Attribute::of_int(-1));
  std::string probs = op("Softmax", {scores}, std::move(softmax));
  probs = modify(probs, prob_mod, "prob_mod", softmax_type);
  if (softmax_type != v.dtype) values = cast(values, softmax_type);
  if (softmax_type == v.dtype) {
    op("MatMul", {probs, values}, {}, node_.outputs[0]);
  } else {
    cast(op("MatMul", {probs, values}), v.dtype, node_.outputs[0]);
  }
}

}  // namespace

bool is_flex_attention(const std::string& op_type, const std::string& domain) {
  return op_type == "FlexAttention" && domain == kPreviewDomain;
}

void expand_flex_attention(const FlatNode& node, ImportGraphHost& host) {
  FlexAttentionExpansion(node, host).run();
}

}  // namespace kiln::onnx
