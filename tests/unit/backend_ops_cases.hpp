// The cases of the backend-ops conformance test (backend_ops_conformance_test.cpp): for an op
// whose default case does not fit (the op's minimum number of inputs, each [2, 3, 4] and random,
// no attributes), the inputs, attributes and value domains of its one-layer engines.
//
// Each case runs once per dtype the backend's registration claims (the "dtype under test"),
// restricted to OpCase::dtypes when given; inputs without a fixed dtype take the dtype under
// test. A dtype the op's own rules refuse (its infer function) is skipped; a case that every
// dtype it tries refuses fails the test, since it then tests nothing.
//
// Cases register themselves, one family per file (tests/unit/backend_ops_cases_<family>.cpp, built
// into kiln_unit_tests by the glob in tests/CMakeLists.txt; static initialisers are safe there, as
// the objects are linked into the executable, not pulled from an archive):
//
//   namespace kiln::conformance {
//   namespace {
//   [[maybe_unused]] const bool kRegistered = [] {
//     register_op_cases("MyOp", {{.inputs = {input({2, 3}), i64({1}, {0})}, .attrs = ...}});
//     return true;
//   }();
//   }  // namespace
//   }  // namespace kiln::conformance
//
// (then raise the test's case floors, kCpuCaseFloor and kCudaCaseFloor, to the new counts).
//
// Inputs are graph inputs unless made constants. A node whose inputs are all constants is folded
// at build time (outputs up to 16 MiB), so such a case tests nothing: the test fails when the
// engine built from a case has no layer of its op.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/attributes.hpp"
#include "base/host_tensor.hpp"

namespace kiln::conformance {

// Writes a tensor's values (its dtype and shape are set); `rng` is the case's generator.
using Fill = std::function<void(HostTensor&, std::mt19937&)>;

struct CaseInput {
  enum class Kind { kRuntime, kConstant, kAbsent };
  Kind kind = Kind::kRuntime;
  Shape shape = {};
  std::optional<DType> dtype = std::nullopt;  // nullopt: the dtype under test
  Fill fill = nullptr;                        // nullptr: random_values
  std::vector<size_t> dynamic_dims = {};  // graph inputs: dims declared dynamic (run at `shape`)
};

// A graph input (the caller binds it at run time).
CaseInput input(Shape shape, Fill fill = nullptr);
CaseInput input(Shape shape, DType dtype, Fill fill = nullptr);
// A constant the builder sees (shape tensors, axes, weights): fill is required.
CaseInput constant(Shape shape, Fill fill);
CaseInput constant(Shape shape, DType dtype, Fill fill);
// An int64 constant holding `values` (axes, shapes, pads, K).
CaseInput i64(Shape shape, std::vector<int64_t> values);
// An optional input left out (kNoValue).
CaseInput absent();

// ---- value generators ------------------------------------------------------------------------
// The default: reals in [-1, 1] for floats, integers in [1, 5] for integers (no zeros: integer
// Div/Mod stay defined), true or false for bool.
void random_values(HostTensor& t, std::mt19937& rng);
// `values` in order, converted to the tensor's dtype (integers saturate).
Fill values(std::vector<double> values);
// Random values in [low, high]: reals for float dtypes, integers for integer ones.
Fill uniform(double low, double high);
// For index tensors [..., k]: each row of the last axis a tuple (i_0, ..., i_k-1) with i_j in
// [0, bounds[j]), no tuple twice (scatters whose result would depend on the order of duplicates).
// The tensor's row count must not exceed the number of such tuples.
Fill distinct_index_tuples(std::vector<int64_t> bounds);
// Element i of `t` set to `value` in t's dtype (integers saturate; bool: value != 0).
void set_element(HostTensor& t, int64_t i, double value);

struct OpCase {
  std::string variant = "";  // names the case among its op's, e.g. "linear"; "" for a single case
  std::vector<CaseInput> inputs = {};
  size_t outputs = 1;
  AttributeMap attrs = {};
  std::vector<DType> dtypes = {};  // the dtypes under test it runs in; empty: every one claimed
  // Adjusts the case to the dtype under test (a Cast's `to`, a size that must exceed 16 MiB).
  std::function<void(OpCase&, DType)> for_dtype = nullptr;
  // Multiplies the per-dtype tolerance, for ops whose backends legitimately round differently.
  double tolerance_scale = 1.0;
};

// Attributes, shortly: attrs({{"axis", of_int(1)}, {"mode", of_string("linear")}}).
AttributeMap attrs(std::initializer_list<std::pair<std::string, Attribute>> items);
inline Attribute of_int(int64_t v) {
  return Attribute::of_int(v);
}
inline Attribute of_ints(std::vector<int64_t> v) {
  return Attribute::of_ints(std::move(v));
}
inline Attribute of_float(float v) {
  return Attribute::of_float(v);
}
inline Attribute of_string(std::string v) {
  return Attribute::of_string(std::move(v));
}

// Registers `op`'s cases; call during static initialisation (above). A second registration of
// one op is recorded and fails the test, naming the op.
bool register_op_cases(const std::string& op, std::vector<OpCase> cases);
const std::map<std::string, std::vector<OpCase>>& registered_op_cases();
const std::vector<std::string>& duplicate_case_registrations();

}  // namespace kiln::conformance
