// ExecutionContext: validates bindings, keeps the shape plan current and hands the launch list to
// the engine's backend (the CPU executor is here; CUDA's is src/backends/cuda/cuda_executor.cpp).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/checked_math.hpp"
#include "base/error.hpp"
#include "runtime/context_state.hpp"
#include "runtime/layer_traffic.hpp"

#if KILN_WITH_CUDA
#include "backends/cuda/cuda_executor.hpp"
#endif

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

// ---- CPU executor --------------------------------------------------------------------------------

void ensure_host_arena(ContextState& s) {
  constexpr uint64_t kAlignment = 256;
  const uint64_t needed = std::max<uint64_t>(s.plan.arena_size, kAlignment);
  if (needed <= s.host_arena_capacity) return;
  const uint64_t rounded = (needed + kAlignment - 1) / kAlignment * kAlignment;
  auto* memory = static_cast<uint8_t*>(std::aligned_alloc(kAlignment, rounded));
  if (!memory) fail(ErrorCode::kOutOfMemory, "cannot allocate a host arena of ", rounded, " bytes");
  s.host_arena.reset(memory);
  s.host_arena_capacity = rounded;
}

// Binds the tensors layers [begin, end) write: activations to `arena` at their planned offsets,
// shape values to their host copies.
void bind_activations(ContextState& s, size_t segment, uint8_t* arena) {
  const auto& model = s.engine->model;
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    const format::TensorDesc& desc = model.tensors[t];
    if (desc.kind == format::TensorKind::kWeight && segment == 0) {
      s.data[t] = s.engine->weight_view(static_cast<int32_t>(t));
    } else if (desc.kind == format::TensorKind::kActivation && s.engine->segment_of[t] == static_cast<int32_t>(segment)) {
      s.data[t] = s.plan.has_shape_value[t] ? view_of(s.plan.shape_values[t])
                                             : TensorView{desc.dtype, s.plan.shapes[t], arena + s.plan.offsets[t]};
    } else {
      continue;
    }
    if (s.data[t].data == nullptr) s.data[t].data = placeholder_bytes();
  }
}

// Outputs computed during shape propagation are copied first: later layers may read them.
void copy_shape_value_outputs(ContextState& s, size_t segment) {
  for (const format::Binding& out : s.engine->model.outputs) {
    if (!s.plan.has_shape_value[out.tensor] || s.engine->segment_of[out.tensor] != static_cast<int32_t>(segment)) {
      continue;
    }
    const HostTensor& value = s.plan.shape_values[out.tensor];
    if (!value.bytes.empty()) std::memcpy(s.data[out.tensor].data, value.bytes.data(), value.bytes.size());
  }
}

// Runs layers [begin, end); returns after the last. `timings`, when given, receives each layer's
// host time in milliseconds (-1 for skipped layers).
void run_layers(ContextState& s, size_t begin, size_t end, std::vector<double>* timings) {
  const auto& model = s.engine->model;
  std::vector<TensorView> in_views;
  std::vector<TensorView> out_views;
  for (size_t l = begin; l < end; ++l) {
    if (s.engine->layers[l].computes_shape_values || s.engine->layers[l].is_view) continue;
    const format::Layer& layer = model.layers[l];
    in_views.assign(layer.inputs.size(), TensorView{});
    for (size_t i = 0; i < layer.inputs.size(); ++i)
      if (layer.inputs[i] >= 0) in_views[i] = s.data[static_cast<size_t>(layer.inputs[i])];
    out_views.assign(layer.outputs.size(), TensorView{});
    for (size_t o = 0; o < layer.outputs.size(); ++o) out_views[o] = s.data[static_cast<size_t>(layer.outputs[o])];
    cpu::KernelContext ctx{layer.name, layer.op, layer.attrs, in_views, out_views};
    const auto start = std::chrono::steady_clock::now();
    cpu::invoke_cpu_kernel(*s.engine->layers[l].kernel, ctx);
    if (timings) {
      (*timings)[l] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }
    if (!s.engine->layers[l].ends_segment) continue;
    // The real output shapes, which the next segment is planned from.
    for (size_t o = 0; o < layer.outputs.size(); ++o) {
      const auto t = static_cast<size_t>(layer.outputs[o]);
      const Shape& got = out_views[o].shape;
      if (got.size() != s.plan.shapes[t].size() || shape_numel(got) > shape_numel(s.plan.shapes[t])) {
        fail(ErrorCode::kInternal, "layer '", layer.name, "' (", layer.op, ") reported shape ", shape_to_string(got),
             " for tensor '", model.tensors[t].name, "', beyond its bound ", shape_to_string(s.plan.shapes[t]));
      }
      s.plan.shapes[t] = got;
      s.data[t].shape = got;
    }
  }
}

// Where an engine's outputs go: the owned results of execute(inputs), or the caller's buffers.
struct OutputBinder {
  std::vector<Tensor>* owned = nullptr;  // else s.caller_outputs (data-dependent engines)

