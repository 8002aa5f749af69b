// kiln's FusedGroup op (ops/fused_group.hpp): the attribute encoding of a group and its
// inference, which runs the members' own infer functions.
#include <string>

#include "ops/fused_group.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {

std::string member_attribute_name(size_t member, std::string_view name) {
  // Appended piecewise: GCC 12 warns (-Wrestrict) about chained std::string operator+ here.
  std::string key("m");
  key += std::to_string(member);
  key += '.';
  key += name;
  return key;
}

namespace {

constexpr size_t kMaxInputs = kGroupMaxInputs;
constexpr size_t kMaxOutputs = kGroupMaxOutputs;

std::string input_value_attribute(size_t input) {
  std::string key("input");
  key += std::to_string(input);
  return key;
}

}  // namespace

GroupProgram decode_group(std::string_view context, const AttributeMap& attrs, size_t num_inputs,
                          size_t num_outputs) {
  auto bad = [&](auto&&... parts) {
    kiln::fail(ErrorCode::kInvalidArgument, context, ": FusedGroup ", parts...);
  };
  if (attrs.get("group_ops").kind != Attribute::Kind::kStrings) bad("attribute 'group_ops' must hold strings");
  const std::vector<std::string>& ops = attrs.get("group_ops").strings;
  const std::vector<int64_t>& arity = attrs.get_ints("group_arity");
  const std::vector<int64_t>& refs = attrs.get_ints("group_inputs");
  const std::vector<int64_t>& outputs = attrs.get_ints("group_outputs");
  const Attribute* names = attrs.find("group_names");
  if (ops.empty() || ops.size() > kGroupMaxMembers) {
    bad("has ", ops.size(), " members, expected 1..", kGroupMaxMembers);
  }
  if (arity.size() != ops.size()) {
    bad("attribute 'group_arity' has ", arity.size(), " entries for ", ops.size(), " members");
  }
  if (names && (names->kind != Attribute::Kind::kStrings || names->strings.size() != ops.size())) {
    bad("attribute 'group_names' must hold one string per member (", ops.size(), ")");
  }
  if (num_inputs > kMaxInputs || num_outputs == 0 || num_outputs > kMaxOutputs) {
    bad("has ", num_inputs, " inputs and ", num_outputs, " outputs, at most ", kMaxInputs,
        " inputs and 1..", kMaxOutputs, " outputs are supported");
  }
  if (outputs.size() != num_outputs) {
    bad("attribute 'group_outputs' has ", outputs.size(), " entries for ", num_outputs,
        " outputs");
  }

  GroupProgram program;
  program.num_inputs = num_inputs;
  size_t next_ref = 0;
  for (size_t m = 0; m < ops.size(); ++m) {
    GroupMember member;
    member.op = ops[m];
    member.name = names ? names->strings[m] : member.op;
    member.def = find_op(member.op);
    if (member.def == nullptr) {
      kiln::fail(ErrorCode::kUnsupported, context, ": FusedGroup member ", m, " has op '",
                 member.op, "', which this build of kiln does not know");
    }
    const int64_t count = arity[m];
    if (count < member.def->min_inputs || count > member.def->max_inputs ||
        next_ref + static_cast<size_t>(count) > refs.size()) {
      bad("member ", m, " ('", member.name, "', ", member.op, ") has arity ", count,
          ", expected ", member.def->min_inputs, "..", member.def->max_inputs,
          " within the references given");
    }
    const std::string prefix = member_attribute_name(m, "");
    for (const auto& [name, value] : attrs.items()) {
      if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0) {
        member.attrs.set(name.substr(prefix.size()), value);
      }
    }
    for (int64_t i = 0; i < count; ++i) {
      const int64_t ref = refs[next_ref++];
      std::shared_ptr<const HostTensor> value;
      if (ref == kGroupAttributeValue) {
        const std::string key = input_value_attribute(static_cast<size_t>(i));
        const Attribute* stored = member.attrs.find(key);
        if (stored == nullptr || stored->kind != Attribute::Kind::kTensor || !stored->tensor) {
          bad("member ", m, " ('", member.name, "') input ", i,
              " is an attribute value but attribute '", prefix, key, "' holds no tensor");
        }
        value = stored->tensor;
        member.attrs.erase(key);
      } else if (ref != kGroupAbsent &&
                 (ref < 0 || ref >= static_cast<int64_t>(num_inputs + m))) {
        bad("member ", m, " ('", member.name, "') input ", i, " refers to ", ref,
            ", expected a layer input (0..", num_inputs, ") or an earlier member");
      }
      member.inputs.push_back(ref);
      member.values.push_back(std::move(value));
    }
    program.members.push_back(std::move(member));
  }
  if (next_ref != refs.size()) {
    bad("attribute 'group_inputs' has ", refs.size(), " references, the arities use ", next_ref);
  }
  for (int64_t out : outputs) {
    if (out < 0 || out >= static_cast<int64_t>(ops.size())) {
      bad("output refers to member ", out, ", expected 0..", ops.size() - 1);
    }
  }
  program.outputs = outputs;
  return program;
}

