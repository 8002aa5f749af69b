#include "passes/einsum_lowering.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "ops/einsum.hpp"
#include "passes/pass.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using ir::kNoValue;
using ir::ValueId;

using Labels = std::vector<int>;
using Groups = std::vector<Labels>;  // a tensor's axes, each the labels merged into it

// One planned node that reads the tensor before it (and, for MatMul, a second tensor).
struct Step {
  std::string op;
  std::string tag;  // names the node and its output
  AttributeMap attrs;
  std::optional<std::vector<int64_t>> int_input;  // a constant int64 input 1 (axes, shape)
};

bool contains(const Labels& labels, int label) {
  return std::find(labels.begin(), labels.end(), label) != labels.end();
}

Groups singles(const Labels& labels) {
  Groups groups;
  for (int label : labels) groups.push_back({label});
  return groups;
}

class EinsumLowering {
 public:
  EinsumLowering(ir::Graph& graph, const ir::Node& node, std::unordered_set<std::string>& names)
      : graph_(graph), node_(node), names_(names) {
    equation_ = node.attrs.get_string("equation");
    std::vector<Shape> shapes;
    for (ValueId in : node.inputs) {
      if (in == kNoValue) unsupported("has an absent operand");
      shapes.push_back(graph.value(in).shape);
    }
    if (shapes.empty() || shapes.size() > 2) {
      unsupported("has ", shapes.size(), " operands; kiln supports Einsum with 1 or 2");
    }
    spec_ = ops::resolve_einsum(describe_node(node), equation_, shapes);
    if (spec_.has_diagonal) {
      unsupported("repeats a label within one operand (a diagonal), which kiln does not support");
    }
  }

  // Appends the nodes computing the Einsum's output to `out`.
  void lower(std::vector<ir::Node>& out) {
    out_ = &out;
    if (node_.inputs.size() == 1) {
      lower_unary();
    } else {
      lower_binary();
    }
  }

 private:
  template <typename... Parts>
  [[noreturn]] void unsupported(Parts&&... parts) const {
    fail(ErrorCode::kUnsupported, describe_node(node_), ": equation \"", equation_, "\" ",
         std::forward<Parts>(parts)...);
  }

  // ReduceSum over the axes of `labels` that `drop` selects; removes them from `labels`.
  template <typename Drop>
  void reduce(Labels& labels, std::vector<Step>& steps, const std::string& tag, Drop drop) {
    std::vector<int64_t> axes;
    Labels kept;
    for (size_t axis = 0; axis < labels.size(); ++axis) {
      if (drop(axis)) {
        axes.push_back(static_cast<int64_t>(axis));
      } else {
        kept.push_back(labels[axis]);
      }
    }
    if (axes.empty()) return;
    Step step{"ReduceSum", tag + "_sum", {}, axes};
    step.attrs.set("keepdims", Attribute::of_int(0));
    steps.push_back(std::move(step));
    labels = std::move(kept);
  }

  // Transpose from `labels` to `order` (same labels), unless it is the identity.
  static void transpose(Labels& labels, const Labels& order, std::vector<Step>& steps,
                        const std::string& tag) {
    if (labels == order) return;
    std::vector<int64_t> perm;
    for (int label : order) {
      perm.push_back(std::find(labels.begin(), labels.end(), label) - labels.begin());
    }
    Step step{"Transpose", tag + "_transpose", {}, std::nullopt};
    step.attrs.set("perm", Attribute::of_ints(std::move(perm)));
    steps.push_back(std::move(step));
    labels = order;
  }

