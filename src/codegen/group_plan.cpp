#include "codegen/group_plan.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

namespace kiln::codegen {
namespace {

bool is_float_dtype(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}
bool is_kernel_dtype(DType dtype) { return is_float_dtype(dtype) || dtype == DType::kBool; }

// Dim `d` of a rank-`rank` space as `shape` (right-aligned, numpy style) has it.
int64_t aligned_dim(const Shape& shape, size_t rank, size_t d) {
  const size_t offset = rank - shape.size();
  return d < offset ? 1 : shape[d - offset];
}

// `shape` broadcasts into `space` without changing it: every aligned dim equals the space's
// (a symbolic dim only a symbolic one) or is 1.
bool fits_space(const Shape& shape, const Shape& space) {
  if (shape.size() > space.size()) return false;
  for (size_t d = 0; d < space.size(); ++d) {
    const int64_t dim = aligned_dim(shape, space.size(), d);
    if (dim != 1 && dim != space[d]) return false;
  }
  return true;
}

// Numpy broadcast where kDynamicDim only matches kDynamicDim or 1; nullopt when they differ.
std::optional<Shape> broadcast(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank, 1);
  for (size_t d = 0; d < rank; ++d) {
    const int64_t x = aligned_dim(a, rank, d);
    const int64_t y = aligned_dim(b, rank, d);
    if (x != y && x != 1 && y != 1) return std::nullopt;
    out[d] = x == 1 ? y : x;
  }
  return out;
}

std::string describe(const Shape& shape) { return shape_to_string(shape); }

const std::vector<std::string_view>& reduce_ops() {
  static const std::vector<std::string_view> ops = {
      "ReduceSum",       "ReduceMean",         "ReduceMax",         "ReduceMin",
      "ReduceProd",      "ReduceL1",           "ReduceL2",          "ReduceSumSquare",
      "ReduceLogSum",    "ReduceLogSumExp",    "Softmax",           "LogSoftmax",
      "LayerNormalization", "GlobalAveragePool", "GlobalMaxPool"};
  return ops;
}

class Planner {
 public:
  Planner(const ops::GroupProgram& program, std::span<const ops::ValueInfo> inputs,
          std::span<const ops::ValueInfo> outputs)
      : program_(program), inputs_(inputs), outputs_(outputs) {}

  GroupPlanResult run() {
    try {
      plan();
    } catch (const Reject& reject) {
      return GroupPlanResult{std::nullopt, reject.reason};
    } catch (const Error& error) {
      return GroupPlanResult{std::nullopt, error.what()};
    }
    return GroupPlanResult{std::move(plan_), ""};
  }

 private:
  struct Reject {
    std::string reason;
  };
  template <typename... Parts>
  [[noreturn]] static void reject(Parts&&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    throw Reject{out.str()};
  }

  // The reduction a member performs: which axes of its input.
  struct Reduction {
    Shape input;
    std::vector<bool> mask;
  };

  void plan() {
    if (outputs_.size() > ops::kGroupMaxOutputs) {
      reject("the group would have ", outputs_.size(), " outputs, at most ", ops::kGroupMaxOutputs);
    }
    if (inputs_.size() + outputs_.size() > kPlanMaxTensors) {
      reject("the group has ", inputs_.size(), " inputs and ", outputs_.size(),
             " outputs; a kernel takes at most ", kPlanMaxTensors, " tensors");
    }
    for (size_t i = 0; i < inputs_.size(); ++i) {
      plan_.inputs.push_back(PlanTensor{inputs_[i].dtype, inputs_[i].shape});
    }
    for (const ops::ValueInfo& out : outputs_) {
      plan_.outputs.push_back(PlanTensor{out.dtype, out.shape});
    }
    infos_ = ops::infer_group_members(program_, inputs_);
    plan_.input_strides.assign(inputs_.size(), {});
    plan_.output_strides.assign(outputs_.size(), {});
    permuted_store_.assign(program_.members.size(), {});
    choose_space();
    member_node_.assign(program_.members.size(), -1);
    squeezed_.assign(program_.members.size(), false);
    for (size_t m = 0; m < program_.members.size(); ++m) member_node_[m] = expand(m);
    for (size_t o = 0; o < program_.outputs.size(); ++o) add_output(o);
    for (const PlanNode& node : plan_.nodes) plan_.passes = std::max(plan_.passes, node.level);
    assign_symbols();
  }

