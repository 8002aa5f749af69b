// Internal state of one ExecutionContext, shared by the backend executors.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "runtime/buffer_devices.hpp"
#include "runtime/engine_state.hpp"

namespace kiln::cuda {
class DeviceContext;  // src/backends/cuda/cuda_executor.hpp
}

namespace kiln::detail {

// Everything that depends only on the input shapes: concrete tensor shapes, the values of
// shape tensors computed on the host, and the arena placement. Recomputed when shapes change.
// Engines with data-dependent shapes (EngineState::segment_ends) are planned one segment at a
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

struct ContextState {
  std::shared_ptr<const EngineState> engine;
  Engine engine_handle;

  bool have_plan = false;
  ShapePlan plan;
  std::vector<TensorView> data;  // per tensor, bound for the current call

  // CPU arena.
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };
  uint64_t host_arena_capacity = 0;
  std::unique_ptr<uint8_t, FreeDeleter> host_arena;
  // Engines with data-dependent shapes: the arenas of segments 1.. (segment 0 uses host_arena).
  std::vector<uint64_t> segment_arena_capacity;
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> segment_arenas;
  // Engines with data-dependent shapes, calls on caller buffers: each output's buffer, whose shape
  // gives its capacity (checked when its layer is planned).
  std::vector<TensorView> caller_outputs;
  // The last call ran to its end: plan.shapes holds the shapes its outputs got.
  bool ran = false;

  std::shared_ptr<cuda::DeviceContext> cuda;  // set for CUDA engines
  CheckedBuffers buffers_on_device;           // CUDA engines: bound buffers known to be on its GPU

  ContextState(const Engine& handle, std::shared_ptr<const EngineState> state);

  // Validates names, dtypes, shapes, ranges and pointers; binds data[] for inputs.
  void bind_inputs(std::span<const NamedTensor> inputs);
  void check_outputs(std::span<const NamedTensor> outputs) const;
  // Recomputes `plan` when the input shapes differ from the planned ones (or always, when shapes
  // depend on input values). `place_shape_values` also gives shape-value tensors arena space (for
  // backends whose layers cannot read host memory). Returns true when the plan changed.
  // Engines with data-dependent shapes are re-planned on every call (segment 0 only).
  bool update_plan(bool place_shape_values);
  // Plans segment `segment` (> 0) of an engine with data-dependent shapes from the shapes of
  // the tensors written before it (the real ones of the data-dependent layers that ran).
  void plan_segment(size_t segment);
  int32_t output_tensor(const std::string& name) const;
};

// Data pointer for empty tensors and for tensors whose bytes a Shape/Size layer never reads, so
// kernels can tell "present" from "absent" by a null pointer.
void* placeholder_bytes();

}  // namespace kiln::detail
