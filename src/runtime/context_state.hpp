// Internal state of one ExecutionContext: the runtime's CallState and the backend's context.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "backends/backend.hpp"
#include "runtime/buffer_devices.hpp"
#include "runtime/engine_state.hpp"

namespace kiln::detail {

using backends::placeholder_bytes;
using backends::ShapePlan;

struct ContextState final : backends::CallState {
  std::shared_ptr<const EngineState> engine;
  Engine engine_handle;

  bool have_plan = false;

  // The last call ran to its end: plan.shapes holds the shapes its outputs got.
  bool ran = false;
  CheckedBuffers buffers_on_device;  // engines on a device: bound buffers known to be usable there
  // Declared after `engine`, so destroyed before it (BackendContext's contract).
  std::unique_ptr<backends::BackendContext> backend_context;

  ContextState(const Engine& handle, std::shared_ptr<const EngineState> state);

  // backends::CallState, documented there.
  void bind_inputs(std::span<const NamedTensor> inputs) override;
  void check_outputs(std::span<const NamedTensor> outputs) const override;
  bool update_plan(bool place_shape_values) override;
  void plan_segment(size_t segment) override;
  int32_t output_tensor(const std::string& name) const override;
};

}  // namespace kiln::detail
