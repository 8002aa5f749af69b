#include "passes/fusion_grouping.hpp"

#include <algorithm>
#include <map>
#include <queue>
#include <set>

#include "codegen/group_plan.hpp"
#include "ops/fused_group.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

// A candidate group written as a FusedGroup program: its members, the values it reads from
// outside and the values it hands out.
struct Candidate {
  ops::GroupProgram program;
  std::vector<ir::ValueId> inputs;
  std::vector<ir::ValueId> outputs;
};

// Scalar-op equivalents of one evaluation of `op` (a transcendental or a division costs about
// eight simple instructions on a GPU), for the recomputation estimate below.
double op_cost(const std::string& op) {
  static const std::set<std::string> kExpensive = {
      "Exp", "Log", "Erf", "Tanh", "Sigmoid", "Softplus", "Softsign", "Mish", "Gelu", "Pow", "Sqrt", "Reciprocal",
      "Div", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Elu",
      "Selu", "Celu", "HardSwish", "HardSigmoid"};
  return kExpensive.count(op) ? 8.0 : 1.0;
}

// Elements of a shape, dynamic dims counted as 1 (ratios between a group's shapes share them).
double static_numel(const Shape& shape) {
  double n = 1.0;
  for (int64_t d : shape) n *= d == kDynamicDim ? 1.0 : static_cast<double>(d);
  return n;
}

bool is_value_input(const ir::Node& node, size_t i) {
  const ops::OpDef* def = ops::find_op(node.op_type);
  return def && std::find(def->value_inputs.begin(), def->value_inputs.end(), static_cast<int>(i)) !=
                    def->value_inputs.end();
}

class Grouper {
 public:
  explicit Grouper(ir::Graph& graph) : graph_(graph) {}

  int run(FusionReport* report) {
    const size_t n = graph_.nodes.size();
    group_of_.assign(n, -1);
    consumers_.assign(n, {});
    for (size_t i = 0; i < n; ++i) {
      const ir::Node& node = graph_.nodes[i];
      if (node.removed) continue;
      for (ir::ValueId in : node.inputs) {
        if (in < 0) continue;
        const int32_t p = graph_.value(in).producer;
        if (p >= 0) consumers_[static_cast<size_t>(p)].insert(static_cast<int32_t>(i));
      }
    }
    // Every node that plans on its own starts as a group of one.
    for (size_t i = 0; i < n; ++i) {
      const ir::Node& node = graph_.nodes[i];
      if (node.removed) continue;
      if (!node.domain.empty() || !codegen::is_groupable_op(node.op_type, node.attrs)) {
        note(i, "runs its own kernel: " + node.op_type + " is neither a pointwise op nor a reduction");
        continue;
      }
      if (node.outputs.size() != 1) {
        note(i, "runs its own kernel: it has " + std::to_string(node.outputs.size()) + " outputs");
        continue;
      }
      std::string reason;
      if (!plans({static_cast<int32_t>(i)}, &reason)) {
        note(i, "kernel: " + reason);
        continue;
      }
      group_of_[i] = static_cast<int>(groups_.size());
      groups_.push_back({static_cast<int32_t>(i)});
    }
    // Merge along edges in topological order: a node's group takes in its producers' groups.
    for (size_t i = 0; i < n; ++i) {
      if (group_of_[i] < 0) continue;
      for (ir::ValueId in : graph_.nodes[i].inputs) {
        if (in < 0) continue;
        const int32_t p = graph_.value(in).producer;
        if (p < 0 || group_of_[static_cast<size_t>(p)] < 0) continue;
        const int consumer = group_of_[i];
        const int producer = group_of_[static_cast<size_t>(p)];
        if (consumer == producer) continue;
        std::string reason;
        if (!try_merge(producer, consumer, &reason)) {
          note(i, "not merged with '" + graph_.nodes[static_cast<size_t>(p)].name + "': " + reason);
        }
      }
    }
    const int formed = rewrite(report);
    return formed;
  }

 private:
  void note(size_t node, std::string reason) {
    reasons_[node] = FusionDecision{graph_.nodes[node].name, graph_.nodes[node].op_type, "", std::move(reason)};
  }

