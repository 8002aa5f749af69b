// What one fusion group computes, in the terms a kernel is generated from: an iteration space
// (the shape every value of the group broadcasts into), the axes its reductions reduce, and a DAG
// of scalar nodes — loads of layer inputs, literals, pointwise ops of the scalar table
// (ops/scalar_ops.hpp), casts and reductions — each living either per element of the space or per
// reduced row. Composite members (Softmax, LayerNormalization, ReduceMean, ...) are expanded into
// those nodes here, so one mechanism runs them all.
//
// plan_group is also the grouping pass's test of whether a candidate group can become a kernel:
// a group is formed only when it plans.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ops/fused_group.hpp"
#include "ops/scalar_ops.hpp"

namespace kiln::codegen {

// How the threads of a kernel walk the space.
enum class Schedule : uint8_t {
  kPointwise,  // no reduction: each thread computes vectors of consecutive elements
  kRow,        // reduced axes are the innermost ones: threads of a row cooperate on it
  kColumn,     // reduced axes have inner axes after them: threads walk columns of the space
};

// Where a value varies: per element of the space, or per reduced row (constant along the
// reduced axes; all threads of a row hold it).
enum class Domain : uint8_t { kSpace, kRow };

enum class NodeKind : uint8_t { kLoad, kConstant, kScalar, kCast, kReduce };
enum class ReduceKind : uint8_t { kSum, kMax, kMin, kProd };

struct PlanNode {
  NodeKind kind = NodeKind::kConstant;
  Domain domain = Domain::kSpace;
  bool is_bool = false;         // the value is a bool (else a float, whatever its storage dtype)
  int tensor = -1;              // kLoad: layer input index
  double constant = 0.0;        // kConstant
  const ops::ScalarOp* scalar = nullptr;  // kScalar
  std::vector<float> params;    // kScalar: the table entry's attribute arguments
  DType cast_to = DType::kFloat32;        // kCast: the destination dtype (16-bit floats round)
  ReduceKind reduce = ReduceKind::kSum;   // kReduce
  std::vector<int> args;        // node indices (earlier nodes)
  int level = 0;                // reductions below it: a kReduce is 1 + its argument's level
};

struct PlanTensor {
  DType dtype = DType::kFloat32;
  Shape shape;                  // as the layer sees it; kDynamicDim where symbolic
};

// A dimension of the space known only at run time: dim `axis` of layer tensor `tensor` (inputs
// first, then outputs).
struct PlanSymbol {
  int tensor = 0;
  int axis = 0;
};

struct GroupPlan {
  Schedule schedule = Schedule::kPointwise;
  Shape space;                  // kDynamicDim where symbolic (see space_symbols)
  std::vector<int> space_symbols;  // per space dim: its symbol, or -1 when static
  std::vector<PlanSymbol> symbols;
  size_t reduce_begin = 0;      // reduced axes of the space: [reduce_begin, reduce_end)
  size_t reduce_end = 0;
  int passes = 0;               // reduction levels (0 for pointwise)
  std::vector<PlanNode> nodes;
  std::vector<PlanTensor> inputs;
  std::vector<PlanTensor> outputs;
  std::vector<int> output_nodes;          // per layer output
  std::vector<Domain> output_domains;     // per layer output
  // Per layer tensor (inputs, then outputs): each dim as >= 0 (static) or -1 - s (symbol s).
  std::vector<std::vector<int64_t>> patterns;
  // Per layer input and per layer output: empty when the tensor is laid out as its shape says
  // (broadcast against the space), else its element stride along each space dim — a Transpose
  // folded into the group, read (an input) or written (an output) in place. The innermost dim
  // always keeps stride 1 (or extent 1), so accesses stay vectorised and coalesced.
  std::vector<std::vector<int64_t>> input_strides;
  std::vector<std::vector<int64_t>> output_strides;
};

struct GroupPlanResult {
  std::optional<GroupPlan> plan;
  std::string reason;  // why the group cannot become a kernel, when plan is empty
};

inline constexpr size_t kPlanMaxTensors = 32;  // layer inputs + outputs of one kernel
inline constexpr size_t kPlanMaxSymbols = 8;

// Plans `program` for layer inputs and outputs of the given dtypes and build-time shapes.
// `inputs[i].value` marks constant inputs; one-element float/bool constants become literals.
// Never throws for an unsupported group: the reason says what does not fit.
GroupPlanResult plan_group(const ops::GroupProgram& program, std::span<const ops::ValueInfo> inputs,
                           std::span<const ops::ValueInfo> outputs);

// Whether a node of this op type could ever be a group member (pointwise or reduction kind);
// plan_group decides for concrete groups.
bool is_groupable_op(std::string_view op_type, const AttributeMap& attrs);
bool is_reduction_op(std::string_view op_type);

}  // namespace kiln::codegen
