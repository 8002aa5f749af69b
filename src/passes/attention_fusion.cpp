#include "passes/attention_fusion.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/host_tensor.hpp"
#include "ops/attention.hpp"
#include "passes/attention_lowering.hpp"
#include "passes/pass.hpp"
#include "passes/strided_view.hpp"

namespace kiln::passes {
namespace {

using ir::kNoValue;
using ir::ValueId;

// Canonical dims of an attention operand, and their letters in FusedAttention's layouts.
constexpr int kBatch = 0, kHead = 1, kSeq = 2, kFeature = 3;
constexpr char kLetters[] = "BHSD";
constexpr int kAbsent = -1;

// ---- IR helpers ---------------------------------------------------------------------------------

const ir::Node* producer_of(const ir::Graph& graph, ValueId id) {
  if (id < 0) return nullptr;
  const int32_t index = graph.value(id).producer;
  if (index < 0) return nullptr;
  const ir::Node& node = graph.nodes[static_cast<size_t>(index)];
  return node.removed ? nullptr : &node;
}

// Read by exactly one live node (once) and not a graph output: safe to fold into the fused node.
bool single_use(const ir::Graph& graph, ValueId id) {
  return !is_graph_output(graph, id) && graph.use_count(id) == 1;
}

bool is_float(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

bool is_static(const Shape& shape) {
  return std::none_of(shape.begin(), shape.end(), [](int64_t d) { return d == kDynamicDim; });
}

// Dropout that is the identity: training_mode absent or a constant false, mask output unread.
bool is_inference_dropout(const ir::Graph& graph, const ir::Node& node) {
  if (node.op_type != "Dropout" || node.inputs.empty()) return false;
  if (node.inputs.size() > 2 && node.inputs[2] != kNoValue) {
    if (!graph.is_constant(node.inputs[2])) return false;
    const HostTensor& flag = *graph.value(node.inputs[2]).constant;
    if (flag.dtype != DType::kBool || flag.bytes.size() != 1 || flag.bytes[0] != 0) return false;
  }
  return node.outputs.size() < 2 || graph.use_count(node.outputs[1]) == 0;
}

// A Cast node's target dtype.
DType cast_target(const ir::Node& node) {
  return static_cast<DType>(node.attrs.get_int_or("to", 0));
}

// A floating constant whose every element is 0 (any shape).
bool all_zero_constant(const ir::Graph& graph, ValueId id) {
  if (id == kNoValue || !graph.is_constant(id)) return false;
  const HostTensor& tensor = *graph.value(id).constant;
  if (!is_float(tensor.dtype)) return false;
  const TensorView view = view_of(tensor);
  for (int64_t i = 0; i < tensor.numel(); ++i)
    if (read_as_double(view, i) != 0.0) return false;
  return true;
}

// The last-axis reduction of a reduce node (axes as input 1 or attribute, keepdims 1).
bool reduces_last_axis_keeping_it(const ir::Graph& graph, const ir::Node& node, int64_t rank) {
  if (node.attrs.get_int_or("keepdims", 1) != 1) return false;
  std::vector<int64_t> axes;
  if (node.inputs.size() > 1 && node.inputs[1] != kNoValue) {
    if (!graph.is_constant(node.inputs[1])) return false;
    axes = read_indices(view_of(*graph.value(node.inputs[1]).constant));
  } else if (node.attrs.has("axes")) {
    axes = node.attrs.get_ints("axes");
  }
  return axes.size() == 1 && (axes[0] == -1 || axes[0] == rank - 1);
}

// PyTorch's safe softmax (its math SDPA since 2.5) zeroes the rows whose every score is -inf:
//   Where(all(x == -inf, last axis), 0, P), exported as Equal(x, -inf) → Not / Cast →
//   ReduceMax or ReduceMin over the last axis → Cast / Not → Where. Up to NaN inputs this is
//   what nan_to_zero computes: such rows are exactly the ones whose softmax is NaN.
struct RowTest {
  std::vector<int32_t> nodes;    // Equal up to the step before the Where
  int32_t where = -1;            // the Where reading the test as its condition
  bool true_when_masked = true;  // the condition is all(x == -inf), else its negation
};

std::optional<RowTest> match_row_test(const ir::Graph& graph, int32_t equal_index, ValueId x,
                                      int64_t rank) {
  const ir::Node& equal = graph.nodes[static_cast<size_t>(equal_index)];
  if (equal.op_type != "Equal" || equal.inputs.size() != 2) return std::nullopt;
  const ValueId other = equal.inputs[0] == x ? equal.inputs[1] : equal.inputs[0];
  const std::optional<double> value = one_element_float(graph, other);
  if (!value || !std::isinf(*value) || *value > 0) return std::nullopt;
  RowTest test;
  test.nodes.push_back(equal_index);
  bool negated = false, reduced = false;  // the value is negated ^ (x == -inf), or after the
  ValueId current = equal.outputs.at(0);  // reduction negated ^ all(x == -inf)
  for (;;) {
    if (!single_use(graph, current)) return std::nullopt;
    const int32_t reader = consumers_of(graph, current).at(0);
    const ir::Node& node = graph.nodes[static_cast<size_t>(reader)];
    if (node.op_type == "Where") {
      if (!reduced || node.inputs.empty() || node.inputs[0] != current) return std::nullopt;
      test.where = reader;
      test.true_when_masked = !negated;
      return test;
    }
    if (node.op_type == "Not") {
      negated = !negated;
    } else if (node.op_type == "ReduceMax" || node.op_type == "ReduceMin") {
      // all(e) is ReduceMin(e) or Not(ReduceMax(Not(e))); any other combination is not it.
      if (reduced || !reduces_last_axis_keeping_it(graph, node, rank)) return std::nullopt;
      if (node.op_type == "ReduceMin" && negated) return std::nullopt;
      if (node.op_type == "ReduceMax" && !negated) return std::nullopt;
      reduced = true;
    } else if (node.op_type != "Cast") {
      return std::nullopt;
    }
    test.nodes.push_back(reader);
    current = node.outputs.at(0);
  }
}

// ---- operands read through views ----------------------------------------------------------------

// A view's dims as the canonical (batch, head, sequence, feature) dims of an attention operand:
// one stride each (kAbsent for a dim of size 1), or nullopt when a dim has several strides.
struct CanonicalView {
  ValueId source = kNoValue;
  int64_t offset = 0;
  int64_t size[4] = {1, 1, 1, 1};
  int64_t stride[4] = {kAbsent, kAbsent, kAbsent, kAbsent};
  double scale = 1.0;
  int group = 0;
};

// `roles[k]` is the canonical dim of the operand's dim k (rank 3 operands have no head dim).
std::optional<CanonicalView> canonical(const ir::Graph& graph, const ViewStop& stop,
                                       const Shape& operand, const std::vector<int>& roles) {
  CanonicalView out;
  out.source = stop.view.source;
  out.offset = stop.view.offset;
  out.scale = stop.scale;
  out.group = stop.group;
  if (stop.view.dims.size() != roles.size() || !is_static(graph.value(out.source).shape))
    return std::nullopt;
  for (size_t k = 0; k < roles.size(); ++k) {
    const std::vector<ViewFactor>& factors = stop.view.dims[k];
    if (factors.size() > 1) return std::nullopt;
    out.size[roles[k]] = operand[k];
    if (!factors.empty()) out.stride[roles[k]] = factors[0].stride;
  }
  return out;
}

// FusedAttention's layout letters for canonical dims listed outermost first (`present`), with the
// dims missing from it (size 1) put after their canonical predecessor.
std::string layout_letters(std::vector<int> present) {
  for (int dim = 0; dim < 4; ++dim) {
    if (std::find(present.begin(), present.end(), dim) != present.end()) continue;
    const auto after =
        dim == 0 ? present.begin() : std::find(present.begin(), present.end(), dim - 1) + 1;
    present.insert(after, dim);
  }
  std::string letters;
  for (int dim : present) letters += kLetters[dim];
  return letters;
}

// The canonical dims' `size`s in the memory order of `letters`.
Shape memory_shape(const int64_t (&size)[4], const std::string& letters) {
  Shape shape;
  for (char letter : letters) shape.push_back(size[std::string_view(kLetters).find(letter)]);
  return shape;
}

// How the fused node reads one of Q, K, V on its own: a tensor whose memory is a dense
// permutation of the canonical dims.
struct SeparateRead {
  ValueId source = kNoValue;
  double scale = 1.0;
  std::string layout;  // FusedAttention letters, e.g. "BSHD"
  Shape shape;         // the 4-d memory shape the node's input must have
};

std::optional<SeparateRead> separate_read(const ir::Graph& graph, const CanonicalView& v) {
  if (v.offset != 0) return std::nullopt;
  std::vector<int> present;
  for (int dim = 0; dim < 4; ++dim)
    if (v.size[dim] > 1) present.push_back(dim);
  std::sort(present.begin(), present.end(),
            [&](int a, int b) { return v.stride[a] > v.stride[b]; });
  int64_t expected = 1;
  for (size_t i = present.size(); i-- > 0;) {
    if (v.stride[present[i]] != expected) return std::nullopt;
    expected *= v.size[present[i]];
  }
  if (expected != shape_numel(graph.value(v.source).shape)) return std::nullopt;
  SeparateRead read;
  read.source = v.source;
  read.scale = v.scale;
  read.layout = layout_letters(present);
  read.shape = memory_shape(v.size, read.layout);
  return read;
}

// The stops of an operand's trace as canonical views (those that have one).
std::vector<CanonicalView> canonical_stops(const ir::Graph& graph, ValueId operand,
                                           const std::vector<int>& roles, bool strip_scales) {
  std::vector<CanonicalView> out;
  const Shape& shape = graph.value(operand).shape;
  for (const ViewStop& stop : trace_view(graph, operand, strip_scales)) {
    if (auto view = canonical(graph, stop, shape, roles)) out.push_back(*view);
  }
  return out;
}

// The best separate read among an operand's stops: feature dim innermost first (what the
// tensor-core kernel needs), then the deepest group (the fewest copies left in front of the
// node), then a tensor already of the memory shape (no Reshape to add), then the deepest.
std::optional<SeparateRead> best_separate_read(const ir::Graph& graph,
                                               const std::vector<CanonicalView>& stops) {
  std::optional<SeparateRead> best;
  std::tuple<bool, int, bool> best_key{};
  for (const CanonicalView& stop : stops) {
    std::optional<SeparateRead> read = separate_read(graph, stop);
    if (!read) continue;
    const std::tuple<bool, int, bool> key{read->layout.back() == 'D', stop.group,
                                          graph.value(read->source).shape == read->shape};
    if (!best || key >= best_key) {
      best = std::move(read);
      best_key = key;
    }
  }
  return best;
}

// Q, K and V as the three slices of one tensor (a QKV projection read in place): its memory holds
// B, S, T (which of q, k, v), H and D densely in some order, the layout (FusedAttention's
// qkv_layout), e.g. timm's [B, S, 3, H, D] ("BSTHD") or nn.MultiheadAttention's [S, B, 3, H, D]
// ("SBTHD").
struct PackedRead {
  ValueId source = kNoValue;
  double scale = 1.0;
  Shape shape;         // the dims in `layout` order
  std::string layout;  // B, S, T, H and D, outermost first
};

// The dense layout of Q's view plus T of `t_stride`, or nullopt when the five do not tile the
// source's memory without gaps.
std::optional<PackedRead> dense_packed_layout(const ir::Graph& graph, const CanonicalView& q, int64_t t_stride) {
  struct Letter {
    char name;
    int64_t size, stride;
  };
  std::vector<Letter> placed, unit;
  const std::pair<char, int> dims[4] = {{'B', kBatch}, {'S', kSeq}, {'H', kHead}, {'D', kFeature}};
  for (const auto& [name, dim] : dims) {
    (q.size[dim] > 1 ? placed : unit).push_back(Letter{name, q.size[dim], q.stride[dim]});
  }
  placed.push_back(Letter{'T', 3, t_stride});
  std::sort(placed.begin(), placed.end(), [](const Letter& a, const Letter& b) { return a.stride > b.stride; });
  int64_t expected = 1;
  for (size_t i = placed.size(); i-- > 0;) {
    if (placed[i].stride != expected) return std::nullopt;
    expected *= placed[i].size;
  }
  if (expected != shape_numel(graph.value(q.source).shape)) return std::nullopt;
  PackedRead read;
  read.source = q.source;
  for (const std::vector<Letter>* letters : {&unit, &placed}) {
    for (const Letter& l : *letters) {
      read.layout += l.name;
      read.shape.push_back(l.size);
    }
  }
  return read;
}

std::optional<PackedRead> packed_read(const ir::Graph& graph, const std::vector<CanonicalView>& q,
                                      const std::vector<CanonicalView>& k,
                                      const std::vector<CanonicalView>& v) {
  // The deepest stop first: reading further up leaves fewer copies in front of the node.
  for (auto it = q.rbegin(); it != q.rend(); ++it) {
    const CanonicalView& qv = *it;
    if (qv.offset != 0) continue;
    // K and V: the same view of the same tensor, one and two T-strides further on.
    const auto same_view = [&](const CanonicalView& view) {
      if (view.source != qv.source) return false;
      for (int d = 0; d < 4; ++d) {
        if (view.size[d] != qv.size[d]) return false;
        if (view.size[d] > 1 && view.stride[d] != qv.stride[d]) return false;
      }
      return true;
    };
    for (const CanonicalView& kv : k) {
      if (!same_view(kv) || kv.offset <= 0) continue;
      const int64_t t_stride = kv.offset;
      const auto vv = std::find_if(v.begin(), v.end(), [&](const CanonicalView& c) {
        return same_view(c) && c.offset == 2 * t_stride;
      });
      if (vv == v.end()) continue;
      std::optional<PackedRead> read = dense_packed_layout(graph, qv, t_stride);
      if (!read) continue;
      read->scale = qv.scale * kv.scale;
      return read;
    }
  }
  return std::nullopt;
}

// ---- the match ----------------------------------------------------------------------------------

struct Match {
  int rank = 4;  // of the scores (3: [B·H, Sq, Sk] operands, one head per batch entry)
  DType dtype = DType::kFloat32;
  ValueId q = kNoValue, key_t = kNoValue, v = kNoValue;  // the MatMul operands
  std::vector<ValueId> masks;
  double scale = 1.0;  // scalar factors between the Add tree and the MatMul
  bool nan_to_zero = false;
  ValueId scores = kNoValue;   // the product's shape: [B, H, Sq, Sk] or [N, Sq, Sk]
  ValueId product = kNoValue;  // the Q·Kᵀ MatMul's output
  ValueId output = kNoValue;   // what the fused node computes (the PV MatMul's or Transpose's)
  std::vector<int> out_order;  // the output's dims as canonical dims, outermost first
  int32_t last_node = -1;      // where the fused node goes
  std::vector<int32_t> chain;  // nodes the fused node replaces
};

// product := MatMul(Q', Kᵀ') scaled by Mul/Div by one-element constants, every value on the way
// read only here. Sets m.product and folds the factors into m.scale.
bool match_product(const ir::Graph& graph, ValueId id, const Shape& shape, Match& m) {
  ValueId current = id;
  std::vector<int32_t> nodes;
  double scale = 1.0;
  for (;;) {
    const ir::Node* step = producer_of(graph, current);
    if (step == nullptr) return false;
    if (step->op_type == "MatMul" && step->inputs.size() == 2) break;
    if (step->op_type != "Mul" && step->op_type != "Div") return false;
    const ValueId a = step->inputs[0], b = step->inputs[1];
    std::optional<double> factor;
    ValueId rest = kNoValue;
    if (auto value = one_element_float(graph, b)) {
      factor = step->op_type == "Mul" ? *value : 1.0 / *value;
      rest = a;
    } else if (step->op_type == "Mul") {
      factor = one_element_float(graph, a);
      rest = b;
    }
    if (!factor || graph.value(rest).shape != shape || !single_use(graph, rest)) return false;
    nodes.push_back(graph.value(current).producer);
    scale *= *factor;
    current = rest;
  }
  m.product = current;
  m.scale *= scale;
  m.chain.insert(m.chain.end(), nodes.begin(), nodes.end());
  m.chain.push_back(graph.value(current).producer);
  return true;
}

// scores := an Add tree of one product and masks (`id` is read only by the pattern).
bool match_add_tree(const ir::Graph& graph, ValueId id, const Shape& shape, Match& m) {
  const ir::Node* node = producer_of(graph, id);
  if (node == nullptr || node->op_type != "Add" || node->inputs.size() != 2)
    return m.product == kNoValue && match_product(graph, id, shape, m);
  if (graph.value(id).shape != shape || node->inputs[0] == node->inputs[1]) return false;
  m.chain.push_back(graph.value(id).producer);
  for (ValueId side : node->inputs) {
    if (m.product == kNoValue && single_use(graph, side) && graph.value(side).shape == shape) {
      // The product, or a subtree holding it; else (undone) a mask.
      const size_t chain = m.chain.size(), masks = m.masks.size();
      const double scale = m.scale;
      if (match_add_tree(graph, side, shape, m)) continue;
      m.chain.resize(chain);
      m.masks.resize(masks);
      m.scale = scale;
      m.product = kNoValue;
    }
    // A mask broadcasts into the scores, never the other way.
    if (graph.value(side).shape.size() > shape.size()) return false;
    m.masks.push_back(side);
  }
  return m.product != kNoValue;
}

// Matches the pattern around Softmax node `softmax_index` (see attention_fusion.hpp).
std::optional<Match> match_at_softmax(const ir::Graph& graph, int32_t softmax_index) {
  const ir::Node& softmax = graph.nodes[static_cast<size_t>(softmax_index)];
  Match m;
  m.chain.push_back(softmax_index);
  ValueId scores = softmax.inputs.at(0);
  const Shape shape = graph.value(scores).shape;
  if ((shape.size() != 3 && shape.size() != 4) || !is_static(shape)) return std::nullopt;
  m.rank = static_cast<int>(shape.size());
  const int64_t axis = softmax.attrs.get_int_or("axis", -1);
  if (axis != -1 && axis != m.rank - 1) return std::nullopt;
  // The scores are read by the next step, and maybe by the safe-softmax row test.
  std::optional<RowTest> row_test;
  const auto read_only_here = [&](ValueId value, int32_t reader) {
    if (is_graph_output(graph, value)) return false;
    int uses = 1;
    for (int32_t other : consumers_of(graph, value)) {
      if (other == reader) continue;
      if (row_test) return false;
      row_test = match_row_test(graph, other, value, m.rank);
      if (!row_test) return false;
      ++uses;
    }
    return graph.use_count(value) == uses;
  };
  if (!read_only_here(scores, softmax_index)) return std::nullopt;
  // scores' := [Cast to float32] scores
  if (const ir::Node* cast = producer_of(graph, scores);
      cast != nullptr && cast->op_type == "Cast") {
    const ValueId before = cast->inputs.at(0);
    if (!read_only_here(before, graph.value(scores).producer) ||
        !is_float(graph.value(before).dtype) ||
        (cast_target(*cast) != DType::kFloat32 && cast_target(*cast) != graph.value(before).dtype))
      return std::nullopt;
    m.chain.push_back(graph.value(scores).producer);
    scores = before;
  }
  m.dtype = graph.value(scores).dtype;
  if (!is_float(m.dtype)) return std::nullopt;
  m.scores = scores;
  if (!match_add_tree(graph, scores, shape, m)) return std::nullopt;
  for (ValueId mask : m.masks) {
    if (graph.value(mask).dtype != m.dtype) return std::nullopt;
  }

  // probs: the steps after the softmax, up to MatMul(P, V).
  ValueId p = softmax.outputs.at(0);
  for (;;) {
    if (is_graph_output(graph, p)) return std::nullopt;
    const std::vector<int32_t> readers = consumers_of(graph, p);
    if (readers.size() == 2) {  // the NaN guard reads P twice
      const ir::Node* is_nan = nullptr;
      const ir::Node* where = nullptr;
      int32_t is_nan_index = -1, where_index = -1;
      for (int32_t r : readers) {
        const ir::Node& node = graph.nodes[static_cast<size_t>(r)];
        if (node.op_type == "IsNaN") {
          is_nan = &node;
          is_nan_index = r;
        } else if (node.op_type == "Where") {
          where = &node;
          where_index = r;
        }
      }
      if (is_nan == nullptr || where == nullptr || where->inputs.size() != 3 ||
          graph.use_count(p) != 2)
        return std::nullopt;
      if (where->inputs[0] != is_nan->outputs[0] || !single_use(graph, is_nan->outputs[0]) ||
          !all_zero_constant(graph, where->inputs[1]) || where->inputs[2] != p ||
          graph.value(where->outputs[0]).shape != shape ||
          graph.value(where->outputs[0]).dtype != graph.value(p).dtype) {
        return std::nullopt;
      }
      m.nan_to_zero = true;
      m.chain.push_back(is_nan_index);
      m.chain.push_back(where_index);
      p = where->outputs[0];
      continue;
    }
    if (readers.size() != 1 || graph.use_count(p) != 1) return std::nullopt;
    const ir::Node& next = graph.nodes[static_cast<size_t>(readers[0])];
    if (next.op_type == "MatMul") {
      if (next.inputs.size() != 2 || next.inputs[0] != p || next.inputs[1] == p)
        return std::nullopt;
      m.chain.push_back(readers[0]);
      m.last_node = readers[0];
      m.v = next.inputs[1];
      m.output = next.outputs.at(0);
      break;
    }
    if (row_test && readers[0] == row_test->where) {  // the safe-softmax guard
      const size_t zero = row_test->true_when_masked ? 1 : 2;
      if (next.inputs.size() != 3 || next.inputs[3 - zero] != p ||
          !all_zero_constant(graph, next.inputs[zero]) ||
          graph.value(next.outputs.at(0)).shape != shape ||
          graph.value(next.outputs[0]).dtype != graph.value(p).dtype)
        return std::nullopt;
      m.nan_to_zero = true;
      m.chain.insert(m.chain.end(), row_test->nodes.begin(), row_test->nodes.end());
      m.chain.push_back(readers[0]);
      row_test.reset();
      p = next.outputs[0];
      continue;
    }
    const bool cast_back = next.op_type == "Cast" && cast_target(next) == m.dtype;
    if (!cast_back && !is_inference_dropout(graph, next)) return std::nullopt;
    m.chain.push_back(readers[0]);
    p = next.outputs.at(0);
  }
  if (row_test) return std::nullopt;  // a row test whose Where is not on P's way
  if (graph.value(p).dtype != m.dtype) return std::nullopt;

  // The operands' shapes: no broadcasting between batch dims.
  const ir::Node& qk = *producer_of(graph, m.product);
  m.q = qk.inputs[0];
  m.key_t = qk.inputs[1];
  const Shape& q = graph.value(m.q).shape;
  const Shape& kt = graph.value(m.key_t).shape;
  const Shape& v = graph.value(m.v).shape;
  const Shape& out = graph.value(m.output).shape;
  const auto r = static_cast<size_t>(m.rank);
  if (q.size() != r || kt.size() != r || v.size() != r || out.size() != r) return std::nullopt;
  for (size_t d = 0; d + 2 < r; ++d) {
    if (q[d] != shape[d] || kt[d] != shape[d] || v[d] != shape[d] || out[d] != shape[d])
      return std::nullopt;
  }
  if (!is_static(q) || !is_static(kt) || !is_static(v) || !is_static(out)) return std::nullopt;
  if (kt[r - 1] != v[r - 2] || q[r - 1] != kt[r - 2]) return std::nullopt;
  for (ValueId id : {m.q, m.key_t, m.v, m.output}) {
    if (graph.value(id).dtype != m.dtype) return std::nullopt;
  }

  // out: MatMul(P, V), then Casts that keep the dtype (left by precision lowering) and at most
  // one Transpose that keeps the feature dim innermost.
  m.out_order = m.rank == 4 ? std::vector<int>{kBatch, kHead, kSeq, kFeature}
                            : std::vector<int>{kBatch, kSeq, kFeature};
  bool transposed = false;
  while (single_use(graph, m.output)) {
    const int32_t reader = consumers_of(graph, m.output).at(0);
    const ir::Node& next = graph.nodes[static_cast<size_t>(reader)];
    const bool same_dtype_cast =
        next.op_type == "Cast" && graph.value(next.outputs.at(0)).dtype == m.dtype;
    const bool transpose = !transposed && next.op_type == "Transpose" && next.attrs.has("perm") &&
                           next.attrs.get_ints("perm").size() == r &&
                           next.attrs.get_ints("perm").back() == m.rank - 1;
    if (!same_dtype_cast && !transpose) break;
    if (transpose) {
      std::vector<int> order;
      for (int64_t axis : next.attrs.get_ints("perm"))
        order.push_back(m.out_order.at(static_cast<size_t>(axis)));
      m.out_order = order;
      transposed = true;
    }
    m.chain.push_back(reader);
    m.last_node = reader;
    m.output = next.outputs.at(0);
  }
  return m;
}

// ---- the rewrite --------------------------------------------------------------------------------

// NumPy broadcasting of two static shapes.
Shape broadcast(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()), 1);
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t x = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t y = i < b.size() ? b[b.size() - 1 - i] : 1;
    out[out.size() - 1 - i] = x == 1 ? y : x;
  }
  return out;
}