  bool in_groups(int32_t node, int a, int b) const {
    const int g = group_of_[static_cast<size_t>(node)];
    return g >= 0 && (g == a || g == b);
  }

  // A path from group `from` to group `to` through a node outside both (merging them would then
  // make a cycle).
  bool reaches_through_outside(int from, int to) const {
    const int32_t limit = groups_[static_cast<size_t>(to)].back();
    std::vector<int32_t> stack;
    std::set<int32_t> seen;
    for (int32_t m : groups_[static_cast<size_t>(from)]) {
      for (int32_t c : consumers_[static_cast<size_t>(m)]) {
        if (!in_groups(c, from, to) && c < limit && seen.insert(c).second) stack.push_back(c);
      }
    }
    while (!stack.empty()) {
      const int32_t x = stack.back();
      stack.pop_back();
      for (int32_t c : consumers_[static_cast<size_t>(x)]) {
        if (group_of_[static_cast<size_t>(c)] == to) return true;
        if (in_groups(c, from, to) || c >= limit || !seen.insert(c).second) continue;
        stack.push_back(c);
      }
    }
    return false;
  }

  // A pointwise kernel evaluates every member once per element of its space, so a member whose
  // output is smaller (a value broadcast into the space, e.g. a squeeze-excitation gate) is
  // recomputed space / its elements times per value. The extra scalar ops of `members` when they
  // plan as a pointwise kernel (row and column kernels compute row values once per row), and per
  // member how many times each of its values is computed.
  struct Recompute {
    double extra_ops = 0.0;
    std::map<int32_t, double> factor;
  };
  Recompute recompute(const std::vector<int32_t>& members) const {
    Recompute r;
    double space = 0.0;
    for (int32_t m : members) {
      const ir::Node& node = graph_.nodes[static_cast<size_t>(m)];
      if (codegen::is_reduction_op(node.op_type)) return r;  // not a pointwise kernel
      space = std::max(space, static_numel(graph_.value(node.outputs[0]).shape));
    }
    for (int32_t m : members) {
      const ir::Node& node = graph_.nodes[static_cast<size_t>(m)];
      const double own = static_numel(graph_.value(node.outputs[0]).shape);
      if (own <= 0.0 || own >= space) continue;
      r.factor[m] = space / own;
      r.extra_ops += (space - own) * op_cost(node.op_type);
    }
    return r;
  }

  // Bytes the kernel of `members` reads and writes (static dims; dynamic ones counted as 1).
  double bytes_moved(const std::vector<int32_t>& members) const {
    const Candidate c = candidate(members);
    double bytes = 0.0;
    for (const std::vector<ir::ValueId>* values : {&c.inputs, &c.outputs}) {
      for (ir::ValueId v : *values) {
        const ir::Value& value = graph_.value(v);
        bytes += static_numel(value.shape) * static_cast<double>(dtype_size(value.dtype));
      }
    }
    return bytes;
  }

  bool try_merge(int producer, int consumer, std::string* reason) {
    if (reaches_through_outside(producer, consumer) || reaches_through_outside(consumer, producer)) {
      *reason = "a node outside both groups lies between them";
      return false;
    }
    std::vector<int32_t> members = groups_[static_cast<size_t>(producer)];
    members.insert(members.end(), groups_[static_cast<size_t>(consumer)].begin(),
                   groups_[static_cast<size_t>(consumer)].end());
    std::sort(members.begin(), members.end());
    if (members.size() > ops::kGroupMaxMembers) {
      *reason = "the group would exceed " + std::to_string(ops::kGroupMaxMembers) + " members";
      return false;
    }
    if (!plans(members, reason)) return false;
    // Merging saves a launch and a round trip through memory; recomputing broadcast values costs
    // issue slots. A memory-bound kernel hides about kOpsPerByte scalar ops per byte it moves,
    // and a separate kernel costs about kLaunchOps more; recomputation beyond both would cost more
    // than the merge saves.
    const Recompute r = recompute(members);
    const double allowance = kOpsPerByte * bytes_moved(members) + kLaunchOps;
    if (r.extra_ops > allowance) {
      *reason = "merged, its broadcast values would be recomputed for about " +
                std::to_string(static_cast<int64_t>(r.extra_ops)) + " extra scalar ops, more than the " +
                std::to_string(static_cast<int64_t>(allowance)) + " the kernel's memory traffic and a launch hide";
      return false;
    }
    for (int32_t m : groups_[static_cast<size_t>(producer)]) group_of_[static_cast<size_t>(m)] = consumer;
    groups_[static_cast<size_t>(consumer)] = std::move(members);
    groups_[static_cast<size_t>(producer)].clear();
    return true;
  }

