// ExecutionContext: validates bindings, keeps the shape plan current (the runtime's CallState) and
// hands each call to the engine's backend context (src/backends/backend.hpp).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "base/error.hpp"
#include "runtime/context_state.hpp"

namespace kiln {
namespace detail {
namespace {

const BindingInfo* find_binding(const std::vector<BindingInfo>& bindings, const std::string& name, size_t* index) {
  for (size_t i = 0; i < bindings.size(); ++i) {
    if (bindings[i].name == name) {
      *index = i;
      return &bindings[i];
    }
  }
  return nullptr;
}

std::string binding_names(const std::vector<BindingInfo>& bindings) {
  std::string names;
  for (const BindingInfo& b : bindings) names += (names.empty() ? "'" : ", '") + b.name + "'";
  return names.empty() ? "none" : names;
}

// Kernels read and write whole elements: a buffer must start at a multiple of its element size.
void check_element_aligned(const void* data, DType dtype, const char* role, const std::string& name) {
  const size_t element = dtype_size(dtype);
  if (data != nullptr && element > 1 && reinterpret_cast<uintptr_t>(data) % element != 0) {
    fail(ErrorCode::kInvalidArgument, role, " '", name, "': data pointer ", data, " is not aligned to its ",
         element, "-byte ", dtype_name(dtype), " elements");
  }
}

void check_tensor_against_binding(const BindingInfo& binding, const TensorRef& tensor, const char* role) {
  if (tensor.dtype != binding.dtype) {
    fail(ErrorCode::kInvalidArgument, role, " '", binding.name, "': expected dtype ", dtype_name(binding.dtype),
         ", got ", dtype_name(tensor.dtype));
  }
  if (tensor.shape.size() != binding.shape.size()) {
    fail(ErrorCode::kInvalidArgument, role, " '", binding.name, "': expected rank ", binding.shape.size(), " (shape ",
         shape_to_string(binding.shape), "), got shape ", shape_to_string(tensor.shape));
  }
  for (size_t d = 0; d < tensor.shape.size(); ++d) {
    const int64_t got = tensor.shape[d];
    if (binding.shape[d] != kDynamicDim) {
      if (got != binding.shape[d]) {
        fail(ErrorCode::kInvalidArgument, role, " '", binding.name, "': expected shape ",
             shape_to_string(binding.shape), ", got ", shape_to_string(tensor.shape), " (dimension ", d, ")");
      }
    } else if (got < binding.min_shape[d] || got > binding.max_shape[d]) {
      fail(ErrorCode::kInvalidArgument, role, " '", binding.name, "': dimension ", d, " is ", got,
           ", outside the range [", binding.min_shape[d], ", ", binding.max_shape[d],
           "] the engine was built for (shape ", shape_to_string(tensor.shape), ")");
    }
  }
  if (!tensor.data && shape_numel(tensor.shape) != 0) {
    fail(ErrorCode::kInvalidArgument, role, " '", binding.name, "': data pointer is null");
  }
  check_element_aligned(tensor.data, tensor.dtype, role, binding.name);
}

}  // namespace

ContextState::ContextState(const Engine& handle, std::shared_ptr<const EngineState> state)
    : engine(std::move(state)),
      engine_handle(handle),
      backend_context(engine->backend->create_context(*engine, engine->bound)) {}

int32_t ContextState::output_tensor(const std::string& name) const {
  size_t index = 0;
  if (!find_binding(engine->outputs, name, &index)) return -1;
  return static_cast<int32_t>(engine->model.outputs[index].tensor);
}

void ContextState::bind_inputs(std::span<const NamedTensor> inputs) {
  ran = false;
  data.assign(engine->model.tensors.size(), TensorView{});
  input_values.assign(engine->model.tensors.size(), nullptr);
  const auto& bindings = engine->inputs;
  std::vector<bool> seen(bindings.size(), false);
  for (const NamedTensor& in : inputs) {
    size_t index = 0;
    const BindingInfo* binding = find_binding(bindings, in.name, &index);
    if (!binding) {
      fail(ErrorCode::kInvalidArgument, "unknown input '", in.name, "'; the engine's inputs are ",
           binding_names(bindings));
    }
    if (seen[index]) fail(ErrorCode::kInvalidArgument, "input '", in.name, "' is bound twice");
    seen[index] = true;
    check_tensor_against_binding(*binding, in.tensor, "input");
    const auto t = engine->model.inputs[index].tensor;
    data[t] = TensorView{in.tensor.dtype, in.tensor.shape, in.tensor.data ? in.tensor.data : placeholder_bytes()};
  }
  for (size_t i = 0; i < bindings.size(); ++i) {
    if (!seen[i]) fail(ErrorCode::kInvalidArgument, "missing input '", bindings[i].name, "'");
  }
}

void ContextState::check_outputs(std::span<const NamedTensor> outputs) const {
  std::vector<bool> seen(engine->outputs.size(), false);
  for (const NamedTensor& out : outputs) {
    size_t index = 0;
    const BindingInfo* binding = find_binding(engine->outputs, out.name, &index);
    if (!binding) {
      fail(ErrorCode::kInvalidArgument, "unknown output '", out.name, "'; the engine's outputs are ",
           binding_names(engine->outputs));
    }
    if (seen[index]) fail(ErrorCode::kInvalidArgument, "output '", out.name, "' is bound twice");
    seen[index] = true;
    const Shape& expected = plan.shapes[engine->model.outputs[index].tensor];
    if (engine->output_shape_data_dependent[index]) {
      // The buffer's shape is its capacity, checked once the output's bound is planned.
      if (out.tensor.dtype != binding->dtype || out.tensor.shape.size() != binding->shape.size()) {
        fail(ErrorCode::kInvalidArgument, "output '", out.name, "': expected a ", dtype_name(binding->dtype),
             " buffer of rank ", binding->shape.size(), " (its shape depends on the input data; the buffer's shape "
             "gives its capacity), got ", dtype_name(out.tensor.dtype), shape_to_string(out.tensor.shape));
      }
      if (!out.tensor.data && shape_numel(out.tensor.shape) != 0) {
        fail(ErrorCode::kInvalidArgument, "output '", out.name, "': data pointer is null");
      }
      check_element_aligned(out.tensor.data, out.tensor.dtype, "output", out.name);
      continue;
    }
    if (out.tensor.dtype != binding->dtype || out.tensor.shape != expected) {
      fail(ErrorCode::kInvalidArgument, "output '", out.name, "': expected ", dtype_name(binding->dtype),
           shape_to_string(expected), " for these inputs, got ", dtype_name(out.tensor.dtype),
           shape_to_string(out.tensor.shape));
    }
    if (!out.tensor.data && shape_numel(expected) != 0) {
      fail(ErrorCode::kInvalidArgument, "output '", out.name, "': data pointer is null");
    }
    check_element_aligned(out.tensor.data, out.tensor.dtype, "output", out.name);
  }
  for (size_t i = 0; i < seen.size(); ++i) {
    if (!seen[i]) fail(ErrorCode::kInvalidArgument, "missing output '", engine->outputs[i].name, "'");
  }
}

}  // namespace detail

ExecutionContext::ExecutionContext(std::unique_ptr<detail::ContextState> state) : state_(std::move(state)) {}
ExecutionContext::ExecutionContext(ExecutionContext&&) noexcept = default;
ExecutionContext& ExecutionContext::operator=(ExecutionContext&&) noexcept = default;
ExecutionContext::~ExecutionContext() = default;

detail::ContextState& ExecutionContext::state() const {
  if (!state_) {
    fail(ErrorCode::kInvalidArgument, "this ExecutionContext was moved from; use the context it was moved to");
  }
  return *state_;
}

const Engine& ExecutionContext::engine() const { return state().engine_handle; }

namespace {

// Engines bound to a device check that bound buffers are not another device's memory.
void check_bound_buffers(detail::ContextState& s, std::span<const NamedTensor> inputs,
                         std::span<const NamedTensor> outputs) {
  const int device = s.engine->bound->device();
  if (device >= 0) detail::check_buffer_devices(s.buffers_on_device, device, inputs, outputs);
}

}  // namespace

std::vector<LayerTiming> ExecutionContext::profile(std::span<const NamedTensor> inputs,
                                                   std::span<const NamedTensor> outputs, int iterations) {
  detail::ContextState& s = state();
  check_bound_buffers(s, inputs, outputs);
  std::vector<LayerTiming> timings = s.backend_context->profile(s, inputs, outputs, iterations);
  s.ran = true;
  return timings;
}

void ExecutionContext::set_cuda_graphs(bool enabled) { state().backend_context->set_graphs(enabled); }

bool ExecutionContext::cuda_graphs() const { return state().backend_context->graphs_enabled(); }

void ExecutionContext::set_threads(int threads) {
  if (threads < 0 || threads > kMaxContextThreads) {
    fail(ErrorCode::kInvalidArgument, "set_threads: expected 0 (the default) to ", kMaxContextThreads,
         " threads, got ", threads);
  }
  state().backend_context->set_threads(threads);
}

int ExecutionContext::threads() const { return state().backend_context->threads(); }

std::vector<Shape> ExecutionContext::output_shapes(std::span<const NamedTensor> inputs) {
  detail::ContextState& s = state();
  s.bind_inputs(inputs);
  s.backend_context->read_input_values(s);
  // The same plan flavour the engine's executor asks for, so that execute() can reuse it.
  s.update_plan(s.backend_context->places_shape_values());
  std::vector<Shape> shapes;
  shapes.reserve(s.engine->model.outputs.size());
  for (const format::Binding& out : s.engine->model.outputs) {
    // Written after a data-dependent layer: not planned until the engine runs.
    shapes.push_back(s.engine->segment_of[out.tensor] == 0 ? s.plan.shapes[out.tensor]
                                                            : s.engine->model.tensors[out.tensor].shape);
  }
  return shapes;
}

std::vector<Shape> ExecutionContext::last_output_shapes() const {
  const detail::ContextState& s = state();
  if (!s.ran) {
    fail(ErrorCode::kInvalidArgument, "last_output_shapes: this context has not run yet");
  }
  std::vector<Shape> shapes;
  shapes.reserve(s.engine->model.outputs.size());
  for (const format::Binding& out : s.engine->model.outputs) shapes.push_back(s.plan.shapes[out.tensor]);
  return shapes;
}

int Engine::device_index() const { return state().bound->device(); }  // a moved-from Engine throws

ExecutionContext Engine::create_context() const {
  state();  // a moved-from Engine has nothing to run
  return ExecutionContext(std::make_unique<detail::ContextState>(*this, state_));
}

std::vector<Tensor> ExecutionContext::execute(std::span<const NamedTensor> inputs) {
  detail::ContextState& s = state();
  std::vector<Tensor> results = s.backend_context->execute(s, inputs);
  s.ran = true;
  return results;
}

void ExecutionContext::execute(std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
                               void* stream) {
  detail::ContextState& s = state();
  check_bound_buffers(s, inputs, outputs);
  s.backend_context->execute(s, inputs, outputs, stream);
  s.ran = true;
}

}  // namespace kiln
