// ExecutionContext: binds inputs, propagates shapes (running shape-value layers on the host), plans
// the arena for those shapes (cached while input shapes repeat), and runs the launch list.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/error.hpp"
#include "runtime/engine_state.hpp"
#include "runtime/memory_planner.hpp"

namespace kiln {
namespace detail {
namespace {

constexpr uint64_t kArenaAlignment = 64;
// Stands in for the data of a tensor whose bytes a Shape/Size layer never reads, and for the data
// of empty tensors, so kernels can tell "present" from "absent" by a null pointer.
alignas(64) uint8_t g_placeholder_bytes[64];

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

}  // namespace

struct ContextState {
  std::shared_ptr<const EngineState> engine;
  Engine engine_handle;

  // Shapes, shape values and arena placement for the last input shapes seen.
  bool have_plan = false;
  std::vector<Shape> planned_input_shapes;
  std::vector<Shape> shapes;                  // per tensor
  std::vector<HostTensor> shape_values;       // per tensor, filled for shape-value layer outputs
  std::vector<bool> has_shape_value;
  std::vector<uint64_t> offsets;              // per tensor, arena offset of activations
  uint64_t arena_capacity = 0;
  std::unique_ptr<uint8_t, FreeDeleter> arena;

  // Per tensor: which output binding it is (-1 if none); per call: where each output goes.
  std::vector<int32_t> output_slot;
  std::vector<TensorView> data;               // per tensor, bound for the current call

  explicit ContextState(const Engine& handle, std::shared_ptr<const EngineState> state)
      : engine(std::move(state)), engine_handle(handle) {
    const size_t n = engine->model.tensors.size();
    output_slot.assign(n, -1);
    for (size_t o = 0; o < engine->model.outputs.size(); ++o)
      output_slot[engine->model.outputs[o].tensor] = static_cast<int32_t>(o);
  }

  void bind_inputs(std::span<const NamedTensor> inputs);
  void propagate_shapes(std::span<const NamedTensor> inputs);
  void plan_arena_for_shapes();
  void run_layers();
  void deliver_shape_value_outputs();
  std::vector<Shape> input_shapes_of(std::span<const NamedTensor> inputs) const;
  void check_outputs(std::span<const NamedTensor> outputs) const;
  void execute(std::span<const NamedTensor> inputs, const std::vector<TensorView>& output_views);
};

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
}

}  // namespace

std::vector<Shape> ContextState::input_shapes_of(std::span<const NamedTensor> inputs) const {
  std::vector<Shape> shapes_by_binding(engine->inputs.size());
  for (const NamedTensor& in : inputs) {
    size_t index = 0;
    find_binding(engine->inputs, in.name, &index);
    shapes_by_binding[index] = in.tensor.shape;
  }
  return shapes_by_binding;
}

void ContextState::bind_inputs(std::span<const NamedTensor> inputs) {
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
    const int32_t t = static_cast<int32_t>(engine->model.inputs[index].tensor);
    data[static_cast<size_t>(t)] =
        TensorView{in.tensor.dtype, in.tensor.shape, in.tensor.data ? in.tensor.data : g_placeholder_bytes};
  }
  for (size_t i = 0; i < bindings.size(); ++i) {
    if (!seen[i]) fail(ErrorCode::kInvalidArgument, "missing input '", bindings[i].name, "'");
  }
}