  // Binds the outputs written by segment `segment`, now that their (bound) shapes are planned.
  void bind(ContextState& s, size_t segment) const {
    const auto& model = s.engine->model;
    for (size_t o = 0; o < model.outputs.size(); ++o) {
      const auto t = model.outputs[o].tensor;
      if (s.engine->segment_of[t] != static_cast<int32_t>(segment)) continue;
      const Shape& planned = s.plan.shapes[t];
      const std::string& name = s.engine->outputs[o].name;
      if (owned) {
        Tensor& r = (*owned)[o];
        r.dtype = s.engine->outputs[o].dtype;
        r.shape = planned;
        const auto bytes = static_cast<uint64_t>(checked_byte_size(r.shape, r.dtype, name));
        if (bytes > s.engine->memory_limit.bytes) {
          fail(ErrorCode::kOutOfMemory, s.engine->source, ": output '", name, "' (", dtype_name(r.dtype),
               shape_to_string(r.shape), ") needs ", format_bytes(bytes), ", more than ",
               describe_memory_limit(s.engine->memory_limit), "; check the input shapes");
        }
        r.bytes.resize(static_cast<size_t>(bytes));
        s.data[t] = TensorView{r.dtype, r.shape, r.bytes.empty() ? placeholder_bytes() : r.bytes.data()};
        continue;
      }
      const TensorView& buffer = s.caller_outputs[o];
      if (shape_numel(buffer.shape) < shape_numel(planned)) {
        fail(ErrorCode::kInvalidArgument, "output '", name, "': the buffer bound to it, ", dtype_name(buffer.dtype),
             shape_to_string(buffer.shape), ", holds ", shape_numel(buffer.shape),
             " elements, but for these inputs it needs up to ", shape_numel(planned), " (",
             shape_to_string(planned), "; its shape depends on the input data)");
      }
      s.data[t] = TensorView{buffer.dtype, planned, buffer.data ? buffer.data : placeholder_bytes()};
    }
  }

  // Trims the owned outputs to the shapes the run gave them.
  void finish(ContextState& s) const {
    if (!owned) return;
    const auto& model = s.engine->model;
    for (size_t o = 0; o < model.outputs.size(); ++o) {
      if (!s.engine->output_shape_data_dependent[o]) continue;
      Tensor& r = (*owned)[o];
      r.shape = s.plan.shapes[model.outputs[o].tensor];
      r.bytes.resize(static_cast<size_t>(checked_byte_size(r.shape, r.dtype, s.engine->outputs[o].name)));
    }
  }
};

uint8_t* ensure_segment_arena(ContextState& s, size_t segment) {
  if (segment == 0) {
    ensure_host_arena(s);
    return s.host_arena.get();
  }
  constexpr uint64_t kAlignment = 256;
  if (s.segment_arenas.size() < segment) {
    s.segment_arenas.resize(segment);
    s.segment_arena_capacity.resize(segment, 0);
  }
  const uint64_t needed = std::max<uint64_t>(s.plan.segment_arena_sizes[segment], kAlignment);
  uint64_t& capacity = s.segment_arena_capacity[segment - 1];
  if (needed > capacity) {
    const uint64_t rounded = (needed + kAlignment - 1) / kAlignment * kAlignment;
    auto* memory = static_cast<uint8_t*>(std::aligned_alloc(kAlignment, rounded));
    if (!memory) fail(ErrorCode::kOutOfMemory, "cannot allocate a host arena of ", rounded, " bytes");
    s.segment_arenas[segment - 1].reset(memory);
    capacity = rounded;
  }
  return s.segment_arenas[segment - 1].get();
}

// Runs an engine whose plan is current (segment 0). Engines without data-dependent shapes have
// their outputs bound already (`outputs` is then unused); the others bind them segment by
// segment, planning each segment after the data-dependent layer before it ran.
void run_on_cpu(ContextState& s, const OutputBinder& outputs, std::vector<double>* timings = nullptr) {
  const auto& ends = s.engine->segment_ends;
  size_t begin = 0;
  for (size_t segment = 0; segment < ends.size(); ++segment) {
    if (segment > 0) s.plan_segment(segment);
    uint8_t* arena = ensure_segment_arena(s, segment);
    bind_activations(s, segment, arena);
    if (s.engine->has_data_dependent_shapes()) outputs.bind(s, segment);
    copy_shape_value_outputs(s, segment);
    run_layers(s, begin, ends[segment], timings);
    begin = ends[segment];
  }
  outputs.finish(s);
  s.ran = true;
}

// Validates a call on caller-provided buffers and binds them.
// Engines with data-dependent shapes keep the buffers aside: they are bound (and their capacity
// checked) when their segment is planned.
void bind_bound_call(ContextState& s, std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs) {
  s.bind_inputs(inputs);
  s.update_plan(/*place_shape_values=*/false);
  s.check_outputs(outputs);
  s.caller_outputs.assign(s.engine->outputs.size(), TensorView{});
  for (const NamedTensor& out : outputs) {
    const auto t = static_cast<size_t>(s.output_tensor(out.name));
    const TensorView view{out.tensor.dtype, out.tensor.shape, out.tensor.data ? out.tensor.data : placeholder_bytes()};
    if (!s.engine->has_data_dependent_shapes()) {
      s.data[t] = view;
      continue;
    }
    size_t index = 0;
    find_binding(s.engine->outputs, out.name, &index);
    s.caller_outputs[index] = view;
  }
}

}  // namespace