  // ---- the space ----------------------------------------------------------------------------

  std::optional<Reduction> reduction_of(size_t m) const {
    const ops::GroupMember& member = program_.members[m];
    const std::string& op = member.op;
    if (std::find(reduce_ops().begin(), reduce_ops().end(), op) == reduce_ops().end()) {
      return std::nullopt;
    }
    const Shape x = input_info(member, 0).shape;
    const size_t rank = x.size();
    Reduction r{x, std::vector<bool>(rank, false)};
    if (op == "Softmax" || op == "LogSoftmax" || op == "LayerNormalization") {
      int64_t axis = member.attrs.get_int_or("axis", -1);
      if (axis < 0) axis += static_cast<int64_t>(rank);
      if (axis < 0 || axis >= static_cast<int64_t>(rank)) reject(op, " axis out of range");
      const size_t last = op == "LayerNormalization" ? rank : static_cast<size_t>(axis) + 1;
      for (size_t d = static_cast<size_t>(axis); d < last; ++d) r.mask[d] = true;
    } else if (op == "GlobalAveragePool" || op == "GlobalMaxPool") {
      if (rank < 3) reject(op, " of rank ", rank);
      if (member.attrs.get_string_or("kiln_layout", "NCHW") == "NHWC") {
        if (rank != 4) reject(op, " NHWC of rank ", rank);
        r.mask[1] = r.mask[2] = true;
      } else {
        for (size_t d = 2; d < rank; ++d) r.mask[d] = true;
      }
    } else {
      std::vector<int64_t> axes;
      if (member.inputs.size() > 1 && member.inputs[1] != ops::kGroupAbsent) {
        if (member.inputs[1] != ops::kGroupAttributeValue) reject(op, "'s axes are not constant");
        axes = read_indices(view_of(*member.values[1]));
      }
      const bool noop = member.attrs.get_int_or("noop_with_empty_axes", 0) != 0;
      if (axes.empty() && noop) reject(op, " reduces no axis");
      if (axes.empty()) std::fill(r.mask.begin(), r.mask.end(), true);
      for (int64_t axis : axes) {
        if (axis < 0) axis += static_cast<int64_t>(rank);
        if (axis < 0 || axis >= static_cast<int64_t>(rank)) reject(op, " axis out of range");
        r.mask[static_cast<size_t>(axis)] = true;
      }
    }
    return r;
  }

  void choose_space() {
    std::optional<Reduction> first;
    for (size_t m = 0; m < program_.members.size(); ++m) {
      std::optional<Reduction> r = reduction_of(m);
      if (!r) continue;
      if (!first) {
        first = std::move(r);
      } else if (r->input != first->input || r->mask != first->mask) {
        reject("two reductions over different spaces (", describe(first->input), " and ",
               describe(r->input), ")");
      }
    }
    if (!first) {
      // Pointwise: the broadcast of every member's output.
      Shape space;
      for (size_t m = 0; m < infos_.size(); ++m) {
        // A Transpose of a computed value is written permuted: its shape is not the space's.
        if (transposes_member(m)) continue;
        const ops::ValueInfo& info = infos_[m];
        std::optional<Shape> b = broadcast(space, info.shape);
        if (!b) reject("member shapes ", describe(space), " and ", describe(info.shape), " do not broadcast");
        space = *b;
      }
      plan_.space = space;
      plan_.schedule = Schedule::kPointwise;
      return;
    }
    plan_.space = first->input;
    const std::vector<bool>& mask = first->mask;
    size_t begin = mask.size(), end = 0;
    for (size_t d = 0; d < mask.size(); ++d) {
      if (!mask[d]) continue;
      begin = std::min(begin, d);
      end = d + 1;
    }
    for (size_t d = begin; d < end; ++d) {
      if (!mask[d]) reject("the reduced axes are not adjacent");
    }
    if (begin >= end) reject("a reduction over no axis");
    plan_.reduce_begin = begin;
    plan_.reduce_end = end;
    bool inner_one = true;
    for (size_t d = end; d < plan_.space.size(); ++d) {
      if (plan_.space[d] == kDynamicDim) reject("a dynamic dimension after the reduced axes");
      inner_one &= plan_.space[d] == 1;
    }
    plan_.schedule = inner_one ? Schedule::kRow : Schedule::kColumn;
  }