  Candidate candidate(const std::vector<int32_t>& members) const {
    std::set<int32_t> inside(members.begin(), members.end());
    Candidate c;
    std::map<ir::ValueId, int64_t> ref_of_member_output;
    for (size_t m = 0; m < members.size(); ++m) {
      ref_of_member_output[graph_.nodes[static_cast<size_t>(members[m])].outputs[0]] = static_cast<int64_t>(m);
    }
    // External inputs first (their count offsets the member references).
    for (int32_t index : members) {
      const ir::Node& node = graph_.nodes[static_cast<size_t>(index)];
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        const ir::ValueId v = node.inputs[i];
        if (v < 0 || ref_of_member_output.count(v)) continue;
        if (is_value_input(node, i) && graph_.is_constant(v)) continue;
        if (std::find(c.inputs.begin(), c.inputs.end(), v) == c.inputs.end()) c.inputs.push_back(v);
      }
    }
    c.program.num_inputs = c.inputs.size();
    for (int32_t index : members) {
      const ir::Node& node = graph_.nodes[static_cast<size_t>(index)];
      ops::GroupMember member;
      member.name = node.name;
      member.op = node.op_type;
      member.attrs = node.attrs;
      member.def = ops::find_op(node.op_type);
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        const ir::ValueId v = node.inputs[i];
        std::shared_ptr<const HostTensor> value;
        int64_t ref = ops::kGroupAbsent;
        if (v >= 0 && ref_of_member_output.count(v)) {
          ref = static_cast<int64_t>(c.inputs.size()) + ref_of_member_output.at(v);
        } else if (v >= 0 && is_value_input(node, i) && graph_.is_constant(v)) {
          ref = ops::kGroupAttributeValue;
          value = graph_.value(v).constant;
        } else if (v >= 0) {
          ref = std::find(c.inputs.begin(), c.inputs.end(), v) - c.inputs.begin();
        }
        member.inputs.push_back(ref);
        member.values.push_back(std::move(value));
      }
      c.program.members.push_back(std::move(member));
      const ir::ValueId out = node.outputs[0];
      bool used_outside = is_graph_output(graph_, out);
      for (int32_t reader : consumers_[static_cast<size_t>(index)]) used_outside |= !inside.count(reader);
      if (used_outside) {
        c.outputs.push_back(out);
        c.program.outputs.push_back(static_cast<int64_t>(c.program.members.size()) - 1);
      }
    }
    return c;
  }

  std::vector<ops::ValueInfo> infos(const std::vector<ir::ValueId>& values, bool with_constants) const {
    std::vector<ops::ValueInfo> out;
    for (ir::ValueId v : values) {
      const ir::Value& value = graph_.value(v);
      out.push_back(ops::ValueInfo{value.dtype, value.shape, with_constants ? value.constant.get() : nullptr, true});
    }
    return out;
  }

  bool plans(const std::vector<int32_t>& members, std::string* reason) const {
    const Candidate c = candidate(members);
    if (c.outputs.empty()) {
      *reason = "the group's results are unused";
      return false;
    }
    const codegen::GroupPlanResult result = codegen::plan_group(c.program, infos(c.inputs, true), infos(c.outputs, false));
    if (!result.plan) *reason = result.reason;
    return result.plan.has_value();
  }

  int rewrite(FusionReport* report) {
    std::vector<ir::Node> nodes;
    std::map<int32_t, size_t> group_at_last_member;
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (!groups_[g].empty()) group_at_last_member[groups_[g].back()] = g;
    }
    int formed = 0;
    for (size_t i = 0; i < graph_.nodes.size(); ++i) {
      const int g = group_of_[i];
      if (g < 0) {
        nodes.push_back(std::move(graph_.nodes[i]));
        continue;
      }
      if (!group_at_last_member.count(static_cast<int32_t>(i))) continue;  // emitted with its group
      const std::vector<int32_t>& members = groups_[static_cast<size_t>(g)];
      const Candidate c = candidate(members);
      ir::Node fused;
      fused.name = graph_.nodes[i].name;
      fused.op_type = "FusedGroup";
      fused.inputs = c.inputs;
      fused.outputs = c.outputs;
      ops::encode_group(c.program, fused.attrs);
      if (report) {
        const Recompute r = recompute(members);
        for (int32_t m : members) {
          const ir::Node& member = graph_.nodes[static_cast<size_t>(m)];
          auto it = reasons_.find(static_cast<size_t>(m));
          std::string reason = it == reasons_.end() ? "" : it->second.reason;
          if (auto f = r.factor.find(m); f != r.factor.end()) {
            reason = "recomputed " + std::to_string(static_cast<int64_t>(f->second + 0.5)) +
                     " times per value (broadcast into the group's pointwise space)" +
                     (reason.empty() ? "" : "; " + reason);
          }
          report->decisions.push_back(FusionDecision{member.name, member.op_type, fused.name, std::move(reason)});
        }
        report->members += static_cast<int>(members.size());
      }
      nodes.push_back(std::move(fused));
      ++formed;
    }
    if (report) {
      report->groups = formed;
      for (const auto& [index, decision] : reasons_) {
        if (group_of_[index] < 0) report->decisions.push_back(decision);
      }
    }
    graph_.nodes = topological_order(std::move(nodes));
    graph_.compact();
    return formed;
  }

  // Stable topological order: a group sits where its last member was, so a reader of an earlier
  // member's output may come before it; such readers move after it.
  std::vector<ir::Node> topological_order(std::vector<ir::Node> nodes) const {
    std::map<ir::ValueId, size_t> producer;
    for (size_t i = 0; i < nodes.size(); ++i)
      for (ir::ValueId out : nodes[i].outputs) producer[out] = i;
    std::vector<std::vector<size_t>> readers(nodes.size());
    std::vector<size_t> waiting(nodes.size(), 0);
    for (size_t i = 0; i < nodes.size(); ++i) {
      std::set<size_t> deps;
      for (ir::ValueId in : nodes[i].inputs) {
        auto it = in >= 0 ? producer.find(in) : producer.end();
        if (it != producer.end() && it->second != i) deps.insert(it->second);
      }
      waiting[i] = deps.size();
      for (size_t d : deps) readers[d].push_back(i);
    }
    std::priority_queue<size_t, std::vector<size_t>, std::greater<size_t>> ready;
    for (size_t i = 0; i < nodes.size(); ++i)
      if (waiting[i] == 0) ready.push(i);
    std::vector<ir::Node> sorted;
    while (!ready.empty()) {
      const size_t i = ready.top();
      ready.pop();
      sorted.push_back(std::move(nodes[i]));
      for (size_t r : readers[i])
        if (--waiting[r] == 0) ready.push(r);
    }
    if (sorted.size() != nodes.size()) {
      fail(ErrorCode::kInternal, "fusion grouping made the graph cyclic (", nodes.size() - sorted.size(),
           " nodes left unordered)");
    }
    return sorted;
  }

  // An H100 issues about 33e12 scalar ops per second and moves about 3e12 bytes: ~10 ops per
  // byte; a launch costs a few microseconds, ~1e8 ops.
  static constexpr double kOpsPerByte = 10.0;
  static constexpr double kLaunchOps = 1e8;

  ir::Graph& graph_;
  std::vector<int> group_of_;
  std::vector<std::vector<int32_t>> groups_;
  std::vector<std::set<int32_t>> consumers_;
  std::map<size_t, FusionDecision> reasons_;
};

}  // namespace

int form_fusion_groups(ir::Graph& graph, FusionReport* report) { return Grouper(graph).run(report); }

}  // namespace kiln::passes
