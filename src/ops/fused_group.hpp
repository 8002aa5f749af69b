// FusedGroup: a connected group of ops run as one layer. The builder's fusion grouping
// (passes/fusion_grouping.hpp) forms groups of pointwise ops and reductions; the CUDA backend runs
// each group as one kernel generated for it at build time (codegen/), the CPU reference runs the
// members one after the other with their own kernels, so a group means exactly what its members
// mean.
//
// Attributes of a FusedGroup node or layer (L = its number of inputs):
//   group_ops      STRINGS  the members' op types, in evaluation order
//   group_names    STRINGS  the members' node names (for messages and `kiln build --explain`)
//   group_arity    INTS     each member's number of inputs
//   group_inputs   INTS     every member's inputs, concatenated. r in [0, L): layer input r;
//                           L + m: the output of member m (an earlier member); kGroupAbsent: an
//                           absent optional input; kGroupAttributeValue: the constant stored in
//                           the member's attribute "m<j>.input<i>" (a value an infer function
//                           reads, e.g. a reduction's axes)
//   group_outputs  INTS     per layer output, the member whose output it is
//   m<j>.<name>             member j's attribute <name>
// Each member has exactly one output. Layer attributes starting with "kiln_kernel" belong to the
// backend that runs the group (codegen/group_kernel_plan.hpp).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/attributes.hpp"
#include "ops/op_registry.hpp"

namespace kiln::ops {

inline constexpr int64_t kGroupAbsent = -1;
inline constexpr int64_t kGroupAttributeValue = -2;
inline constexpr size_t kGroupMaxMembers = 512;
inline constexpr size_t kGroupMaxInputs = 64;
inline constexpr size_t kGroupMaxOutputs = 16;

struct GroupMember {
  std::string name;
  std::string op;
  AttributeMap attrs;
  std::vector<int64_t> inputs;  // references, as in group_inputs
  // Per input: the constant for a kGroupAttributeValue reference, else null.
  std::vector<std::shared_ptr<const HostTensor>> values;
  const OpDef* def = nullptr;  // set by decode_group
};

struct GroupProgram {
  size_t num_inputs = 0;
  std::vector<GroupMember> members;
  std::vector<int64_t> outputs;  // member index per layer output
};

// "m<member>.<name>": where member `member`'s attribute `name` is stored.
std::string member_attribute_name(size_t member, std::string_view name);

// Reads and checks a FusedGroup's attributes for a layer of `num_inputs` inputs and
// `num_outputs` outputs: known ops, member arities within their OpDefs, every reference in range
// (inputs, earlier members, attribute values present), one or more outputs. Throws
// kiln::Error(kInvalidArgument) "<context>: ..." naming the member; kUnsupported for an op this
// build does not know.
GroupProgram decode_group(std::string_view context, const AttributeMap& attrs, size_t num_inputs,
                          size_t num_outputs);

// Writes `program` into `attrs` (the group_* and m<j>.* attributes); other attributes stay.
void encode_group(const GroupProgram& program, AttributeMap& attrs);

// Runs each member's infer function in order on the layer inputs' infos; returns one ValueInfo
// per member (value == null: member outputs are not computed). Errors name the member's node.
std::vector<ValueInfo> infer_group_members(const GroupProgram& program,
                                           std::span<const ValueInfo> inputs);

}  // namespace kiln::ops
