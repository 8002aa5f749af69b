// The scalar op table: the one place that maps an ONNX pointwise op on floats to its formula in
// ops/scalar_math.h. The CPU reference and the CUDA kernels read attribute values through it, and
// the CUDA code generator emits one call per op from it, e.g. `kiln_leaky_relu<float>(x, 0.01f)`.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/attributes.hpp"

namespace kiln::ops {

// A float attribute, passed to the formula after the operands. Int attributes (IsInf's detect_*
// flags) travel as floats too.
struct ScalarAttr {
  std::string_view name;
  float default_value;
};

enum class ScalarResult : uint8_t { kSameAsInputs, kBool };

// What the operands are.
enum class ScalarInputs : uint8_t {
  kFloat,              // every operand is T
  kBool,               // every operand is bool (And, Or, Xor, Not)
  kConditionThenFloat  // a bool, then T operands (Where)
};

// One formula: `template <typename T> R function(operands..., float attrs...)`, with `arity`
// operands typed by `inputs` and one float per entry of `attrs`, R given by `result`.
struct ScalarOp {
  std::string_view op_type;   // ONNX op type, e.g. "LeakyRelu"
  std::string_view function;  // function in scalar_math.h, e.g. "kiln_leaky_relu"
  int arity;                  // tensor operands (1, 2 or 3)
  std::vector<ScalarAttr> attrs;
  ScalarInputs inputs;
  ScalarResult result;
  // For an op with several entries, the attribute value choosing this one ("approximate=tanh",
  // "fmod=1"); empty for an op with one entry.
  std::string_view selected_by;
};

// Every entry, for the generator's tests and docs. Ops with several formulas (Gelu, Mod) have one
// entry each. Variadic Sum, Mean, Min and Max are entries for exactly two operands (the builder
// folds other counts into pairs for cuda engines). Clip's min and max are operands 2 and 3; for an
// absent one pass -kiln_infinity<T>() or kiln_infinity<T>(). Pow is the float ** float form.
const std::vector<ScalarOp>& scalar_ops();

// The entry that computes `op_type` with `attrs` (Gelu approximate="tanh" gives the tanh entry), or
// nullptr when `op_type` is not a float pointwise op of the table or a selecting attribute has a
// value it lacks (Gelu approximate="bogus", Mod fmod=2). Throws kiln::Error(kInvalidArgument) when
// a selecting attribute has the wrong kind (approximate must be a string, fmod an int).
const ScalarOp* find_scalar_op(std::string_view op_type, const AttributeMap& attrs);

// The float arguments for entry `op`'s attributes, in order: the value in `attrs` (a float, or an
// int converted), else the table's default. Throws kiln::Error(kInvalidArgument) naming the op and
// attribute when one has another kind.
std::vector<float> scalar_attr_values(const ScalarOp& op, const AttributeMap& attrs);

}  // namespace kiln::ops