  // Reshape from axes `from` to axes `to` (same labels, regrouped), unless they group alike.
  // Known sizes are written out; a dynamic axis that stays where it is becomes 0 (copy), and at
  // most one other dynamic axis becomes -1.
  void reshape(const Groups& from, const Groups& to, std::vector<Step>& steps,
               const std::string& tag) const {
    if (from == to) return;
    std::vector<int64_t> target;
    bool inferred = false, zero_sized = false, copies = false;
    for (size_t p = 0; p < to.size(); ++p) {
      int64_t size = 1;
      for (int label : to[p]) {
        const int64_t dim = spec_.sizes.at(label);
        size = (size == kDynamicDim || dim == kDynamicDim) ? kDynamicDim : size * dim;
      }
      if (size == 0) zero_sized = true;
      if (size != kDynamicDim) {
        target.push_back(size);
      } else if (p < from.size() && from[p] == to[p]) {
        target.push_back(0);
        copies = true;
      } else {
        if (inferred) {
          unsupported("needs a Reshape that merges or splits more than one dynamic dimension");
        }
        inferred = true;
        target.push_back(-1);
      }
    }
    Step step{"Reshape", tag + "_reshape", {}, target};
    if (zero_sized) {
      // 0 must then mean an empty dim, so no entry can copy or infer one.
      if (copies || inferred) unsupported("has a zero-sized dimension next to a dynamic one");
      step.attrs.set("allowzero", Attribute::of_int(1));
    }
    steps.push_back(std::move(step));
  }

  void lower_unary() {
    Labels labels = spec_.operand_labels[0];
    std::vector<Step> steps;
    const Labels& output = spec_.output_labels;
    reduce(labels, steps, node_.name, [&](size_t axis) {
      return !contains(output, labels[axis]) || spec_.broadcast[0][axis];
    });
    transpose(labels, output, steps, node_.name);
    if (steps.empty()) steps.push_back(Step{"Identity", node_.name + "_copy", {}, std::nullopt});
    emit_chain(node_.inputs[0], steps, node_.outputs[0]);
  }

  void lower_binary() {
    const Labels& output = spec_.output_labels;
    Labels a = spec_.operand_labels[0], b = spec_.operand_labels[1];
    // The other operand's labels once its broadcast (size-1 ellipsis) axes are gone.
    const auto kept = [&](size_t operand) {
      Labels labels;
      for (size_t axis = 0; axis < spec_.operand_labels[operand].size(); ++axis) {
        if (!spec_.broadcast[operand][axis]) labels.push_back(spec_.operand_labels[operand][axis]);
      }
      return labels;
    };
    const Labels kept_a = kept(0), kept_b = kept(1);
    std::vector<Step> steps_a, steps_b, steps_out;
    const std::string tag_a = node_.name + "_a", tag_b = node_.name + "_b";
    reduce(a, steps_a, tag_a, [&](size_t axis) {
      return spec_.broadcast[0][axis] || (!contains(output, a[axis]) && !contains(kept_b, a[axis]));
    });
    reduce(b, steps_b, tag_b, [&](size_t axis) {
      return spec_.broadcast[1][axis] || (!contains(output, b[axis]) && !contains(kept_a, b[axis]));
    });

    Labels batch, left, right, contracted;
    for (int label : output) {
      const bool in_a = contains(a, label), in_b = contains(b, label);
      if (in_a && in_b) {
        batch.push_back(label);
      } else if (in_a) {
        left.push_back(label);
      } else {
        right.push_back(label);
      }
    }
    for (int label : a) {
      if (contains(b, label) && !contains(output, label)) contracted.push_back(label);
    }

    const auto concat = [](std::initializer_list<const Labels*> parts) {
      Labels all;
      for (const Labels* part : parts) all.insert(all.end(), part->begin(), part->end());
      return all;
    };
    const auto matrix = [&](const Labels& rows, const Labels& columns) {
      Groups groups = singles(batch);
      groups.push_back(rows);
      groups.push_back(columns);
      return groups;
    };
    transpose(a, concat({&batch, &left, &contracted}), steps_a, tag_a);
    transpose(b, concat({&batch, &contracted, &right}), steps_b, tag_b);
    reshape(singles(a), matrix(left, contracted), steps_a, tag_a);
    reshape(singles(b), matrix(contracted, right), steps_b, tag_b);

    Labels product = concat({&batch, &left, &right});
    reshape(matrix(left, right), singles(product), steps_out, node_.name);
    transpose(product, output, steps_out, node_.name);

    const ValueId value_a = emit_chain(node_.inputs[0], steps_a, kNoValue);
    const ValueId value_b = emit_chain(node_.inputs[1], steps_b, kNoValue);
    const ValueId matmul_out = steps_out.empty() ? node_.outputs[0] : kNoValue;
    const ValueId result = emit(Step{"MatMul", node_.name + "_matmul", {}, std::nullopt},
                                {value_a, value_b}, matmul_out);
    emit_chain(result, steps_out, node_.outputs[0]);
  }

