#include "passes/patch_convolution.hpp"

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "passes/pass.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using ir::kNoValue;
using ir::ValueId;

// What the rewrite needs to know about one patch convolution.
struct Patch {
  ValueId input = kNoValue, weight = kNoValue, bias = kNoValue, output = kNoValue;
  int64_t batch = 0, channels = 0, height = 0, width = 0;  // X [N, C, H, W]; N may be dynamic
  int64_t patch_h = 0, patch_w = 0;                        // p, q
  int64_t out_channels = 0;                                // M
  // The token tail (see find_token_tail), when the conv has one: its nodes and the tokens value.
  int32_t tail_reshape = -1, tail_transpose = -1;
  ValueId tokens = kNoValue;
};

bool all_equal_to(const std::vector<int64_t>& values, int64_t expected) {
  for (int64_t v : values) {
    if (v != expected) return false;
  }
  return true;
}

// The padding is zero: explicit pads all 0, VALID, or SAME_* (which pads nothing once the strides
// equal the kernel and divide the input, checked by the caller).
bool pads_nothing(const AttributeMap& attrs) {
  const std::string auto_pad = attrs.get_string_or("auto_pad", "NOTSET");
  if (auto_pad == "VALID" || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") return true;
  return auto_pad == "NOTSET" && all_equal_to(attrs.get_ints_or("pads", {}), 0);
}

std::optional<Patch> patch_of(const ir::Graph& graph, const ir::Node& node, PatchKind kind) {
  if (node.removed || node.op_type != "Conv" || !node.domain.empty()) return std::nullopt;
  if (node.inputs.size() < 2 || node.inputs.size() > 4 || node.outputs.size() != 1)
    return std::nullopt;
  // A fused residual (input 3) is added before the activation; keep those convs as they are.
  if (node.inputs.size() == 4 && node.inputs[3] != kNoValue) return std::nullopt;
  const AttributeMap& attrs = node.attrs;
  const bool nhwc = attrs.get_string_or("kiln_layout", "NCHW") == "NHWC";
  if (nhwc && kind != PatchKind::kOnePixel) return std::nullopt;
  const std::string activation = attrs.get_string_or("kiln_activation", "");
  if (!activation.empty() && activation != "Relu") return std::nullopt;
  if (attrs.get_int_or("group", 1) != 1) return std::nullopt;
  if (!all_equal_to(attrs.get_ints_or("dilations", {}), 1)) return std::nullopt;
  if (!pads_nothing(attrs)) return std::nullopt;

  Patch p;
  p.input = node.inputs[0];
  p.weight = node.inputs[1];
  p.bias = node.inputs.size() > 2 ? node.inputs[2] : kNoValue;
  p.output = node.outputs[0];
  if (p.input == kNoValue || !graph.is_constant(p.weight)) return std::nullopt;
  const ir::Value& x = graph.value(p.input);
  const ir::Value& w = graph.value(p.weight);
  // C, H, W and the kernel static and non-empty; N static or dynamic (the Reshapes copy or infer
  // it), but not 0 (nothing to gain).
  if (x.shape.size() != 4 || w.shape.size() != 4 || x.shape[0] == 0 ||
      !shape_is_static(Shape(x.shape.begin() + 1, x.shape.end())) || !shape_is_static(w.shape) ||
      shape_numel(Shape(x.shape.begin() + 1, x.shape.end())) == 0 || shape_numel(w.shape) == 0) {
    return std::nullopt;
  }
  if (w.dtype != x.dtype || w.constant->shape != w.shape) return std::nullopt;
  // NHWC: X [N, H, W, C], W [M, kH, kW, C] (KRSC).
  p.batch = x.shape[0];
  p.channels = nhwc ? x.shape[3] : x.shape[1];
  p.height = nhwc ? x.shape[1] : x.shape[2];
  p.width = nhwc ? x.shape[2] : x.shape[3];
  p.out_channels = w.shape[0];
  p.patch_h = nhwc ? w.shape[1] : w.shape[2];
  p.patch_w = nhwc ? w.shape[2] : w.shape[3];
  // A 1x1 kernel is a patch only on a 1x1 feature map (a squeeze-excitation's 1x1 convs): there
  // the GEMM needs no rearranging at all, while cuDNN ran each in ~0.27 ms on H100 at batch 32.
  const bool one_pixel = p.patch_h == 1 && p.patch_w == 1 && p.height == 1 && p.width == 1;
  if (one_pixel != (kind == PatchKind::kOnePixel)) return std::nullopt;
  if ((nhwc ? w.shape[3] : w.shape[1]) != p.channels || (!one_pixel && (p.patch_h < 2 || p.patch_w < 2))) {
    return std::nullopt;
  }
  const std::vector<int64_t> kernel{p.patch_h, p.patch_w};
  if (attrs.has("kernel_shape") && attrs.get_ints("kernel_shape") != kernel) return std::nullopt;
  const std::vector<int64_t> strides = attrs.get_ints_or("strides", {1, 1});
  if (strides != kernel) return std::nullopt;
  if (p.height % p.patch_h != 0 || p.width % p.patch_w != 0) return std::nullopt;
  if (p.bias != kNoValue) {
    const ir::Value& b = graph.value(p.bias);
    if (b.dtype != x.dtype || b.shape != Shape{p.out_channels}) return std::nullopt;
  }
  return p;
}

// The only live node reading `value`, reading it once, when `value` is not a graph output; else -1.
int32_t sole_reader(const ir::Graph& graph, ValueId value) {
  if (graph.use_count(value) != 1 || is_graph_output(graph, value)) return -1;
  const std::vector<int32_t> readers = consumers_of(graph, value);
  return readers.size() == 1 ? readers[0] : -1;
}

// ViT's tokens: Y [N, M, h, w] -> Reshape [N, M, h*w] -> Transpose [0, 2, 1] -> [N, h*w, M]
// ("flatten(2).transpose(1, 2)"), Y and the Reshape's output each read only by the next node.
// The GEMM's rows already are those tokens, so one Reshape of its output replaces the conv's
// Transpose to NCHW and both nodes (two memory passes fewer).
void find_token_tail(const ir::Graph& graph, Patch& p) {
  const int64_t rows_h = p.height / p.patch_h, rows_w = p.width / p.patch_w;
  const int32_t reshape = sole_reader(graph, p.output);
  if (reshape < 0) return;
  const ir::Node& flatten = graph.nodes[static_cast<size_t>(reshape)];
  if (flatten.op_type != "Reshape" || !flatten.domain.empty() || flatten.inputs.empty() ||
      flatten.inputs[0] != p.output || flatten.outputs.size() != 1 ||
      graph.value(flatten.outputs[0]).shape != Shape{p.batch, p.out_channels, rows_h * rows_w}) {
    return;
  }
  const int32_t transpose = sole_reader(graph, flatten.outputs[0]);
  if (transpose < 0) return;
  const ir::Node& swap = graph.nodes[static_cast<size_t>(transpose)];
  if (swap.op_type != "Transpose" || !swap.domain.empty() || swap.outputs.size() != 1 ||
      !swap.attrs.has("perm") || swap.attrs.get_ints("perm") != std::vector<int64_t>{0, 2, 1} ||
      graph.value(swap.outputs[0]).shape != Shape{p.batch, rows_h * rows_w, p.out_channels}) {
    return;
  }
  p.tail_reshape = reshape;
  p.tail_transpose = transpose;
  p.tokens = swap.outputs[0];
}

// W [M, K] (K = C*p*q, row-major as W [M, C, p, q]) transposed to [K, M], in W's dtype.
std::shared_ptr<HostTensor> transposed_weight(const HostTensor& weight, int64_t m, int64_t k) {
  auto out = std::make_shared<HostTensor>(weight.dtype, Shape{k, m});
  const size_t element = dtype_size(weight.dtype);
  const uint8_t* in = weight.bytes.data();
  uint8_t* dst = out->bytes.data();
  for (int64_t row = 0; row < m; ++row) {
    for (int64_t col = 0; col < k; ++col) {
      std::memcpy(dst + static_cast<size_t>(col * m + row) * element,
                  in + static_cast<size_t>(row * k + col) * element, element);
    }
  }
  return out;
}

// Emits the replacement of one conv into `out`; names come from `node_names` (kept unique).
class PatchRewriter {
 public:
  PatchRewriter(ir::Graph& graph, std::unordered_set<std::string>& node_names)
      : graph_(graph), node_names_(node_names) {}

  void rewrite(const ir::Node& conv, const Patch& p, std::vector<ir::Node>& out) {
    const int64_t rows_h = p.height / p.patch_h, rows_w = p.width / p.patch_w;
    const int64_t depth = p.channels * p.patch_h * p.patch_w;
    const std::string& base = conv.name;
    // On a 1x1 map with a 1x1 kernel, X [N, C, 1, 1] already is the GEMM's [N, C] rows.
    const bool one_pixel = p.height == 1 && p.width == 1 && p.patch_h == 1 && p.patch_w == 1;
    // The batch is copied (0) or inferred (-1) so that a dynamic N stays dynamic.
    ValueId v = p.input;
    if (!one_pixel) {
      v = reshape(out, base + "/patch_split", v, {0, p.channels, rows_h, p.patch_h, rows_w, p.patch_w});
      v = transpose(out, base + "/patch_gather", v, {0, 2, 4, 1, 3, 5});
    }
    v = reshape(out, base + "/patch_rows", v, {-1, depth});

    ir::Node matmul;
    // The GEMM does the conv's work: it keeps the conv's name (profiles read naturally).
    matmul.name = node_name(base);
    matmul.op_type = "MatMul";
    const ir::Value& w = graph_.value(p.weight);
    const std::string weight_name = unique_value_name(graph_, w.name + "/patch_matrix");
    std::shared_ptr<HostTensor> matrix = transposed_weight(*w.constant, p.out_channels, depth);
    matmul.inputs = {v, graph_.add_constant(weight_name, std::move(matrix))};
    if (p.bias != kNoValue) matmul.inputs.push_back(p.bias);
    for (const char* carried : {"kiln_activation", "kiln_allow_tf32"}) {
      if (conv.attrs.has(carried)) matmul.attrs.set(carried, *conv.attrs.find(carried));
    }
    v = emit(out, std::move(matmul), kNoValue);

    if (p.tokens != kNoValue) {
      reshape(out, base + "/tokens", v, {-1, rows_h * rows_w, p.out_channels}, p.tokens);
      return;
    }
    if (one_pixel) {
      const bool nhwc = conv.attrs.get_string_or("kiln_layout", "NCHW") == "NHWC";
      reshape(out, base + "/to_map", v,
              nhwc ? std::vector<int64_t>{-1, 1, 1, p.out_channels} : std::vector<int64_t>{-1, p.out_channels, 1, 1},
              p.output);
      return;
    }
    v = reshape(out, base + "/patch_grid", v, {-1, rows_h, rows_w, p.out_channels});
    transpose(out, base + "/to_nchw", v, {0, 3, 1, 2}, p.output);
  }

 private:
  std::string node_name(const std::string& base) { return take_node_name(node_names_, base); }

  // Appends `node` writing `output` (a new value named after the node when kNoValue; inference
  // gives its dtype and shape).
  ValueId emit(std::vector<ir::Node>& out, ir::Node node, ValueId output) {
    return append_node(graph_, out, std::move(node), output, DType::kFloat32);
  }

  ValueId reshape(std::vector<ir::Node>& out, const std::string& name, ValueId input,
                  const std::vector<int64_t>& dims, ValueId output = kNoValue) {
    ir::Node node;
    node.name = node_name(name);
    node.op_type = "Reshape";
    auto target =
        std::make_shared<HostTensor>(DType::kInt64, Shape{static_cast<int64_t>(dims.size())});
    std::memcpy(target->bytes.data(), dims.data(), dims.size() * sizeof(int64_t));
    node.inputs = {input,
                   graph_.add_constant(unique_value_name(graph_, node.name + "/shape"), target)};
    return emit(out, std::move(node), output);
  }

  ValueId transpose(std::vector<ir::Node>& out, const std::string& name, ValueId input,
                    std::vector<int64_t> perm, ValueId output = kNoValue) {
    ir::Node node;
    node.name = node_name(name);
    node.op_type = "Transpose";
    node.inputs = {input};
    node.attrs.set("perm", Attribute::of_ints(std::move(perm)));
    return emit(out, std::move(node), output);
  }

  ir::Graph& graph_;
  std::unordered_set<std::string>& node_names_;
};

}  // namespace

