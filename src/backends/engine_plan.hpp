// What the runtime prepares from an engine file and from each call's input shapes, which every
// backend reads to run the engine: the contract between src/runtime and src/backends. The runtime
// fills these (src/runtime/engine.cpp, shape_plan.cpp); backends never write an EnginePlan and
// change a CallState only through its calls.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/host_tensor.hpp"
#include "base/memory_limit.hpp"
#include "format/engine_model.hpp"
#include "kiln/runtime.hpp"
#include "ops/op_registry.hpp"

namespace kiln::cpu {
struct CpuKernel;  // src/backends/cpu/cpu_kernel.hpp
}

namespace kiln::backends {

// Alignment of every arena tensor (cuBLASLt/cuDNN and 16-byte vector loads like 256-byte alignment).
inline constexpr uint64_t kArenaAlignment = 256;

struct PreparedLayer {
  const ops::OpDef* def = nullptr;
  // The host kernel of its op (null when the cpu backend has none): shape-value layers run it
  // during shape propagation, and the cpu backend runs every layer with it.
  const cpu::CpuKernel* kernel = nullptr;
  // Runs while shapes are propagated, on the host, because a later layer needs the *values* of
  // its outputs to know its own output shapes (a shape tensor computed at run time). Backends
  // launch nothing for it.
  bool computes_shape_values = false;
  // A Reshape-like layer whose output is its input's bytes under another shape: the output shares
  // the input's arena memory and the layer launches nothing.
  bool is_view = false;
  // Bit i: input i is an engine weight (constant across calls), so kernels may cache what they
  // derive from it (KernelContext::constant_inputs). Inputs past 64 are never marked.
  uint64_t weight_inputs = 0;
  // For a view that selects a contiguous slab (Gather of one index, or a Slice, along an axis
  // whose outer dims are all 1): the axis and the first index taken; the output then starts
  // view_start * (elements after view_axis) elements into its input. -1: no offset.
  int view_axis = -1;
  int64_t view_start = 0;
  // The input whose bytes its output 0 is written over (the input dies here and the backend's
  // kernel takes the alias: Backend::writes_over_input), -1 when the output has bytes of its own.
  int in_place_input = -1;
  // Its op's output sizes depend on input data (OpDef::data_dependent_shapes) and it runs in the
  // executor (not during shape propagation): the plan stops after it (see EnginePlan::segment_ends).
  bool ends_segment = false;
};

// A loaded engine as the runtime prepared it. Immutable after load; shared by every context and
// thread; outlives every bound engine and backend context made from it.
struct EnginePlan {
  format::EngineModel model;
  std::string source;  // path or "<bytes>", for messages
  std::vector<BindingInfo> inputs;
  std::vector<BindingInfo> outputs;
  std::vector<PreparedLayer> layers;
  // Per tensor: a host copy of a weight whose value infer functions need (else null).
  std::vector<std::shared_ptr<const HostTensor>> weight_values;
  // Per tensor: index of the producing layer, -1 for inputs and weights.
  std::vector<int32_t> producer;
  // Per tensor: the activation whose memory it shares (itself unless a view layer wrote it, or a
  // layer wrote it over an input that died there: PreparedLayer::in_place_input).
  std::vector<int32_t> storage_of;
  bool has_views = false;  // some tensor shares another's storage (views or in-place outputs)
  // Per activation tensor: [first_use, last_use] layer indices, for re-planning the arena; for the
  // tensor that owns shared storage, the span of every tensor sharing it.
  std::vector<int32_t> first_use;
  std::vector<int32_t> last_use;
  // True when any shape-value layer reads an input's data: then cached shapes are keyed by values too.
  bool shapes_depend_on_input_values = false;
  // The input tensors whose values shape propagation reads (empty unless the flag above is set).
  std::vector<int32_t> value_input_tensors;
  // `tensor` is one of value_input_tensors.
  bool is_value_input(int32_t tensor) const {
    return std::find(value_input_tensors.begin(), value_input_tensors.end(), tensor) != value_input_tensors.end();
  }
  // True when some output is computed by a shape-value layer.
  bool has_shape_value_outputs = false;

  // Data-dependent shapes. The layers split into segments, each ending after a layer whose output
  // sizes depend on its input data (PreparedLayer::ends_segment), the last at the end: one
  // segment {layers.size()} for engines without such layers. A context plans segment k (shapes,
  // and an arena of its own for the tensors its layers write) only after segment k-1 ran and its
  // last layer reported its real output shapes.
  std::vector<size_t> segment_ends;
  // Per tensor: the segment whose layers write it (0 for inputs and weights).
  std::vector<int32_t> segment_of;
  // Per output binding: its shape is known only once the engine ran (it is written by a
  // data-dependent layer or after one).
  std::vector<bool> output_shape_data_dependent;
  // Some layer the executor runs has data-dependent output sizes (even when it is the last one).
  bool data_dependent = false;
  bool has_data_dependent_shapes() const { return data_dependent; }

