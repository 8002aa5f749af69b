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
struct ShapePlan {
  std::vector<Shape> input_shapes;         // per input binding: the key of this plan
  std::vector<Shape> shapes;               // per tensor
  std::vector<HostTensor> shape_values;    // per tensor, for outputs of shape-value layers
  std::vector<bool> has_shape_value;
  std::vector<uint64_t> offsets;           // per tensor: arena offset (kNoOffset when not in the arena)
  uint64_t arena_size = 0;
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

  std::shared_ptr<cuda::DeviceContext> cuda;  // set for CUDA engines
  CheckedBuffers buffers_on_device;           // CUDA engines: bound buffers known to be on its GPU

  ContextState(const Engine& handle, std::shared_ptr<const EngineState> state);

  // Validates names, dtypes, shapes, ranges and pointers; binds data[] for inputs.
  void bind_inputs(std::span<const NamedTensor> inputs);
  void check_outputs(std::span<const NamedTensor> outputs) const;
  // Recomputes `plan` when the input shapes differ from the planned ones (or always, when shapes
  // depend on input values). `place_shape_values` also gives shape-value tensors arena space (for
  // backends whose layers cannot read host memory). Returns true when the plan changed.
  bool update_plan(bool place_shape_values);
  int32_t output_tensor(const std::string& name) const;
};

// Data pointer for empty tensors and for tensors whose bytes a Shape/Size layer never reads, so
// kernels can tell "present" from "absent" by a null pointer.
void* placeholder_bytes();

}  // namespace kiln::detail