int convert_patch_convolutions_to_matmul(ir::Graph& graph, PatchKind kind) {
  std::vector<std::optional<Patch>> patches;
  patches.reserve(graph.nodes.size());
  int count = 0;
  std::vector<bool> absorbed(graph.nodes.size(), false);  // token tails replaced by a Reshape
  for (const ir::Node& node : graph.nodes) {
    patches.push_back(patch_of(graph, node, kind));
    if (!patches.back()) continue;
    ++count;
    if (kind != PatchKind::kPatchEmbedding) continue;
    find_token_tail(graph, *patches.back());
    if (patches.back()->tokens == kNoValue) continue;
    absorbed[static_cast<size_t>(patches.back()->tail_reshape)] = true;
    absorbed[static_cast<size_t>(patches.back()->tail_transpose)] = true;
  }
  if (count == 0) return 0;

  // Names of the live nodes that stay; a rewritten conv's name is free for its MatMul.
  std::unordered_set<std::string> node_names;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!graph.nodes[i].removed && !patches[i]) node_names.insert(graph.nodes[i].name);
  }
  PatchRewriter rewriter(graph, node_names);
  std::vector<ir::Node> rewritten;
  rewritten.reserve(graph.nodes.size() + 5 * static_cast<size_t>(count));
  std::vector<size_t> added;  // indices in `rewritten` of the new nodes
  std::vector<std::pair<ValueId, Shape>> outputs;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    ir::Node& node = graph.nodes[i];
    if (node.removed || absorbed[i]) continue;
    if (!patches[i]) {
      rewritten.push_back(std::move(node));
      continue;
    }
    const ValueId result = patches[i]->tokens != kNoValue ? patches[i]->tokens : patches[i]->output;
    outputs.emplace_back(result, graph.value(result).shape);
    const size_t first = rewritten.size();
    rewriter.rewrite(node, *patches[i], rewritten);
    for (size_t n = first; n < rewritten.size(); ++n) added.push_back(n);
  }
  graph.nodes = std::move(rewritten);
  graph.compact();
  for (size_t index : added) infer_node_outputs(graph, index);
  for (const auto& [output, shape] : outputs) {
    const ir::Value& value = graph.value(output);
    if (value.shape != shape) {
      fail(ErrorCode::kInternal, "patch convolution rewrite changed the shape of '", value.name,
           "' from ", shape_to_string(shape), " to ", shape_to_string(value.shape));
    }
  }
  return count;
}

}  // namespace kiln::passes