void encode_group(const GroupProgram& program, AttributeMap& attrs) {
  std::vector<std::string> ops, names;
  std::vector<int64_t> arity, refs;
  for (size_t m = 0; m < program.members.size(); ++m) {
    const GroupMember& member = program.members[m];
    ops.push_back(member.op);
    names.push_back(member.name);
    arity.push_back(static_cast<int64_t>(member.inputs.size()));
    for (size_t i = 0; i < member.inputs.size(); ++i) {
      refs.push_back(member.inputs[i]);
      if (member.inputs[i] == kGroupAttributeValue) {
        attrs.set(member_attribute_name(m, input_value_attribute(i)),
                  Attribute::of_tensor(member.values.at(i)));
      }
    }
    for (const auto& [name, value] : member.attrs.items()) {
      attrs.set(member_attribute_name(m, name), value);
    }
  }
  attrs.set("group_ops", Attribute::of_strings(std::move(ops)));
  attrs.set("group_names", Attribute::of_strings(std::move(names)));
  attrs.set("group_arity", Attribute::of_ints(std::move(arity)));
  attrs.set("group_inputs", Attribute::of_ints(std::move(refs)));
  attrs.set("group_outputs", Attribute::of_ints(program.outputs));
}

std::vector<ValueInfo> infer_group_members(const GroupProgram& program,
                                           std::span<const ValueInfo> inputs) {
  std::vector<ValueInfo> results;
  results.reserve(program.members.size());
  for (const GroupMember& member : program.members) {
    std::vector<ValueInfo> member_inputs;
    for (size_t i = 0; i < member.inputs.size(); ++i) {
      const int64_t ref = member.inputs[i];
      ValueInfo info;
      if (ref == kGroupAbsent) {
        info.present = false;
      } else if (ref == kGroupAttributeValue) {
        info.dtype = member.values[i]->dtype;
        info.shape = member.values[i]->shape;
        info.value = member.values[i].get();
      } else if (ref < static_cast<int64_t>(program.num_inputs)) {
        info = inputs[static_cast<size_t>(ref)];
      } else {
        info = results[static_cast<size_t>(ref) - program.num_inputs];
      }
      member_inputs.push_back(info);
    }
    std::vector<ValueInfo> outputs(1);
    infer_node(*member.def, member.name, member.attrs, member_inputs, outputs);
    outputs[0].value = nullptr;
    results.push_back(std::move(outputs[0]));
  }
  return results;
}

namespace {

void infer_fused_group(InferContext& ctx) {
  const std::string context =
      "node '" + std::string(ctx.node_name()) + "' (" + std::string(ctx.op()) + ")";
  const GroupProgram program =
      decode_group(context, ctx.attrs(), ctx.num_inputs(), ctx.num_outputs());
  std::vector<ValueInfo> inputs;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) inputs.push_back(ctx.input(i));
  const std::vector<ValueInfo> members = infer_group_members(program, inputs);
  for (size_t o = 0; o < program.outputs.size(); ++o) {
    const ValueInfo& member = members[static_cast<size_t>(program.outputs[o])];
    ctx.output(o).dtype = member.dtype;
    ctx.output(o).shape = member.shape;
  }
}

}  // namespace

void register_fused_ops(OpRegistry& registry) {
  OpDef def;
  def.name = "FusedGroup";
  def.min_inputs = 0;
  def.max_inputs = static_cast<int>(kMaxInputs);
  def.min_outputs = 1;
  def.max_outputs = static_cast<int>(kMaxOutputs);
  def.infer = infer_fused_group;
  registry.add(std::move(def));
}

}  // namespace kiln::ops