std::string unique_node_name(const ir::Graph& graph, const std::string& base) {
  const auto taken = [&](const std::string& name) {
    return std::any_of(graph.nodes.begin(), graph.nodes.end(),
                       [&](const ir::Node& n) { return !n.removed && n.name == name; });
  };
  std::string name = base;
  for (int suffix = 1; taken(name); ++suffix) name = base + "_" + std::to_string(suffix);
  return name;
}

std::shared_ptr<HostTensor> shape_tensor(const Shape& shape) {
  auto tensor =
      std::make_shared<HostTensor>(DType::kInt64, Shape{static_cast<int64_t>(shape.size())});
  if (!shape.empty())
    std::memcpy(tensor->bytes.data(), shape.data(), shape.size() * sizeof(int64_t));
  return tensor;
}

// A fused node's input before it exists: one tensor, or masks to sum, read as `shape` (through
// a Reshape, a view at run time, where that differs).
struct PlannedInput {
  std::vector<ValueId> terms;
  Shape shape;
  bool present() const { return !terms.empty(); }
};

// Adds the nodes that make planned inputs, for the fused node named `name`.
class Materializer {
 public:
  Materializer(ir::Graph& graph, std::string name) : graph_(graph), name_(std::move(name)) {}

  ValueId input(const PlannedInput& planned, const std::string& tag) {
    ValueId total = planned.terms[0];
    for (size_t i = 1; i < planned.terms.size(); ++i) {
      const ValueId term = planned.terms[i];
      const Shape shape = broadcast(graph_.value(total).shape, graph_.value(term).shape);
      total = add_node("Add", tag + "_sum", {total, term},
                       value(tag + "_sum", graph_.value(total).dtype, shape));
    }
    if (graph_.value(total).shape == planned.shape) return total;
    const ValueId target = graph_.add_constant(unique_value_name(graph_, name_ + tag + "_shape"),
                                               shape_tensor(planned.shape));
    return add_node("Reshape", tag, {total, target},
                    value(tag, graph_.value(total).dtype, planned.shape));
  }

