// Op semantics shared by the builder and the runtime: arity, which inputs' values decide output
// shapes, and type/shape inference. Kernels live in the backends (src/backends/<backend>/).
//
// Ops follow ONNX's definitions of opset 21, which opsets 22-28 keep for them (checked in the op
// or the importer where a newer version added an attribute). The ONNX importer normalises older
// opsets to that form before the IR sees them, e.g. axes given as attributes become int64 inputs
// (ReduceMean/ReduceSum/ReduceMax/Squeeze/Unsqueeze), Split's `split` attribute becomes input 1,
// Clip's min/max attributes become inputs 1 and 2. docs/ops.md lists every op and its form.
#pragma once

#include <cstdint>
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

// A fact an infer function states about one output dim for the builder's symbolic dims
// (docs/architecture.md#symbolic-dims): the dim equals given input dims, or is their broadcast.
// Links only say what the op's definition guarantees in every run it accepts; the builder gives
// the output dim a symbol from them, and an output dim without a link gets none (unknown). A wrong
// link would let a pass treat two different sizes as one, so each is also checked against the
// static dims of every build (the builder fails with kInternal when a link and the inferred dims
// disagree).
struct DimRef {
  size_t input = 0;
  size_t dim = 0;
};
struct DimLink {
  enum class Kind : uint8_t {
    kEqual,      // the output dim equals each source dim (the op requires them all equal)
    kBroadcast,  // the output dim is the numpy broadcast of the source dims (absent ones are 1)
  };
  Kind kind = Kind::kEqual;
  size_t output = 0;
  size_t dim = 0;
  std::vector<DimRef> sources;
};

class InferContext {
 public:
  InferContext(std::string_view node_name, std::string_view op, const AttributeMap& attrs,
               std::span<const ValueInfo> inputs, std::vector<ValueInfo>& outputs, bool want_bounds = false,
               std::vector<DimLink>* links = nullptr)
      : node_name_(node_name),
        op_(op),
        attrs_(attrs),
        inputs_(inputs),
        outputs_(outputs),
        want_bounds_(want_bounds),
        links_(links) {}

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

  // ---- dim links (see DimLink); no-ops unless the caller (the builder) records them ----------
  // Whether links are recorded: an infer function may skip work that only computes links.
  bool records_dim_links() const { return links_ != nullptr; }
  // Output `output`'s dim `dim` equals input `input`'s dim `input_dim`.
  void link_dim(size_t output, size_t dim, size_t input, size_t input_dim);
  // Output `output`'s dim `dim` equals each of `sources` (the op requires them equal, e.g. Concat's
  // non-axis dims).
  void link_equal_dims(size_t output, size_t dim, std::vector<DimRef> sources);
  // Output `output`'s dim `dim` is the numpy broadcast of `sources` (inputs too short to have the
  // dim are left out: they broadcast as 1).
  void link_broadcast_dims(size_t output, size_t dim, std::vector<DimRef> sources);
  // Every dim of output `output` equals the same dim of input `input` (shape-preserving ops).
  void link_same_shape(size_t output, size_t input);
  // Every dim of output `output` is the numpy broadcast of the present inputs [first, end)
  // (right-aligned; end clamped to the inputs there are).
  void link_broadcast(size_t output, size_t first = 0, size_t end = SIZE_MAX);

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
  std::vector<DimLink>* links_ = nullptr;
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
// `links`, when given, receives the dim links the infer function declares (the builder's symbolic
// dims); the runtime passes none.
void infer_node(const OpDef& def, std::string_view node_name, const AttributeMap& attrs,
                std::span<const ValueInfo> inputs, std::vector<ValueInfo>& outputs,
                std::span<const std::string_view> output_names = {}, std::vector<DimLink>* links = nullptr);

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