  // The most bytes one context may plan: its arena, and each tensor computed on the host during
  // shape propagation. KILN_MEMORY_LIMIT when set (read at load), else what the bound engine's
  // memory holds (BoundEngine::memory_limit).
  MemoryLimit memory_limit;

  const format::TensorDesc& tensor(int32_t index) const { return model.tensors[static_cast<size_t>(index)]; }
  // A view of weight tensor `index` inside the engine's weights blob (host memory).
  TensorView weight_view(int32_t index) const;
};

// Everything that depends only on the input shapes: concrete tensor shapes, the values of
// shape tensors computed on the host, and the arena placement. Recomputed when shapes change.
// Engines with data-dependent shapes (EnginePlan::segment_ends) are planned one segment at a
// time while they run: update_plan plans segment 0, where the outputs of the data-dependent layer
// that ends it get their upper bounds; the executor plans each later segment once the previous
// one ran, and replaces those bounds by the shapes the layer reported.
struct ShapePlan {
  std::vector<Shape> input_shapes;         // per input binding: the key of this plan
  std::vector<Shape> shapes;               // per tensor
  std::vector<HostTensor> shape_values;    // per tensor, for outputs of shape-value layers
  std::vector<bool> has_shape_value;
  std::vector<uint64_t> offsets;           // per tensor: offset in its segment's arena (kNoOffset: none)
  uint64_t arena_size = 0;                 // segment 0's arena (the only one without data-dependent shapes)
  std::vector<uint64_t> segment_arena_sizes;  // per segment planned so far
  size_t planned_segments = 0;             // segments whose shapes and offsets are valid
};

// The runtime's half of one execution context, which a backend's executor drives through a call:
// it validates the caller's bindings and keeps the shape plan current. Implemented by the runtime
// (src/runtime/context_state.hpp); every call below throws what the public API documents for bad
// bindings (kInvalidArgument naming the tensor, kOutOfMemory over the engine's memory limit).
class CallState {
 public:
  ShapePlan plan;                 // valid after update_plan, for the last bound inputs
  std::vector<TensorView> data;   // per tensor, bound for the current call (inputs by bind_inputs)
  // Engines with data-dependent shapes, calls on caller buffers: each output's buffer, whose
  // shape gives its capacity (checked when its layer is planned). Per output binding.
  std::vector<TensorView> caller_outputs;
  // Engines whose shapes depend on input values (EnginePlan::value_input_tensors), on a backend
  // whose inputs are not host memory: per tensor, a host copy of such an input's value, which the
  // backend sets after bind_inputs and before update_plan (and keeps alive through the call);
  // shape propagation reads it instead of `data`. Null elsewhere; bind_inputs resets it.
  std::vector<const HostTensor*> input_values;

  // Validates names, dtypes, shapes, ranges and pointers of `inputs`; resets `data` and binds the
  // inputs' entries.
  virtual void bind_inputs(std::span<const NamedTensor> inputs) = 0;
  // Validates `outputs` against the current plan (every output bound once, shapes as planned, or
  // for data-dependent outputs a buffer of the right dtype and rank). Binds nothing.
  virtual void check_outputs(std::span<const NamedTensor> outputs) const = 0;
  // Recomputes `plan` when the input shapes differ from the planned ones (or always, when shapes
  // depend on input values). `place_shape_values` also gives shape-value tensors arena space (for
  // backends whose layers cannot read host memory). Returns true when the plan changed.
  // Engines with data-dependent shapes are re-planned on every call (segment 0 only).
  virtual bool update_plan(bool place_shape_values) = 0;
  // Plans segment `segment` (> 0) of an engine with data-dependent shapes from the shapes of
  // the tensors written before it (the real ones of the data-dependent layers that ran).
  virtual void plan_segment(size_t segment) = 0;
  // The tensor index of output binding `name`; -1 when the engine has no such output.
  virtual int32_t output_tensor(const std::string& name) const = 0;

  virtual ~CallState() = default;
};

// Data pointer for empty tensors and for tensors whose bytes a Shape/Size layer never reads, so
// kernels can tell "present" from "absent" by a null pointer. 256 bytes, 256-aligned, never read.
void* placeholder_bytes();

// Bytes of layer `layer`'s input and output tensors (weights and shape tensors included, absent
// optional inputs not) at the shapes of `plan`, each distinct tensor once: a layer that reads x
// twice (Mul(x, x)) moves x once; for the bandwidth column of the per-layer profile. Needs:
// `plan` planned for the profiled inputs and `layer` < the engine's layer count. Never throws.
uint64_t layer_bytes(const EnginePlan& engine, const ShapePlan& plan, size_t layer);

}  // namespace kiln::backends