  ValueId value(const std::string& tag, DType dtype, Shape shape) {
    ir::Value v;
    v.name = unique_value_name(graph_, name_ + tag);
    v.dtype = dtype;
    v.shape = std::move(shape);
    return graph_.add_value(std::move(v));
  }

  ValueId add_node(const char* op, const std::string& tag, std::vector<ValueId> inputs,
                   ValueId output) {
    ir::Node node;
    node.name = unique_node_name(graph_, name_ + tag);
    for (int suffix = 1; std::any_of(nodes.begin(), nodes.end(),
                                     [&](const ir::Node& n) { return n.name == node.name; });
         ++suffix) {
      node.name = unique_node_name(graph_, name_ + tag + "_" + std::to_string(suffix));
    }
    node.op_type = op;
    node.inputs = std::move(inputs);
    node.outputs = {output};
    nodes.push_back(std::move(node));
    return output;
  }

  std::vector<ir::Node> nodes;

 private:
  ir::Graph& graph_;
  std::string name_;
};

// Plans, checks and applies the fusion of `m`. Returns false, leaving the graph alone, when the
// operands have no strided form the node takes, or with `tensor_core_shapes_only` when the CUDA
// kernel would not run it.
bool fuse(ir::Graph& graph, const Match& m, bool tensor_core_shapes_only) {
  const std::vector<int> q_roles = m.rank == 4 ? std::vector<int>{kBatch, kHead, kSeq, kFeature}
                                               : std::vector<int>{kBatch, kSeq, kFeature};
  const std::vector<int> kt_roles = m.rank == 4 ? std::vector<int>{kBatch, kHead, kFeature, kSeq}
                                                : std::vector<int>{kBatch, kFeature, kSeq};
  const std::vector<CanonicalView> q_stops = canonical_stops(graph, m.q, q_roles, true);
  const std::vector<CanonicalView> k_stops = canonical_stops(graph, m.key_t, kt_roles, true);
  const std::vector<CanonicalView> v_stops = canonical_stops(graph, m.v, q_roles, false);

  // Plan the node.
  AttributeMap attrs;
  std::vector<PlannedInput> inputs;
  double scale = m.scale;
  if (const std::optional<PackedRead> packed = packed_read(graph, q_stops, k_stops, v_stops)) {
    inputs = {{{packed->source}, packed->shape}, {}, {}};
    attrs.set("qkv_packed", Attribute::of_int(1));
    if (packed->layout != "BSTHD") attrs.set("qkv_layout", Attribute::of_string(packed->layout));
    scale *= packed->scale;
  } else {
    const std::optional<SeparateRead> q = best_separate_read(graph, q_stops);
    const std::optional<SeparateRead> k = best_separate_read(graph, k_stops);
    const std::optional<SeparateRead> v = best_separate_read(graph, v_stops);
    if (!q || !k || !v) return false;
    inputs = {{{q->source}, q->shape}, {{k->source}, k->shape}, {{v->source}, v->shape}};
    // K given as [B, H, D, Sk] keeps its older spelling.
    const bool k_transposed = k->layout == "BHDS";
    attrs.set("q_layout", Attribute::of_string(q->layout));
    attrs.set("k_layout", Attribute::of_string(k_transposed ? "BHSD" : k->layout));
    attrs.set("v_layout", Attribute::of_string(v->layout));
    attrs.set("k_transposed", Attribute::of_int(k_transposed ? 1 : 0));
    scale *= q->scale * k->scale;
  }
  attrs.set("scale", Attribute::of_float(static_cast<float>(scale)));
  attrs.set("nan_to_zero", Attribute::of_int(m.nan_to_zero ? 1 : 0));
  const std::string out_layout = layout_letters(m.out_order);
  attrs.set("out_layout", Attribute::of_string(out_layout));

  // The mask: several are summed; rank-3 scores' [N, Sq, Sk] masks are read as [N, 1, Sq, Sk].
  if (!m.masks.empty()) {
    PlannedInput mask{m.masks, {}};
    for (ValueId term : m.masks) mask.shape = broadcast(mask.shape, graph.value(term).shape);
    if (m.rank == 3 && mask.shape.size() == 3 && mask.shape[0] != 1)
      mask.shape = {mask.shape[0], 1, mask.shape[1], mask.shape[2]};
    inputs.push_back(std::move(mask));
  }

  // Check it: the output the pattern wrote, and (CUDA) the tensor-core kernel.
  const auto shape_of = [&](size_t i) {
    return i < inputs.size() && inputs[i].present() ? &inputs[i].shape : nullptr;
  };
  const std::string name = graph.nodes[static_cast<size_t>(m.last_node)].name;
  const ops::AttentionGeometry geometry =
      ops::resolve_attention("node '" + name + "' (FusedAttention)", attrs, *shape_of(0),
                             shape_of(1), shape_of(2), shape_of(3));
  const Shape& scores = graph.value(m.scores).shape;
  const int64_t out_sizes[4] = {scores[0], m.rank == 4 ? scores[1] : 1,
                                scores[static_cast<size_t>(m.rank) - 2],
                                graph.value(m.v).shape.back()};
  const Shape fused_shape = memory_shape(out_sizes, out_layout);
  if (geometry.out_shape != fused_shape) return false;
  if (tensor_core_shapes_only && !ops::attention_fits_tensor_cores(m.dtype, geometry)) return false;

  // Materialise: the new nodes take the last node's slot; the pattern's nodes go.
  Materializer make(graph, name);
  ir::Node node;
  node.name = name;
  node.op_type = "FusedAttention";
  node.attrs = std::move(attrs);
  const bool packed = inputs.size() > 1 && !inputs[1].present();
  const char* tags[4] = {packed ? "_qkv" : "_q", "_k", "_v", "_mask"};
  for (size_t i = 0; i < inputs.size(); ++i)
    node.inputs.push_back(inputs[i].present() ? make.input(inputs[i], tags[i]) : kNoValue);
  while (node.inputs.back() == kNoValue) node.inputs.pop_back();  // packed: QKV alone
  const Shape& out_shape = graph.value(m.output).shape;
  node.outputs = {fused_shape == out_shape ? m.output : make.value("_fused", m.dtype, fused_shape)};
  std::vector<ir::Node> prefix = std::move(make.nodes);
  make.nodes.clear();
  if (fused_shape != out_shape) {  // back to the rank and order the pattern wrote: a view
    const ValueId target =
        graph.add_constant(unique_value_name(graph, name + "_out_shape"), shape_tensor(out_shape));
    make.add_node("Reshape", "_out", {node.outputs[0], target}, m.output);
  }

  std::vector<bool> replaced(graph.nodes.size(), false);
  for (int32_t index : m.chain) replaced[static_cast<size_t>(index)] = true;
  std::vector<ir::Node> nodes;
  nodes.reserve(graph.nodes.size() + prefix.size() + 2);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (static_cast<int32_t>(i) == m.last_node) {
      for (ir::Node& added : prefix) nodes.push_back(std::move(added));
      nodes.push_back(std::move(node));
      for (ir::Node& added : make.nodes) nodes.push_back(std::move(added));
    } else if (!replaced[i]) {
      nodes.push_back(std::move(graph.nodes[i]));
    }
  }
  graph.nodes = std::move(nodes);
  graph.compact();
  return true;
}

}  // namespace

int fuse_attention(ir::Graph& graph, bool tensor_core_shapes_only) {
  lower_attention(graph);
  int fused = 0;
  for (size_t index = 0; index < graph.nodes.size(); ++index) {
    if (graph.nodes[index].removed || graph.nodes[index].op_type != "Softmax") continue;
    const std::optional<Match> m = match_at_softmax(graph, static_cast<int32_t>(index));
    if (!m || !fuse(graph, *m, tensor_core_shapes_only)) continue;
    ++fused;
    index = 0;  // the node list was rebuilt; fused softmaxes are gone, so this ends
  }
  return fused;
}

}  // namespace kiln::passes