  // Applies `steps` in order to `input`; the last writes `final_output` when that is given.
  ValueId emit_chain(ValueId input, const std::vector<Step>& steps, ValueId final_output) {
    ValueId current = input;
    for (size_t i = 0; i < steps.size(); ++i) {
      current = emit(steps[i], {current}, i + 1 == steps.size() ? final_output : kNoValue);
    }
    return current;
  }

  ValueId emit(const Step& step, std::vector<ValueId> inputs, ValueId output) {
    ir::Node node;
    node.name = take_node_name(names_, step.tag);
    node.op_type = step.op;
    node.attrs = step.attrs;
    if (step.int_input) {
      auto tensor = std::make_shared<HostTensor>(
          DType::kInt64, Shape{static_cast<int64_t>(step.int_input->size())});
      if (!step.int_input->empty()) {
        std::memcpy(tensor->bytes.data(), step.int_input->data(),
                    step.int_input->size() * sizeof(int64_t));
      }
      inputs.push_back(graph_.add_constant(
          unique_value_name(graph_, node.name + (step.op == "Reshape" ? "_shape" : "_axes")),
          tensor));
    }
    node.inputs = std::move(inputs);
    return append_node(graph_, *out_, std::move(node), output, graph_.value(node_.outputs[0]).dtype);
  }

  ir::Graph& graph_;
  const ir::Node& node_;
  std::unordered_set<std::string>& names_;
  std::string equation_;
  ops::EinsumSpec spec_;
  std::vector<ir::Node>* out_ = nullptr;
};

// Whether inference after lowering agrees with the Einsum's own: same rank, and no known dim
// that differs (the lowered form may know a dim the Einsum left dynamic, never the reverse).
bool same_result_shape(const Shape& before, const Shape& after) {
  if (before.size() != after.size()) return false;
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i] != kDynamicDim && before[i] != after[i]) return false;
  }
  return true;
}

}  // namespace

int lower_einsum(ir::Graph& graph) {
  int count = 0;
  for (const ir::Node& node : graph.nodes) {
    if (!node.removed && node.op_type == "Einsum" && node.domain.empty()) ++count;
  }
  if (count == 0) return 0;

  std::unordered_set<std::string> names;
  for (const ir::Node& node : graph.nodes) {
    if (!node.removed && node.op_type != "Einsum") names.insert(node.name);
  }
  std::vector<ir::Node> rewritten;
  rewritten.reserve(graph.nodes.size() + 8 * static_cast<size_t>(count));
  std::vector<size_t> added;
  std::vector<std::pair<ValueId, Shape>> results;
  for (ir::Node& node : graph.nodes) {
    if (node.removed) continue;
    if (node.op_type != "Einsum" || !node.domain.empty()) {
      rewritten.push_back(std::move(node));
      continue;
    }
    results.emplace_back(node.outputs.at(0), graph.value(node.outputs[0]).shape);
    const size_t first = rewritten.size();
    EinsumLowering lowering(graph, node, names);
    lowering.lower(rewritten);
    for (size_t n = first; n < rewritten.size(); ++n) added.push_back(n);
  }
  graph.nodes = std::move(rewritten);
  graph.compact();
  for (size_t index : added) infer_node_outputs(graph, index);
  for (const auto& [output, shape] : results) {
    const ir::Value& value = graph.value(output);
    if (!same_result_shape(shape, value.shape)) {
      fail(ErrorCode::kInternal, "Einsum lowering changed the shape of '", value.name, "' from ",
           shape_to_string(shape), " to ", shape_to_string(value.shape));
    }
  }
  return count;
}

}  // namespace kiln::passes