void ContextState::propagate_shapes(std::span<const NamedTensor> inputs) {
  const auto& model = engine->model;
  shapes.assign(model.tensors.size(), Shape{});
  shape_values.assign(model.tensors.size(), HostTensor{});
  has_shape_value.assign(model.tensors.size(), false);
  for (size_t t = 0; t < model.tensors.size(); ++t)
    if (model.tensors[t].kind == format::TensorKind::kWeight) shapes[t] = model.tensors[t].shape;
  for (const NamedTensor& in : inputs) {
    size_t index = 0;
    find_binding(engine->inputs, in.name, &index);
    shapes[engine->model.inputs[index].tensor] = in.tensor.shape;
  }

  std::vector<ops::ValueInfo> in_info;
  std::vector<ops::ValueInfo> out_info;
  std::vector<HostTensor> value_copies;  // input values needed by infer (host copies of inputs)
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const format::Layer& layer = model.layers[l];
    const PreparedLayer& prepared = engine->layers[l];
    in_info.assign(layer.inputs.size(), ops::ValueInfo{});
    value_copies.clear();
    value_copies.reserve(layer.inputs.size());
    for (size_t i = 0; i < layer.inputs.size(); ++i) {
      const int32_t t = layer.inputs[i];
      if (t < 0) {
        in_info[i].present = false;
        continue;
      }
      const auto ti = static_cast<size_t>(t);
      in_info[i].dtype = model.tensors[ti].dtype;
      in_info[i].shape = shapes[ti];
      if (engine->weight_values[ti]) {
        in_info[i].value = engine->weight_values[ti].get();
      } else if (has_shape_value[ti]) {
        in_info[i].value = &shape_values[ti];
      } else if (model.tensors[ti].kind == format::TensorKind::kInput && engine->shapes_depend_on_input_values) {
        const TensorView& view = data[ti];
        HostTensor& copy = value_copies.emplace_back(view.dtype, view.shape);
        std::memcpy(copy.bytes.data(), view.data, copy.bytes.size());
        in_info[i].value = &copy;
      }
    }
    out_info.assign(layer.outputs.size(), ops::ValueInfo{});
    ops::infer_node(*prepared.def, layer.name, layer.attrs, in_info, out_info);
    for (size_t o = 0; o < layer.outputs.size(); ++o) {
      const auto t = static_cast<size_t>(layer.outputs[o]);
      const format::TensorDesc& desc = model.tensors[t];
      const Shape& got = out_info[o].shape;
      if (out_info[o].dtype != desc.dtype || !shape_is_static(got) || got.size() != desc.shape.size()) {
        fail(ErrorCode::kInternal, "layer '", layer.name, "' (", layer.op, "): computed ", dtype_name(out_info[o].dtype),
             shape_to_string(got), " for tensor '", desc.name, "' but the engine declares ", dtype_name(desc.dtype),
             shape_to_string(desc.shape));
      }
      for (size_t d = 0; d < got.size(); ++d) {
        if (desc.shape[d] != kDynamicDim && desc.shape[d] != got[d]) {
          fail(ErrorCode::kInvalidArgument, "layer '", layer.name, "' (", layer.op, "): tensor '", desc.name,
               "' would have shape ", shape_to_string(got), " but the engine was built for ",
               shape_to_string(desc.shape), "; check the input shapes");
        }
      }
      shapes[t] = got;
    }
    if (!prepared.computes_shape_values) continue;

    // Run now on the host: later layers need these values to know their shapes.
    std::vector<TensorView> in_views(layer.inputs.size());
    for (size_t i = 0; i < layer.inputs.size(); ++i) {
      const int32_t t = layer.inputs[i];
      if (t < 0) continue;
      const auto ti = static_cast<size_t>(t);
      const auto kind = model.tensors[ti].kind;
      if (kind == format::TensorKind::kWeight) {
        in_views[i] = engine->weight_view(t);
      } else if (kind == format::TensorKind::kInput) {
        in_views[i] = data[ti];
      } else if (has_shape_value[ti]) {
        in_views[i] = view_of(shape_values[ti]);
      } else {
        // Only Shape/Size layers read tensors that were not computed here; they use the shape alone.
        in_views[i] = TensorView{model.tensors[ti].dtype, shapes[ti], g_placeholder_bytes};
      }
    }
    std::vector<TensorView> out_views(layer.outputs.size());
    for (size_t o = 0; o < layer.outputs.size(); ++o) {
      const auto t = static_cast<size_t>(layer.outputs[o]);
      shape_values[t] = HostTensor(model.tensors[t].dtype, shapes[t]);
      has_shape_value[t] = true;
      out_views[o] = view_of(shape_values[t]);
      if (out_views[o].data == nullptr) out_views[o].data = g_placeholder_bytes;
    }
    cpu::KernelContext ctx{layer.name, layer.op, layer.attrs, in_views, out_views};
    cpu::invoke_cpu_kernel(*prepared.kernel, ctx);
  }
}

void ContextState::plan_arena_for_shapes() {
  const auto& model = engine->model;
  const auto& plan = model.memory_plan;
  offsets.assign(model.tensors.size(), format::MemoryPlan::kNoOffset);
  std::vector<BufferRequest> requests;
  std::vector<size_t> request_tensor;
  bool matches_build_shapes = plan.is_static && plan.offsets.size() == model.tensors.size();
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    const format::TensorDesc& desc = model.tensors[t];
    if (desc.kind != format::TensorKind::kActivation || has_shape_value[t]) continue;
    matches_build_shapes = matches_build_shapes && shapes[t] == desc.shape &&
                           plan.offsets[t] != format::MemoryPlan::kNoOffset;
    const uint64_t size = static_cast<uint64_t>(shape_numel(shapes[t])) * dtype_size(desc.dtype);
    requests.push_back(BufferRequest{size, engine->first_use[t], std::max(engine->first_use[t], engine->last_use[t])});
    request_tensor.push_back(t);
  }
  uint64_t needed = 0;
  if (matches_build_shapes) {
    // The builder's plan is valid for these shapes: use it as recorded in the engine.
    for (size_t t : request_tensor) offsets[t] = plan.offsets[t];
    needed = plan.arena_size;
  } else {
    ArenaPlan arena_plan = plan_arena(requests, kArenaAlignment);
    for (size_t r = 0; r < requests.size(); ++r) offsets[request_tensor[r]] = arena_plan.offsets[r];
    needed = arena_plan.total_size;
  }
  needed = std::max<uint64_t>(needed, kArenaAlignment);
  if (needed > arena_capacity) {
    auto* memory = static_cast<uint8_t*>(std::aligned_alloc(kArenaAlignment, (needed + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment));
    if (!memory) fail(ErrorCode::kOutOfMemory, "cannot allocate an arena of ", needed, " bytes");
    arena.reset(memory);
    arena_capacity = needed;
  }
}

