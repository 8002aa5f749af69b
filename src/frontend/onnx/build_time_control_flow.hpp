// ONNX control flow (If, Loop, Scan), sequences and optionals, resolved while importing: kiln
// engines are static graphs, so an If whose condition is known at build time becomes its chosen
// branch, a Loop with a build-time trip count and condition and a Scan over a static length are
// unrolled, and sequence/optional values live only at import time as lists of tensor names (their
// ops become Identity, Concat, Split, Gather, constants). What depends on run-time data is refused
// with an error naming the node and the value.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/attributes.hpp"
#include "base/host_tensor.hpp"
#include "frontend/onnx/function_inliner.hpp"
#include "ir/graph.hpp"

namespace kiln::onnx {

// Unrolled Loops and Scans run at most this many iterations; more is refused (engine size).
inline constexpr int64_t kMaxUnrolledIterations = 4096;

// What the resolver needs from the importer that owns the graph being built.
class ImportGraphHost {
 public:
  virtual ~ImportGraphHost() = default;
  // The model's name in error messages.
  virtual const std::string& source() const = 0;
  // Tensor `name` (defined) with its dtype and shape as inferred at build time from constants and
  // static shapes, and its contents (Value::constant) when those are known at build time.
  virtual ir::Value evaluate(const std::string& name) = 0;
  // Defines a constant under a fresh name starting with `suggested`; returns the name.
  virtual std::string add_constant(const std::string& suggested, std::shared_ptr<HostTensor> tensor) = 0;
  // Adds one kiln op (latest ONNX form) whose inputs are defined; its outputs must be unused names.
  virtual void add_op(const std::string& node_name, const std::string& op_type,
                      const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
                      AttributeMap attrs = {}) = 0;
  // Defines the body's initializers and adds its nodes in dependency order (structured ones
  // through the resolver again).
  virtual void add_subgraph(const InlinedSubgraph& body) = 0;
  virtual Flattener& flattener() = 0;
};

class BuildTimeControlFlow {
 public:
  explicit BuildTimeControlFlow(ImportGraphHost& host) : host_(host) {}

  // True for the ops resolve() handles (If, Loop, Scan, the Sequence* and Optional* ops).
  static bool handles(const std::string& op_type, const std::string& domain);

  // True when `name` is a sequence or optional value defined so far.
  bool defines(const std::string& name) const;

  // "a sequence" / "an optional" for such values, "" for tensors (graph outputs must be tensors).
  std::string non_tensor_kind(const std::string& name) const;

  // Resolves one node that handles() accepts; its inputs and captured outer values are defined.
  // Throws kUnsupported naming the node when the result depends on run-time data, when an
  // unrolled loop would pass kMaxUnrolledIterations, and for sequence forms kiln cannot keep
  // static; kCorruptFile for malformed nodes (missing bodies, wrong arity).
  void resolve(const FlatNode& node);

 private:
  void resolve_if(const FlatNode& node);
  void resolve_loop(const FlatNode& node);
  void resolve_scan(const FlatNode& node);
  void resolve_sequence_op(const FlatNode& node);
  void resolve_optional_op(const FlatNode& node);

  struct ScanResult {
    std::vector<std::string> states;
    std::vector<std::string> scan_outputs;
  };
  ScanResult unroll_scan(const FlatNode& node, const proto::Graph& body,
                         const std::vector<std::string>& states,
                         const std::vector<std::string>& scan_inputs, const std::vector<int64_t>& input_axes,
                         const std::vector<int64_t>& input_directions,
                         const std::vector<int64_t>& output_axes,
                         const std::vector<int64_t>& output_directions, const std::string& prefix);

  // out = src for tensors (an Identity), sequences and optionals (the same elements).
  void alias(const std::string& out, const std::string& src, const std::string& node_name);
  // Unsqueezes each of `parts` at `axis` and concatenates them there into `out`.
  void stack(const std::vector<std::string>& parts, int64_t axis, const std::string& out,
             const std::string& node_name);
  // The value of a build-time integer scalar (or one-element tensor) input.
  int64_t build_time_int(const FlatNode& node, const std::string& name, std::string_view what);
  std::vector<int64_t> build_time_ints(const FlatNode& node, const std::string& name, std::string_view what);
  const std::vector<std::string>& sequence(const FlatNode& node, size_t input);
  std::string int_constant(const std::string& suggested, int64_t value, bool scalar = true);

  template <typename... Parts>
  [[noreturn]] void refuse(const FlatNode& node, Parts&&... parts) const;
  template <typename... Parts>
  [[noreturn]] void fail_corrupt(const FlatNode& node, Parts&&... parts) const;

  ImportGraphHost& host_;
  std::unordered_map<std::string, std::vector<std::string>> sequences_;
  // An optional's element (a tensor or sequence name), or nullopt when it is empty.
  std::unordered_map<std::string, std::optional<std::string>> optionals_;
};

}  // namespace kiln::onnx