  // A Transpose member whose input is another member's value (written permuted, if at all).
  bool transposes_member(size_t m) const {
    const ops::GroupMember& member = program_.members[m];
    return member.op == "Transpose" && !member.inputs.empty() &&
           member.inputs[0] >= static_cast<int64_t>(program_.num_inputs);
  }

  std::vector<int64_t> permutation_of(const ops::GroupMember& member, size_t rank) const {
    if (member.attrs.has("perm")) return member.attrs.get_ints("perm");
    std::vector<int64_t> reversed(rank);
    for (size_t i = 0; i < rank; ++i) reversed[i] = static_cast<int64_t>(rank - 1 - i);
    return reversed;
  }

  // Contiguous element strides of a static shape.
  static std::vector<int64_t> contiguous_strides(const Shape& shape) {
    std::vector<int64_t> strides(shape.size(), 1);
    for (size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
    return strides;
  }

  // Folds Transpose member `m` into the group: read in place when its input is a layer input,
  // written in place when its input is a computed value (then it may only be an output).
  int expand_transpose(size_t m) {
    const ops::GroupMember& member = program_.members[m];
    const ops::ValueInfo in = input_info(member, 0);
    const Shape& out = infos_[m].shape;
    if (!shape_is_static(in.shape)) reject(member.name, ": a Transpose of dynamic dims");
    const std::vector<int64_t> perm = permutation_of(member, in.shape.size());
    // The innermost dim must stay innermost (or have extent 1) so the folded access stays
    // coalesced; other transposes stay kernels of their own.
    const size_t rank = in.shape.size();
    if (rank > 0 && perm.back() != static_cast<int64_t>(rank - 1) && in.shape.back() != 1 && out.back() != 1) {
      reject(member.name, ": a Transpose that moves the innermost dim");
    }
    const std::vector<int64_t> in_strides = contiguous_strides(in.shape);
    if (!transposes_member(m)) {
      const int64_t ref = member.inputs[0];
      if (ref < 0) reject(member.name, " transposes a constant value");
      const size_t k = static_cast<size_t>(ref);
      if (in.value && in.value->numel() == 1) return constant(read_as_double(view_of(*in.value), 0), in.dtype == DType::kBool);
      if (!fits_space(out, plan_.space)) {
        reject(member.name, "'s output ", describe(out), " does not fit the space ", describe(plan_.space));
      }
      // Output dim d of the Transpose is input dim perm[d]; aligned right in the space.
      std::vector<int64_t> strides(plan_.space.size(), 0);
      const size_t offset = plan_.space.size() - out.size();
      for (size_t d = 0; d < out.size(); ++d) {
        if (out[d] != 1) strides[offset + d] = in_strides[static_cast<size_t>(perm[d])];
      }
      if (loads_.count(k) || !plan_.input_strides[k].empty()) reject(member.name, ": its input is also read unpermuted");
      plan_.input_strides[k] = strides;
      PlanNode node;
      node.kind = NodeKind::kLoad;
      node.tensor = static_cast<int>(k);
      node.is_bool = in.dtype == DType::kBool;
      node.domain = domain_of(out);
      const int index = add(std::move(node));
      loads_[k] = index;
      return index;
    }
    // A permuted store of a computed value of the space's full shape.
    if (in.shape != plan_.space) reject(member.name, " transposes a value that is not the whole space");
    std::vector<int64_t> strides(rank, 0);
    const std::vector<int64_t> out_strides = contiguous_strides(out);
    for (size_t d = 0; d < rank; ++d) strides[static_cast<size_t>(perm[d])] = out_strides[d];
    permuted_store_[m] = strides;
    return operand(m, 0);
  }

  // ---- nodes ----------------------------------------------------------------------------------

  ops::ValueInfo input_info(const ops::GroupMember& member, size_t i) const {
    const int64_t ref = member.inputs.at(i);
    if (ref == ops::kGroupAbsent) return ops::ValueInfo{DType::kFloat32, {}, nullptr, false};
    if (ref == ops::kGroupAttributeValue) {
      return ops::ValueInfo{member.values[i]->dtype, member.values[i]->shape, member.values[i].get(), true};
    }
    if (ref < static_cast<int64_t>(program_.num_inputs)) return inputs_[static_cast<size_t>(ref)];
    return infos_[static_cast<size_t>(ref) - program_.num_inputs];
  }

  Domain domain_of(const Shape& shape) const {
    if (plan_.schedule == Schedule::kPointwise) return Domain::kSpace;
    for (size_t d = plan_.reduce_begin; d < plan_.reduce_end; ++d) {
      if (aligned_dim(shape, plan_.space.size(), d) != 1) return Domain::kSpace;
    }
    return Domain::kRow;
  }

  int add(PlanNode node) {
    int level = 0;
    bool space = false;
    for (int a : node.args) {
      level = std::max(level, plan_.nodes[static_cast<size_t>(a)].level);
      space |= plan_.nodes[static_cast<size_t>(a)].domain == Domain::kSpace;
    }
    if (node.kind == NodeKind::kReduce) {
      node.level = level + 1;
      node.domain = Domain::kRow;
    } else if (node.kind == NodeKind::kScalar || node.kind == NodeKind::kCast) {
      node.level = level;
      node.domain = space || plan_.schedule == Schedule::kPointwise ? Domain::kSpace : Domain::kRow;
    }
    plan_.nodes.push_back(std::move(node));
    return static_cast<int>(plan_.nodes.size()) - 1;
  }

  int constant(double value, bool is_bool = false) {
    PlanNode node;
    node.kind = NodeKind::kConstant;
    node.constant = value;
    node.is_bool = is_bool;
    node.domain = plan_.schedule == Schedule::kPointwise ? Domain::kSpace : Domain::kRow;
    return add(std::move(node));
  }

  const ops::ScalarOp& table_op(std::string_view op) const {
    static const AttributeMap none;
    const ops::ScalarOp* entry = ops::find_scalar_op(op, none);
    if (entry == nullptr) reject("the scalar table has no ", op);
    return *entry;
  }

  int scalar(std::string_view op, std::vector<int> args) {
    PlanNode node;
    node.kind = NodeKind::kScalar;
    node.scalar = &table_op(op);
    node.is_bool = node.scalar->result == ops::ScalarResult::kBool;
    node.args = std::move(args);
    return add(std::move(node));
  }

  int reduce(ReduceKind kind, int arg) {
    PlanNode node;
    node.kind = NodeKind::kReduce;
    node.reduce = kind;
    node.args = {arg};
    return add(std::move(node));
  }

  // The number of reduced elements, as a float node (a literal when static).
  int reduced_count() {
    double count = 1.0;
    for (size_t d = plan_.reduce_begin; d < plan_.reduce_end; ++d) {
      if (plan_.space[d] == kDynamicDim) reject("a mean over a dynamic dimension");
      count *= static_cast<double>(plan_.space[d]);
    }
    return constant(count);
  }

  // The node of member input `i` (a load, a literal or an earlier member's node).
  int operand(size_t m, size_t i) {
    const ops::GroupMember& member = program_.members[m];
    const int64_t ref = member.inputs.at(i);
    if (ref == ops::kGroupAbsent) reject(member.name, " input ", i, " is absent");
    if (ref == ops::kGroupAttributeValue) reject(member.name, " input ", i, " is an attribute value");
    if (ref >= static_cast<int64_t>(program_.num_inputs)) {
      const size_t producer = static_cast<size_t>(ref) - program_.num_inputs;
      if (!permuted_store_[producer].empty()) {
        reject(program_.members[producer].name, " (a Transpose of a computed value) feeds ", member.name,
               " in the group");
      }
      if (squeezed_[producer]) {
        reject(program_.members[producer].name, " reduces without keepdims and feeds ", member.name,
               " in the group");
      }
      return member_node_[producer];
    }
    const size_t k = static_cast<size_t>(ref);
    const ops::ValueInfo& info = inputs_[k];
    if (!is_kernel_dtype(info.dtype)) {
      reject(member.name, " input ", i, " has dtype ", dtype_name(info.dtype));
    }
    if (info.value && info.value->numel() == 1) {
      return constant(read_as_double(view_of(*info.value), 0), info.dtype == DType::kBool);
    }
    if (!fits_space(info.shape, plan_.space)) {
      reject("input ", describe(info.shape), " of ", member.name, " does not fit the space ",
             describe(plan_.space));
    }
    if (!plan_.input_strides[k].empty()) reject("input ", k, " is read both transposed and not");
    if (auto it = loads_.find(k); it != loads_.end()) return it->second;
    PlanNode node;
    node.kind = NodeKind::kLoad;
    node.tensor = static_cast<int>(k);
    node.is_bool = info.dtype == DType::kBool;
    node.domain = domain_of(info.shape);
    const int index = add(std::move(node));
    loads_[k] = index;
    return index;
  }

  int expand(size_t m) {
    const ops::GroupMember& member = program_.members[m];
    const ops::ValueInfo& out = infos_[m];
    const std::string& op = member.op;
    if (!is_kernel_dtype(out.dtype)) reject(member.name, " computes ", dtype_name(out.dtype));
    if (op == "Transpose") return expand_transpose(m);
    const bool reduces = is_reduction_op(op);
    if (!reduces && !fits_space(out.shape, plan_.space)) {
      reject(member.name, "'s output ", describe(out.shape), " does not fit the space ",
             describe(plan_.space));
    }
    if (op == "Identity" || op == "Dropout") return operand(m, 0);
    if (op == "Cast") {
      PlanNode node;
      node.kind = NodeKind::kCast;
      node.cast_to = out.dtype;
      node.is_bool = out.dtype == DType::kBool;
      node.args = {operand(m, 0)};
      return add(std::move(node));
    }
    if (reduces) return expand_reduction(m);
    const ops::ScalarOp* entry = ops::find_scalar_op(op, member.attrs);
    if (entry == nullptr) reject(member.name, " (", op, ") is not a scalar op");
    PlanNode node;
    node.kind = NodeKind::kScalar;
    node.scalar = entry;
    node.params = ops::scalar_attr_values(*entry, member.attrs);
    node.is_bool = entry->result == ops::ScalarResult::kBool;
    const size_t arity = static_cast<size_t>(entry->arity);
    if (op == "Clip") {
      // Clip's bounds are optional inputs: an absent one does not bound.
      node.args.push_back(operand(m, 0));
      for (size_t i = 1; i < 3; ++i) {
        const bool present = i < member.inputs.size() && member.inputs[i] != ops::kGroupAbsent;
        node.args.push_back(present ? operand(m, i)
                                    : constant(i == 1 ? -std::numeric_limits<double>::infinity()
                                                      : std::numeric_limits<double>::infinity()));
      }
    } else if (member.inputs.size() != arity) {
      reject(member.name, " has ", member.inputs.size(), " inputs, its scalar form takes ", arity);
    } else {
      for (size_t i = 0; i < arity; ++i) node.args.push_back(operand(m, i));
    }
    return add(std::move(node));
  }

  int expand_reduction(size_t m) {
    const ops::GroupMember& member = program_.members[m];
    const std::string& op = member.op;
    const int x = operand(m, 0);
    if (plan_.nodes[static_cast<size_t>(x)].is_bool) reject(member.name, " reduces bools");
    if (op == "Softmax" || op == "LogSoftmax") {
      const int max = reduce(ReduceKind::kMax, x);
      const int shifted = scalar("Sub", {x, max});
      const int e = scalar("Exp", {shifted});
      const int sum = reduce(ReduceKind::kSum, e);
      if (op == "LogSoftmax") return scalar("Sub", {shifted, scalar("Log", {sum})});
      return scalar("Mul", {e, scalar("Reciprocal", {sum})});
    }
    if (op == "LayerNormalization") {
      if (member.inputs.size() > 3) reject(member.name, " has a residual input");
      const float epsilon = member.attrs.get_float_or("epsilon", 1e-5f);
      const int count = reduced_count();
      const int mean = scalar("Div", {reduce(ReduceKind::kSum, x), count});
      const int centered = scalar("Sub", {x, mean});
      const int variance =
          scalar("Div", {reduce(ReduceKind::kSum, scalar("Mul", {centered, centered})), count});
      const int inv_std =
          scalar("Reciprocal", {scalar("Sqrt", {scalar("Add", {variance, constant(epsilon)})})});
      int y = scalar("Mul", {scalar("Mul", {centered, inv_std}), operand(m, 1)});
      if (member.inputs.size() > 2 && member.inputs[2] != ops::kGroupAbsent) {
        y = scalar("Add", {y, operand(m, 2)});
      }
      return y;
    }
    if (op == "GlobalAveragePool" || op == "ReduceMean") {
      squeezed_[m] = op == "ReduceMean" && member.attrs.get_int_or("keepdims", 1) == 0;
      return scalar("Div", {reduce(ReduceKind::kSum, x), reduced_count()});
    }
    squeezed_[m] = member.attrs.get_int_or("keepdims", 1) == 0 && op != "GlobalMaxPool";
    if (op == "GlobalMaxPool" || op == "ReduceMax") return reduce(ReduceKind::kMax, x);
    if (op == "ReduceMin") return reduce(ReduceKind::kMin, x);
    if (op == "ReduceSum") return reduce(ReduceKind::kSum, x);
    if (op == "ReduceProd") return reduce(ReduceKind::kProd, x);
    if (op == "ReduceL1") return reduce(ReduceKind::kSum, scalar("Abs", {x}));
    if (op == "ReduceSumSquare") return reduce(ReduceKind::kSum, scalar("Mul", {x, x}));
    if (op == "ReduceL2") return scalar("Sqrt", {reduce(ReduceKind::kSum, scalar("Mul", {x, x}))});
    if (op == "ReduceLogSum") return scalar("Log", {reduce(ReduceKind::kSum, x)});
    if (op == "ReduceLogSumExp") {
      const int max = reduce(ReduceKind::kMax, x);
      const int sum = reduce(ReduceKind::kSum, scalar("Exp", {scalar("Sub", {x, max})}));
      return scalar("Add", {scalar("Log", {sum}), max});
    }
    reject(member.name, " (", op, ") has no expansion");
  }

  // ---- outputs and symbols ---------------------------------------------------------------------

  Shape row_shape(bool keepdims) const {
    Shape shape;
    for (size_t d = 0; d < plan_.space.size(); ++d) {
      const bool reduced = d >= plan_.reduce_begin && d < plan_.reduce_end;
      if (!reduced) {
        shape.push_back(plan_.space[d]);
      } else if (keepdims) {
        shape.push_back(1);
      }
    }
    return shape;
  }

  void add_output(size_t o) {
    const size_t m = static_cast<size_t>(program_.outputs[o]);
    const int node = member_node_[m];
    const Shape& shape = outputs_[o].shape;
    if (!is_kernel_dtype(outputs_[o].dtype)) reject("output ", o, " has dtype ", dtype_name(outputs_[o].dtype));
    Domain domain = Domain::kSpace;
    if (!permuted_store_[m].empty()) {
      if (plan_.nodes[static_cast<size_t>(node)].domain != Domain::kSpace) {
        reject("output ", o, " (", program_.members[m].name, ") transposes a per-row value");
      }
      plan_.output_strides[o] = permuted_store_[m];
    } else if (shape == plan_.space && plan_.nodes[static_cast<size_t>(node)].domain == Domain::kSpace) {
      domain = Domain::kSpace;
    } else if (plan_.schedule != Schedule::kPointwise &&
               plan_.nodes[static_cast<size_t>(node)].domain == Domain::kRow &&
               (shape == row_shape(true) || shape == row_shape(false))) {
      domain = Domain::kRow;
    } else {
      reject("output ", o, " (", program_.members[m].name, ") of shape ", describe(shape),
             " is neither the space ", describe(plan_.space), " nor its reduced rows");
    }
    plan_.output_nodes.push_back(node);
    plan_.output_domains.push_back(domain);
  }

  void assign_symbols() {
    const size_t rank = plan_.space.size();
    plan_.space_symbols.assign(rank, -1);
    std::vector<const Shape*> tensors;
    for (const PlanTensor& t : plan_.inputs) tensors.push_back(&t.shape);
    for (const PlanTensor& t : plan_.outputs) tensors.push_back(&t.shape);
    for (size_t d = 0; d < rank; ++d) {
      if (plan_.space[d] != kDynamicDim) continue;
      for (size_t t = 0; t < tensors.size() && plan_.space_symbols[d] < 0; ++t) {
        const Shape& shape = *tensors[t];
        // Outputs of reduced rows without keepdims have no aligned dims: only full-rank ones.
        if (t >= plan_.inputs.size() && shape.size() != rank) continue;
        if (t < plan_.inputs.size() && loads_.find(t) == loads_.end()) continue;
        if (aligned_dim(shape, rank, d) != kDynamicDim) continue;
        plan_.space_symbols[d] = static_cast<int>(plan_.symbols.size());
        plan_.symbols.push_back(PlanSymbol{static_cast<int>(t), static_cast<int>(d - (rank - shape.size()))});
      }
      if (plan_.space_symbols[d] < 0) reject("no tensor of the group tells dynamic dim ", d, " of the space");
    }
    if (plan_.symbols.size() > kPlanMaxSymbols) {
      reject("the space has ", plan_.symbols.size(), " dynamic dims, at most ", kPlanMaxSymbols);
    }
    for (size_t t = 0; t < tensors.size(); ++t) {
      const Shape& shape = *tensors[t];
      std::vector<int64_t> pattern;
      // Which space dim each tensor dim aligns with (row outputs without keepdims skip the
      // reduced axes).
      std::vector<size_t> dims;
      const bool squeezed_row = t >= plan_.inputs.size() &&
                                plan_.output_domains[t - plan_.inputs.size()] == Domain::kRow &&
                                shape.size() != rank;
      for (size_t d = 0; d < rank; ++d) {
        if (squeezed_row && d >= plan_.reduce_begin && d < plan_.reduce_end) continue;
        dims.push_back(d);
      }
      if (!squeezed_row) dims.erase(dims.begin(), dims.begin() + static_cast<long>(rank - shape.size()));
      for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] != kDynamicDim) {
          pattern.push_back(shape[i]);
          continue;
        }
        const int symbol = plan_.space_symbols[dims[i]];
        if (symbol < 0) {
          // An unused input (a literal) may keep its own dynamic dims; it is never read.
          if (t < plan_.inputs.size() && loads_.find(t) == loads_.end()) {
            pattern.push_back(kDynamicDim);
            continue;
          }
          reject("tensor ", t, " has a dynamic dim where the space is static");
        }
        pattern.push_back(-1 - symbol);
      }
      plan_.patterns.push_back(std::move(pattern));
    }
  }

  const ops::GroupProgram& program_;
  std::span<const ops::ValueInfo> inputs_;
  std::span<const ops::ValueInfo> outputs_;
  std::vector<ops::ValueInfo> infos_;
  std::vector<int> member_node_;
  std::vector<bool> squeezed_;
  std::vector<std::vector<int64_t>> permuted_store_;  // per member: strides of a permuted store
  std::map<size_t, int> loads_;
  GroupPlan plan_;
};

}  // namespace

GroupPlanResult plan_group(const ops::GroupProgram& program, std::span<const ops::ValueInfo> inputs,
                           std::span<const ops::ValueInfo> outputs) {
  return Planner(program, inputs, outputs).run();
}

bool is_reduction_op(std::string_view op_type) {
  return std::find(reduce_ops().begin(), reduce_ops().end(), op_type) != reduce_ops().end();
}

bool is_groupable_op(std::string_view op_type, const AttributeMap& attrs) {
  if (is_reduction_op(op_type)) return true;
  if (op_type == "Cast" || op_type == "Identity" || op_type == "Dropout" || op_type == "Transpose") return true;
  return ops::find_scalar_op(op_type, attrs) != nullptr;
}

}  // namespace kiln::codegen