void ContextState::run_layers() {
  const auto& model = engine->model;
  std::vector<TensorView> in_views;
  std::vector<TensorView> out_views;
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    const format::TensorDesc& desc = model.tensors[t];
    if (desc.kind == format::TensorKind::kWeight) {
      data[t] = engine->weight_view(static_cast<int32_t>(t));
    } else if (desc.kind == format::TensorKind::kActivation) {
      data[t] = has_shape_value[t] ? view_of(shape_values[t])
                                   : TensorView{desc.dtype, shapes[t], arena.get() + offsets[t]};
    }
    if (data[t].data == nullptr && desc.kind != format::TensorKind::kOutput) data[t].data = g_placeholder_bytes;
  }
  // Outputs computed during shape propagation are copied first: later layers may read them.
  deliver_shape_value_outputs();
  for (size_t l = 0; l < model.layers.size(); ++l) {
    if (engine->layers[l].computes_shape_values) continue;
    const format::Layer& layer = model.layers[l];
    in_views.assign(layer.inputs.size(), TensorView{});
    for (size_t i = 0; i < layer.inputs.size(); ++i)
      if (layer.inputs[i] >= 0) in_views[i] = data[static_cast<size_t>(layer.inputs[i])];
    out_views.assign(layer.outputs.size(), TensorView{});
    for (size_t o = 0; o < layer.outputs.size(); ++o) out_views[o] = data[static_cast<size_t>(layer.outputs[o])];
    cpu::KernelContext ctx{layer.name, layer.op, layer.attrs, in_views, out_views};
    cpu::invoke_cpu_kernel(*engine->layers[l].kernel, ctx);
  }
}

void ContextState::deliver_shape_value_outputs() {
  for (const format::Binding& out : engine->model.outputs) {
    if (!has_shape_value[out.tensor]) continue;
    const HostTensor& value = shape_values[out.tensor];
    std::memcpy(data[out.tensor].data, value.bytes.data(), value.bytes.size());
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
    const Shape& expected = shapes[engine->model.outputs[index].tensor];
    if (out.tensor.dtype != binding->dtype || out.tensor.shape != expected) {
      fail(ErrorCode::kInvalidArgument, "output '", out.name, "': expected ", dtype_name(binding->dtype),
           shape_to_string(expected), " for these inputs, got ", dtype_name(out.tensor.dtype),
           shape_to_string(out.tensor.shape));
    }
    if (!out.tensor.data && shape_numel(expected) != 0) {
      fail(ErrorCode::kInvalidArgument, "output '", out.name, "': data pointer is null");
    }
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

const Engine& ExecutionContext::engine() const { return state_->engine_handle; }

ExecutionContext Engine::create_context() const {
  return ExecutionContext(std::make_unique<detail::ContextState>(*this, state_));
}

namespace {

// Shapes, shape values and the arena plan, reused while the input shapes repeat.
void prepare_for_inputs(detail::ContextState& s, std::span<const NamedTensor> inputs) {
  s.data.assign(s.engine->model.tensors.size(), TensorView{});
  s.bind_inputs(inputs);
  std::vector<Shape> input_shapes = s.input_shapes_of(inputs);
  if (!s.have_plan || s.engine->shapes_depend_on_input_values || input_shapes != s.planned_input_shapes) {
    s.have_plan = false;
    s.propagate_shapes(inputs);
    s.plan_arena_for_shapes();
    s.planned_input_shapes = std::move(input_shapes);
    s.have_plan = true;
  }
}

}  // namespace

std::vector<Tensor> ExecutionContext::execute(std::span<const NamedTensor> inputs) {
  detail::ContextState& s = *state_;
  prepare_for_inputs(s, inputs);
  std::vector<Tensor> results(s.engine->outputs.size());
  for (size_t o = 0; o < results.size(); ++o) {
    const auto t = s.engine->model.outputs[o].tensor;
    Tensor& r = results[o];
    r.dtype = s.engine->outputs[o].dtype;
    r.shape = s.shapes[t];
    r.bytes.resize(static_cast<size_t>(shape_numel(r.shape)) * dtype_size(r.dtype));
    s.data[t] = TensorView{r.dtype, r.shape, r.bytes.empty() ? detail::g_placeholder_bytes : r.bytes.data()};
  }
  s.run_layers();
  return results;
}

void ExecutionContext::execute(std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
                               void* stream) {
  detail::ContextState& s = *state_;
  if (stream != nullptr) {
    fail(ErrorCode::kInvalidArgument, "a stream was given, but this engine runs on the cpu backend (pass null)");
  }
  prepare_for_inputs(s, inputs);
  s.check_outputs(outputs);
  for (const NamedTensor& out : outputs) {
    size_t index = 0;
    detail::find_binding(s.engine->outputs, out.name, &index);
    const auto t = s.engine->model.outputs[index].tensor;
    s.data[t] = TensorView{out.tensor.dtype, out.tensor.shape,
                           out.tensor.data ? out.tensor.data : detail::g_placeholder_bytes};
  }
  s.run_layers();
}

}  // namespace kiln
