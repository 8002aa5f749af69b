// Op semantics shared by the builder and the runtime: arity, which inputs' values decide output
// shapes, and type/shape inference. Kernels live in the backends (src/backends/<backend>/).
//
// Ops follow ONNX's definitions of opset 21, which opsets 22-28 keep for them (checked in the op
// or the importer where a newer version added an attribute). The ONNX importer normalises older
// opsets to that form before the IR sees them, e.g. axes given as attributes become int64 inputs
// (ReduceMean/ReduceSum/ReduceMax/Squeeze/Unsqueeze), Split's `split` attribute becomes input 1,
// Clip's min/max attributes become inputs 1 and 2. docs/ops.md lists every op and its form.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/attributes.hpp"
#include "base/error.hpp"
#include "base/host_tensor.hpp"

namespace kiln::ops {

// What inference knows of one tensor. dtype is always known. A dimension may be kDynamicDim (-1)
// while building engines with dynamic dimensions; at run time every dimension is known.
// `value` is non-null when the tensor's contents are known on the host (a constant, or a shape
// tensor at run time); inference must work without it and then leave the dims it would decide
// as kDynamicDim. `present` is false for an optional input the node leaves out.
struct ValueInfo {
  DType dtype = DType::kFloat32;
  Shape shape;
  const HostTensor* value = nullptr;
  bool present = true;
};

class InferContext {
 public:
  InferContext(std::string_view node_name, std::string_view op, const AttributeMap& attrs,
               std::span<const ValueInfo> inputs, std::vector<ValueInfo>& outputs, bool want_bounds = false)
      : node_name_(node_name), op_(op), attrs_(attrs), inputs_(inputs), outputs_(outputs), want_bounds_(want_bounds) {}

  std::string_view node_name() const { return node_name_; }
  std::string_view op() const { return op_; }
  const AttributeMap& attrs() const { return attrs_; }
  size_t num_inputs() const { return inputs_.size(); }
  size_t num_outputs() const { return outputs_.size(); }
  // Input i, or an absent ValueInfo (present == false) past the end.
  const ValueInfo& input(size_t i) const;
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i].present; }
  // Output i's slot, to be filled with dtype and shape. Pre-sized by the caller.
  ValueInfo& output(size_t i) { return outputs_.at(i); }
  // For ops with data-dependent output sizes (OpDef::data_dependent_shapes): the value of an output
  // dimension that depends on input data. kDynamicDim when inferring shapes; `bound` (the most the
  // dimension can be, from the input shapes and attributes) when infer_node_bounds asks for bounds.
  int64_t data_dependent_dim(int64_t bound) const { return want_bounds_ ? bound : kDynamicDim; }

  // Throws kiln::Error(kInvalidArgument) "node '<name>' (<op>): <message>".
  template <typename... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    kiln::fail(ErrorCode::kInvalidArgument, "node '", node_name_, "' (", op_, "): ",
               std::forward<Parts>(parts)...);
  }

 private:
  std::string_view node_name_;
  std::string_view op_;
  const AttributeMap& attrs_;
  std::span<const ValueInfo> inputs_;
  std::vector<ValueInfo>& outputs_;
  bool want_bounds_ = false;
};

using InferFn = void (*)(InferContext&);

struct OpDef {
  std::string name;             // ONNX op type, e.g. "Conv"
  int min_inputs = 1;
  int max_inputs = 1;           // optional inputs between min and max may be absent
  int min_outputs = 1;
  int max_outputs = 1;
  std::vector<int> value_inputs;  // inputs whose *values* decide output shapes (shape tensors)
  InferFn infer = nullptr;      // fills every output's dtype and shape; validates attributes
  // True when some output's size depends on the input *data* (NonZero, Unique, Compress,
  // NonMaxSuppression): infer gives those dims through InferContext::data_dependent_dim, so
  // they are kDynamicDim even when every input shape is known, and infer_node_bounds gives
  // their upper bounds. The CPU kernel gets outputs allocated at the bounds and sets each
  // output view's shape to the shape it wrote (row-major from the start of the buffer).
  bool data_dependent_shapes = false;
  // The ONNX domain whose nodes of this op type the importer maps to this op: "" for ai.onnx (and
  // kiln's own ops, which only the builder creates), else e.g. "ai.onnx.ml". Op types are unique
  // across domains, so the IR needs no domain once a node is imported.
  std::string domain = {};
};

class OpRegistry {
 public:
  // Throws kInternal on a duplicate name.
  void add(OpDef def);
  const OpDef* find(std::string_view name) const;
  std::vector<std::string> names() const;  // sorted

 private:
  std::unordered_map<std::string, OpDef> defs_;
};

// The process-wide registry with every built-in op, built on first use (thread-safe).
const OpRegistry& op_registry();
// Shorthand for op_registry().find(name).
const OpDef* find_op(std::string_view name);

// Runs `def.infer` after checking the input/output counts against the OpDef; errors name the node.
// Then checks every output's size: kInvalidArgument naming the node, the op, the output (by
// `output_names[i]` when given, else its index) and the dims when a dim is below kDynamicDim or the
// static dims' byte size does not fit in int64 (base/checked_math.hpp), so no caller allocates,
// strides or plans with a wrapped size.
void infer_node(const OpDef& def, std::string_view node_name, const AttributeMap& attrs,
                std::span<const ValueInfo> inputs, std::vector<ValueInfo>& outputs,
                std::span<const std::string_view> output_names = {});

// For an op with data_dependent_shapes: as infer_node, but every output shape is the upper bound
// of the real one, static when the input shapes are. Same checks and failures as infer_node.
void infer_node_bounds(const OpDef& def, std::string_view node_name, const AttributeMap& attrs,
                       std::span<const ValueInfo> inputs, std::vector<ValueInfo>& outputs,
                       std::span<const std::string_view> output_names = {});

// ---- helpers for infer functions -------------------------------------------------------------

// Numpy-style multidirectional broadcast of two shapes; kDynamicDim where unknown. Throws via ctx
// when the shapes cannot broadcast.
Shape broadcast_shapes(const InferContext& ctx, const Shape& a, const Shape& b);
// Normalises a possibly negative axis into [0, rank); fails via ctx when out of range.
int64_t normalize_axis(const InferContext& ctx, int64_t axis, int64_t rank);

}  // namespace kiln::ops