void ContextState::FreeDeleter::operator()(uint8_t* p) const { std::free(p); }

ContextState::ContextState(const Engine& handle, std::shared_ptr<const EngineState> state)
    : engine(std::move(state)), engine_handle(handle) {
#if KILN_WITH_CUDA
  if (engine->model.target.backend == "cuda") cuda = cuda::create_device_context(engine);
#endif
}

int32_t ContextState::output_tensor(const std::string& name) const {
  size_t index = 0;
  if (!find_binding(engine->outputs, name, &index)) return -1;
  return static_cast<int32_t>(engine->model.outputs[index].tensor);
}

void ContextState::bind_inputs(std::span<const NamedTensor> inputs) {
  ran = false;
  data.assign(engine->model.tensors.size(), TensorView{});
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

std::vector<LayerTiming> ExecutionContext::profile(std::span<const NamedTensor> inputs,
                                                   std::span<const NamedTensor> outputs, int iterations) {
  detail::ContextState& s = state();
#if KILN_WITH_CUDA
  if (s.cuda) {
    detail::check_buffer_devices(s.buffers_on_device, cuda::engine_device(*s.engine), inputs, outputs);
    std::vector<LayerTiming> timings = cuda::profile_on_device(s, inputs, outputs, iterations);
    s.ran = true;
    return timings;
  }
#endif
  const auto& layers = s.engine->model.layers;
  std::vector<std::vector<double>> samples(layers.size());
  std::vector<double> timings(layers.size(), -1.0);
  detail::bind_bound_call(s, inputs, outputs);
  for (int i = 0; i < std::max(iterations, 1); ++i) {
    std::fill(timings.begin(), timings.end(), -1.0);
    if (i > 0 && s.engine->has_data_dependent_shapes()) s.update_plan(/*place_shape_values=*/false);
    detail::run_on_cpu(s, detail::OutputBinder{}, &timings);
    for (size_t l = 0; l < layers.size(); ++l)
      if (timings[l] >= 0.0) samples[l].push_back(timings[l]);
  }
  std::vector<LayerTiming> result;
  for (size_t l = 0; l < layers.size(); ++l) {
    if (samples[l].empty()) continue;
    std::sort(samples[l].begin(), samples[l].end());
    result.push_back({layers[l].name, layers[l].op, samples[l][samples[l].size() / 2],
                      detail::layer_bytes(s, l)});
  }
  return result;
}

void ExecutionContext::set_cuda_graphs(bool enabled) {
#if KILN_WITH_CUDA
  cuda::set_cuda_graphs(state(), enabled);
#else
  (void)enabled;
#endif
}

bool ExecutionContext::cuda_graphs() const {
#if KILN_WITH_CUDA
  return cuda::cuda_graphs_enabled(state());
#else
  return false;
#endif
}

std::vector<Shape> ExecutionContext::output_shapes(std::span<const NamedTensor> inputs) {
  detail::ContextState& s = state();
  s.bind_inputs(inputs);
  // The same plan flavour the engine's executor asks for, so that execute() can reuse it.
  s.update_plan(/*place_shape_values=*/s.cuda != nullptr);
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

int Engine::device_index() const {
  const detail::EngineState& loaded = state();  // a moved-from Engine throws in every build
#if KILN_WITH_CUDA
  if (loaded.cuda) return cuda::engine_device(loaded);
#else
  (void)loaded;
#endif
  return -1;
}

ExecutionContext Engine::create_context() const {
  state();  // a moved-from Engine has nothing to run
  return ExecutionContext(std::make_unique<detail::ContextState>(*this, state_));
}

std::vector<Tensor> ExecutionContext::execute(std::span<const NamedTensor> inputs) {
  detail::ContextState& s = state();
#if KILN_WITH_CUDA
  if (s.cuda) {
    std::vector<Tensor> results = cuda::execute_from_host(s, inputs);
    s.ran = true;
    return results;
  }
#endif
  s.bind_inputs(inputs);
  s.update_plan(/*place_shape_values=*/false);
  std::vector<Tensor> results(s.engine->outputs.size());
  const detail::OutputBinder binder{&results};
  if (!s.engine->has_data_dependent_shapes()) binder.bind(s, 0);
  detail::run_on_cpu(s, binder);
  return results;
}

void ExecutionContext::execute(std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
                               void* stream) {
  detail::ContextState& s = state();
#if KILN_WITH_CUDA
  if (s.cuda) {
    detail::check_buffer_devices(s.buffers_on_device, cuda::engine_device(*s.engine), inputs, outputs);
    cuda::execute_on_device(s, inputs, outputs, stream);
    s.ran = true;
    return;
  }
#endif
  if (stream != nullptr) {
    fail(ErrorCode::kInvalidArgument, "a stream was given, but this engine runs on the cpu backend (pass null)");
  }
  detail::bind_bound_call(s, inputs, outputs);
  detail::run_on_cpu(s, detail::OutputBinder{});
}

}  // namespace kiln
