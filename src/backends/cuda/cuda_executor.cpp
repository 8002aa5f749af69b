#include "backends/cuda/cuda_executor.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/cpu_node_runner.hpp"
#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/cuda_device.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/device_buffer.hpp"
#include "backends/cuda/generated_modules.hpp"
#include "backends/cuda/layer_placement.hpp"
#include "backends/cuda/library_handles.hpp"
#include "backends/cuda/plugin_kernels.hpp"
#include "base/checked_math.hpp"
#include "plugins/plugin_layer.hpp"

namespace kiln::cuda {

using backends::CallState;
using backends::EnginePlan;

struct DeviceEngine final : backends::BoundEngine {
  int ordinal = 0;
  DeviceProperties props;
  DeviceBuffer weights;
  std::unique_ptr<GeneratedModules> generated;  // the engine's kernel modules, loaded once
  std::vector<const CudaKernel*> kernels;  // per layer; null for layers that run on the host
  // Per layer: the CPU kernel of a host layer (layer_placement.hpp), else null.
  std::vector<const cpu::CpuKernel*> host_kernels;
  bool has_host_layers = false;

  DeviceEngine() = default;
  DeviceEngine(const DeviceEngine&) = delete;
  DeviceEngine& operator=(const DeviceEngine&) = delete;
  // The last engine handle may go away on a thread whose current device is another GPU.
  ~DeviceEngine() override {
    DeviceGuard guard(ordinal, DeviceGuard::BestEffort{});
    generated.reset();
    weights = DeviceBuffer();
  }

  int device() const override { return ordinal; }
  MemoryLimit memory_limit() const override {
    return resolve_memory_limit(props.total_memory, "the memory of GPU " + std::to_string(ordinal));
  }
};

namespace {

constexpr size_t kIoAlignment = 256;

size_t align_up(size_t value, size_t alignment) { return (value + alignment - 1) / alignment * alignment; }

int choose_device(const format::Target& target, const DeviceSpec& spec, const std::string& source) {
  const int count = device_count();
  const std::string wanted = "sm_" + std::to_string(target.sm_arch) +
                             (target.device_name.empty() ? "" : " (" + target.device_name + ")");
  if (count == 0) {
    fail(ErrorCode::kDeviceError, source, ": engine targets cuda ", wanted,
         " but no CUDA device is available on this machine");
  }
  if (spec.kind == DeviceSpec::Kind::kCpu) {
    fail(ErrorCode::kIncompatible, source, ": engine was built for cuda ", wanted, " and cannot run on the cpu");
  }
  auto check = [&](int ordinal) {
    const DeviceProperties props = device_properties(ordinal);
    if (props.sm_arch != target.sm_arch) {
      fail(ErrorCode::kIncompatible, source, ": engine was built for ", wanted, " but cuda:", ordinal, " is sm_",
           props.sm_arch, " (", props.name, "); rebuild the engine for this GPU");
    }
    return ordinal;
  };
  if (spec.index >= 0) {
    if (spec.index >= count) {
      fail(ErrorCode::kDeviceError, source, ": cuda:", spec.index, " was asked for but this machine has ", count,
           " CUDA device(s)");
    }
    return check(spec.index);
  }
  int current = 0;
  KILN_CUDA_CHECK(cudaGetDevice(&current));
  if (device_properties(current).sm_arch == target.sm_arch) return current;
  for (int d = 0; d < count; ++d)
    if (device_properties(d).sm_arch == target.sm_arch) return d;
  return check(current);  // throws, naming the current device
}

}  // namespace

std::shared_ptr<const backends::BoundEngine> bind_engine_to_device(const EnginePlan& engine, const DeviceSpec& spec) {
  const auto& model = engine.model;
  auto bound = std::make_shared<DeviceEngine>();
  bound->ordinal = choose_device(model.target, spec, engine.source);
  bound->props = device_properties(bound->ordinal);

  LayerPlacement placement = place_layers(engine);
  bound->kernels = std::move(placement.device);
  bound->host_kernels = std::move(placement.host);
  bound->has_host_layers = !placement.host_reasons.empty();

  DeviceGuard guard(bound->ordinal);
  if (!model.weights.empty()) {
    bound->weights = DeviceBuffer(model.weights.size());
    KILN_CUDA_CHECK(cudaMemcpy(bound->weights.get(), model.weights.data(), model.weights.size(), cudaMemcpyHostToDevice));
  }
  try {
    bound->generated = std::make_unique<GeneratedModules>(model.kernels);
  } catch (const Error& e) {
    fail(e.code(), engine.source, ": ", e.what());
  }
  return bound;
}

// ---- per-context state ------------------------------------------------------------------------

class DeviceContext {
 public:
  DeviceContext(const EnginePlan& engine_plan, std::shared_ptr<const DeviceEngine> bound)
      : engine(&engine_plan), device_engine(std::move(bound)), device(device_engine.get()) {
    DeviceGuard guard(device->ordinal);
    libs = std::make_unique<LibraryHandles>();
    KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&own_stream, cudaStreamNonBlocking));
  }
  // Everything device-side is released here, with the context's GPU current: a context may be
  // destroyed while the caller has another GPU current (members would otherwise be destroyed
  // after the guard, on that GPU).
  ~DeviceContext() {
    DeviceGuard guard(device->ordinal, DeviceGuard::BestEffort{});
    drop_graphs();
    entries.clear();  // layer states hold cuDNN/cuBLASLt descriptors and plans
    segment_states.clear();
    segment_arenas.clear();
    segment_shape_values.clear();
    input_value_copies.clear();
    host_states.clear();
    host_inputs.clear();
    host_outputs.clear();
    arena = DeviceBuffer();
    workspace = DeviceBuffer();
    libs.reset();
    if (own_stream) cudaStreamDestroy(own_stream);
  }

  // One per set of input shapes: prepared kernel states, I/O slots and the captured graph.
  struct ShapeEntry {
    std::vector<std::unique_ptr<LayerState>> states;  // per layer
    size_t workspace_bytes = 0;
    std::vector<size_t> io_offsets;  // per tensor: slot of an input/output in the arena (graph mode)
    size_t arena_bytes = 0;          // activations + I/O slots
    int eager_runs = 0;
    cudaGraphExec_t graph = nullptr;
  };

  void drop_graphs() {
    for (auto& [key, entry] : entries) {
      if (entry.graph) cudaGraphExecDestroy(entry.graph);
      entry.graph = nullptr;
    }
  }

  const EnginePlan* engine;  // outlives the context (BackendContext's contract)
  std::shared_ptr<const DeviceEngine> device_engine;
  const DeviceEngine* device;
  std::unique_ptr<LibraryHandles> libs;
  cudaStream_t own_stream = nullptr;
  bool graphs_enabled = true;
  DeviceBuffer arena;
  DeviceBuffer workspace;
  std::map<std::vector<Shape>, ShapeEntry> entries;
  const ShapeEntry* resident = nullptr;  // whose shape values are in the arena now
  // Staging for execute_from_host.
  std::vector<DeviceBuffer> host_inputs;
  std::vector<DeviceBuffer> host_outputs;

  // Engines with data-dependent shapes (run_segments), per segment: its arena, a buffer for the
  // shape values its device layers read that the plan gave no arena space, and the kernel states
  // prepared for each set of shapes seen (a few kept; the key is every tensor's planned shape).
  struct SegmentStates {
    std::vector<std::unique_ptr<LayerState>> states;  // per layer of the segment, from its first
    size_t workspace_bytes = 0;
  };
  std::vector<DeviceBuffer> segment_arenas;
  std::vector<DeviceBuffer> segment_shape_values;
  std::vector<std::map<std::vector<Shape>, SegmentStates>> segment_states;
  // Engines whose shapes depend on input values: host copies of those inputs (CallState::input_values).
  std::vector<HostTensor> input_value_copies;
  // Host layers: per layer, the CPU kernel's state in this context; the staging of one layer's
  // inputs and outputs.
  std::vector<std::unique_ptr<cpu::KernelState>> host_states;
  std::vector<HostTensor> host_staging;
};

namespace {

TensorView device_weight(const DeviceContext& dc, int32_t index) {
  const format::TensorDesc& desc = dc.engine->tensor(index);
  return TensorView{desc.dtype, desc.shape, static_cast<uint8_t*>(dc.device->weights.get()) + desc.weight_offset};
}

// Per-layer scratch for building launch contexts.
struct LaunchViews {
  std::vector<TensorView> inputs;
  std::vector<TensorView> outputs;
  std::vector<const HostTensor*> host_inputs;
};

// Host copies of tensors whose values are known on the host: weights that infer functions read,
// shape values of the current plan and the inputs shapes depend on.
std::vector<const HostTensor*> host_values(const EnginePlan& engine, const CallState& cs) {
  std::vector<const HostTensor*> values(engine.model.tensors.size(), nullptr);
  for (size_t t = 0; t < values.size(); ++t) {
    if (engine.weight_values[t]) {
      values[t] = engine.weight_values[t].get();
    } else if (cs.plan.has_shape_value[t]) {
      values[t] = &cs.plan.shape_values[t];
    } else if (t < cs.input_values.size() && cs.input_values[t]) {
      values[t] = cs.input_values[t];
    }
  }
  return values;
}

// Engines run segment by segment, uncaptured (run_segments): those with data-dependent output
// sizes, those whose shapes depend on input values (a captured graph would bake the shapes, and
// the kernel states the values, of one call) and those with host layers (which run on the calling
// thread between synchronisations).
bool runs_segmented(const DeviceContext& dc) {
  const EnginePlan& engine = *dc.engine;
  return engine.has_data_dependent_shapes() || engine.shapes_depend_on_input_values || dc.device->has_host_layers;
}

// Copies the inputs whose values shape propagation reads to the host (CallState::input_values),
// once they are bound to device pointers. The copy waits for work queued on `stream`.
void fetch_input_values(DeviceContext& dc, CallState& cs, cudaStream_t stream) {
  const EnginePlan& engine = *dc.engine;
  if (!engine.shapes_depend_on_input_values) return;
  dc.input_value_copies.resize(engine.value_input_tensors.size());
  for (size_t i = 0; i < engine.value_input_tensors.size(); ++i) {
    const auto t = static_cast<size_t>(engine.value_input_tensors[i]);
    const TensorView& bound = cs.data[t];
    HostTensor& copy = dc.input_value_copies[i];
    copy = HostTensor(bound.dtype, bound.shape);
    if (!copy.bytes.empty()) {
      KILN_CUDA_CHECK(cudaMemcpyAsync(copy.bytes.data(), bound.data, copy.bytes.size(), cudaMemcpyDefault, stream));
    }
    cs.input_values[t] = &copy;
  }
  KILN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// The key of prepared kernel states in run_segments: every tensor's planned shape and every value
// the host knows that a kernel may have read while it was prepared (shape values, value inputs),
// their bytes packed eight to an entry.
std::vector<Shape> plan_key(const EnginePlan& engine, const CallState& cs) {
  std::vector<Shape> key = cs.plan.shapes;
  auto append_bytes = [&key](const HostTensor& value) {
    Shape packed((value.bytes.size() + 7) / 8 + 1, 0);
    packed[0] = static_cast<int64_t>(value.bytes.size());
    if (!value.bytes.empty()) std::memcpy(packed.data() + 1, value.bytes.data(), value.bytes.size());
    key.push_back(std::move(packed));
  };
  for (size_t t = 0; t < cs.plan.has_shape_value.size(); ++t)
    if (cs.plan.has_shape_value[t]) append_bytes(cs.plan.shape_values[t]);
  for (const int32_t t : engine.value_input_tensors)
    if (const HostTensor* value = cs.input_values.at(static_cast<size_t>(t))) append_bytes(*value);
  return key;
}

LaunchContext make_launch(DeviceContext& dc, size_t layer, LaunchViews& scratch, const std::vector<TensorView>& data,
                          const std::vector<const HostTensor*>& host, cudaStream_t stream) {
  const format::Layer& desc = dc.engine->model.layers[layer];
  scratch.inputs.assign(desc.inputs.size(), TensorView{});
  scratch.host_inputs.assign(desc.inputs.size(), nullptr);
  for (size_t i = 0; i < desc.inputs.size(); ++i) {
    if (desc.inputs[i] < 0) continue;
    scratch.inputs[i] = data[static_cast<size_t>(desc.inputs[i])];
    scratch.host_inputs[i] = host[static_cast<size_t>(desc.inputs[i])];
  }
  scratch.outputs.assign(desc.outputs.size(), TensorView{});
  for (size_t o = 0; o < desc.outputs.size(); ++o) scratch.outputs[o] = data[static_cast<size_t>(desc.outputs[o])];
  return LaunchContext{desc.name,        desc.op, desc.attrs, scratch.inputs, scratch.outputs, scratch.host_inputs,
                       stream,           dc.libs.get(), &dc.device->props, dc.device->generated.get()};
}

// Device views of every tensor for this call. In graph mode inputs and outputs live in fixed arena
// slots (the graph bakes their addresses); otherwise they are the caller's buffers.
std::vector<TensorView> device_views(DeviceContext& dc, const CallState& cs,
                                     const DeviceContext::ShapeEntry& entry, bool use_slots) {
  const auto& model = dc.engine->model;
  std::vector<TensorView> views(model.tensors.size());
  auto* base = static_cast<uint8_t*>(dc.arena.get());
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    const format::TensorDesc& desc = model.tensors[t];
    const Shape& shape = cs.plan.shapes[t];
    switch (desc.kind) {
      case format::TensorKind::kWeight: views[t] = device_weight(dc, static_cast<int32_t>(t)); break;
      case format::TensorKind::kActivation: views[t] = TensorView{desc.dtype, shape, base + cs.plan.offsets[t]}; break;
      case format::TensorKind::kInput:
      case format::TensorKind::kOutput:
        views[t] = use_slots ? TensorView{desc.dtype, shape, base + entry.io_offsets[t]} : cs.data[t];
        break;
    }
    if (views[t].data == nullptr) views[t].data = backends::placeholder_bytes();
  }
  return views;
}

DeviceContext::ShapeEntry& prepare_entry(DeviceContext& dc, CallState& cs) {
  if (const auto found = dc.entries.find(cs.plan.input_shapes); found != dc.entries.end()) return found->second;
  const auto& model = dc.engine->model;
  // I/O slots after the activations, sized with checked arithmetic and held to the engine's
  // memory limit before anything is allocated (and before the entry exists, so a refused shape
  // leaves no half-prepared entry behind).
  std::vector<size_t> io_offsets(model.tensors.size(), 0);
  size_t cursor = align_up(cs.plan.arena_size, kIoAlignment);
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    const auto kind = model.tensors[t].kind;
    if (kind != format::TensorKind::kInput && kind != format::TensorKind::kOutput) continue;
    io_offsets[t] = cursor;
    const format::TensorDesc& desc = model.tensors[t];
    const auto bytes = static_cast<size_t>(checked_byte_size(cs.plan.shapes[t], desc.dtype, desc.name));
    const auto end = add_no_overflow(static_cast<int64_t>(cursor), static_cast<int64_t>(bytes));
    if (!end || static_cast<uint64_t>(*end) > dc.engine->memory_limit.bytes) {
      fail(ErrorCode::kOutOfMemory, dc.engine->source,
           ": the device arena for these input shapes (activations and input/output slots, up to tensor '",
           desc.name, "' ", dtype_name(desc.dtype), shape_to_string(cs.plan.shapes[t]), ") needs more than ",
           describe_memory_limit(dc.engine->memory_limit), "; check the input shapes");
    }
    cursor = align_up(static_cast<size_t>(*end), kIoAlignment);
  }
  DeviceContext::ShapeEntry& entry = dc.entries[cs.plan.input_shapes];
  entry.io_offsets = std::move(io_offsets);
  entry.arena_bytes = std::max<size_t>(cursor, kIoAlignment);
  if (dc.arena.reserve(entry.arena_bytes)) {
    dc.drop_graphs();
    dc.resident = nullptr;
  }
  // Kernels choose algorithms for these shapes (outside any capture).
  const std::vector<TensorView> views = device_views(dc, cs, entry, true);
  const std::vector<const HostTensor*> host = host_values(*dc.engine, cs);
  entry.states.resize(model.layers.size());
  LaunchViews scratch;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const CudaKernel* kernel = dc.device->kernels[l];
    if (!kernel || !kernel->prepare) continue;
    LaunchContext ctx = make_launch(dc, l, scratch, views, host, dc.own_stream);
    ctx.workspace_size = size_t{1} << 30;
    size_t workspace = 0;
    entry.states[l] = kernel->prepare(ctx, &workspace);
    entry.workspace_bytes = std::max(entry.workspace_bytes, workspace);
  }
  if (dc.workspace.reserve(std::max<size_t>(entry.workspace_bytes, kIoAlignment))) {
    dc.drop_graphs();
  }
  return entry;
}

// `events`, when given, holds two events per layer recorded around its launch (profiling).
void launch_layers(DeviceContext& dc, const CallState& cs, const DeviceContext::ShapeEntry& entry,
                   const std::vector<TensorView>& views, cudaStream_t stream,
                   const std::vector<cudaEvent_t>* events = nullptr) {
  const auto& model = dc.engine->model;
  const std::vector<const HostTensor*> host = host_values(*dc.engine, cs);
  LaunchViews scratch;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const CudaKernel* kernel = dc.device->kernels[l];
    if (!kernel) continue;
    LaunchContext ctx = make_launch(dc, l, scratch, views, host, stream);
    ctx.workspace = dc.workspace.get();
    ctx.workspace_size = dc.workspace.size();
    ctx.state = entry.states[l].get();
    if (events) KILN_CUDA_CHECK(cudaEventRecord((*events)[2 * l], stream));
    kernel->launch(ctx);
    if (events) KILN_CUDA_CHECK(cudaEventRecord((*events)[2 * l + 1], stream));
  }
}

// Shape values computed on the host that device layers (or outputs) read. Activations stay in the
// arena while the same shape entry is resident; outputs may move between calls.
void upload_shape_values(const EnginePlan& engine, const CallState& cs, const std::vector<TensorView>& views,
                         cudaStream_t stream, bool outputs_only) {
  const auto& tensors = engine.model.tensors;
  for (size_t t = 0; t < cs.plan.shape_values.size(); ++t) {
    if (!cs.plan.has_shape_value[t]) continue;
    if (outputs_only && tensors[t].kind != format::TensorKind::kOutput) continue;
    const HostTensor& value = cs.plan.shape_values[t];
    if (value.bytes.empty()) continue;
    KILN_CUDA_CHECK(cudaMemcpyAsync(views[t].data, value.bytes.data(), value.bytes.size(), cudaMemcpyHostToDevice, stream));
  }
  KILN_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host copies are temporaries of the plan
}

void check_current_device(const DeviceContext& dc) {
  int current = -1;
  KILN_CUDA_CHECK(cudaGetDevice(&current));
  if (current != dc.device->ordinal) {
    fail(ErrorCode::kDeviceError, "the current CUDA device is cuda:", current, " but the engine is bound to cuda:",
         dc.device->ordinal, "; make cuda:", dc.device->ordinal,
         " current before calling, or turn on multi-device safe mode");
  }
}

void warn_device_switch_once(const DeviceContext& dc, int current) {
  static std::mutex mutex;
  static std::set<std::pair<const void*, int>> warned;
  std::lock_guard lock(mutex);
  if (warned.insert({dc.engine, current}).second) {
    std::fprintf(stderr,
                 "kiln: warning: multi-device safe mode switched from cuda:%d to cuda:%d, where the engine lives\n",
                 current, dc.device->ordinal);
  }
}

// Binds and validates a call and brings the shape entry up to date (shape values in the arena).
DeviceContext::ShapeEntry& prepare_call(DeviceContext& dc, CallState& cs, std::span<const NamedTensor> inputs,
                                        std::span<const NamedTensor> outputs, cudaStream_t stream, bool use_graph) {
  cs.bind_inputs(inputs);
  cs.update_plan(/*place_shape_values=*/true);
  cs.check_outputs(outputs);
  for (const NamedTensor& out : outputs) {
    const auto t = static_cast<size_t>(cs.output_tensor(out.name));
    cs.data[t] = TensorView{out.tensor.dtype, out.tensor.shape, out.tensor.data};
  }
  DeviceContext::ShapeEntry& entry = prepare_entry(dc, cs);
  const bool upload_all = dc.resident != &entry;
  if (upload_all || dc.engine->has_shape_value_outputs) {
    upload_shape_values(*dc.engine, cs, device_views(dc, cs, entry, use_graph), stream, /*outputs_only=*/!upload_all);
    dc.resident = &entry;
  }
  return entry;
}

// ---- engines with data-dependent shapes ------------------------------------------------------
//
// Run eagerly, one segment after another (EnginePlan::segment_ends): segment k is planned (shapes,
// arena) only once the data-dependent layer ending segment k-1 ran and reported the shapes it wrote
// (its launch synchronises the stream to learn them: LaunchContext::written_shapes). Nothing is
// captured into a CUDA graph: a captured segment would need its shapes, hence the sizes the layer
// before it produced, fixed at capture time. Engines without such layers keep the graph path above.

constexpr size_t kMaxCachedSegmentPlans = 16;

size_t output_index(const EnginePlan& engine, const std::string& name) {
  for (size_t o = 0; o < engine.outputs.size(); ++o)
    if (engine.outputs[o].name == name) return o;
  fail(ErrorCode::kInternal, "output '", name, "' is not one of the engine's outputs");
}

// Binds the device views of the tensors segment `segment` writes: activations in its arena (shape
// values the plan left without arena space in a buffer of their own), outputs in the caller's
// buffers (cs.caller_outputs, capacity checked) or, when `staged`, in the context's staging buffers.
// Uploads the segment's shape values (computed on the host while it was planned).
void bind_segment(DeviceContext& dc, CallState& cs, size_t segment, bool staged, std::vector<TensorView>& views,
                  cudaStream_t stream) {
  const EnginePlan& engine = *dc.engine;
  const auto& model = engine.model;
  const auto& plan = cs.plan;
  const auto here = static_cast<int32_t>(segment);
  if (dc.segment_arenas.size() <= segment) {
    dc.segment_arenas.resize(segment + 1);
    dc.segment_shape_values.resize(segment + 1);
  }
  dc.segment_arenas[segment].reserve(std::max<size_t>(plan.segment_arena_sizes.at(segment), kIoAlignment));
  auto* arena = static_cast<uint8_t*>(dc.segment_arenas[segment].get());
  // Shape values without an arena offset, packed into their own buffer.
  std::vector<std::pair<size_t, size_t>> unplaced;  // (tensor, offset)
  size_t unplaced_bytes = 0;
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    if (engine.segment_of[t] != here || model.tensors[t].kind != format::TensorKind::kActivation) continue;
    if (!plan.has_shape_value[t] || plan.offsets[t] != format::MemoryPlan::kNoOffset) continue;
    unplaced.emplace_back(t, unplaced_bytes);
    unplaced_bytes = align_up(unplaced_bytes + plan.shape_values[t].bytes.size(), kIoAlignment);
  }
  dc.segment_shape_values[segment].reserve(std::max<size_t>(unplaced_bytes, kIoAlignment));
  for (const auto& [t, offset] : unplaced) {
    views[t] = TensorView{model.tensors[t].dtype, plan.shapes[t],
                          static_cast<uint8_t*>(dc.segment_shape_values[segment].get()) + offset};
  }
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    if (engine.segment_of[t] != here || model.tensors[t].kind != format::TensorKind::kActivation) continue;
    if (plan.has_shape_value[t] && plan.offsets[t] == format::MemoryPlan::kNoOffset) continue;  // above
    if (plan.offsets[t] == format::MemoryPlan::kNoOffset) {
      fail(ErrorCode::kInternal, "tensor '", model.tensors[t].name, "' has no place in segment ", segment,
           "'s arena");
    }
    views[t] = TensorView{model.tensors[t].dtype, plan.shapes[t], arena + plan.offsets[t]};
  }
  for (size_t o = 0; o < model.outputs.size(); ++o) {
    const auto t = static_cast<size_t>(model.outputs[o].tensor);
    if (engine.segment_of[t] != here) continue;
    const Shape& planned = plan.shapes[t];
    const std::string& name = engine.outputs[o].name;
    const DType dtype = model.tensors[t].dtype;
    if (staged) {
      const auto bytes = static_cast<uint64_t>(checked_byte_size(planned, dtype, name));
      if (bytes > engine.memory_limit.bytes) {
        fail(ErrorCode::kOutOfMemory, engine.source, ": output '", name, "' (", dtype_name(dtype),
             shape_to_string(planned), ") needs ", format_bytes(bytes), ", more than ",
             describe_memory_limit(engine.memory_limit), "; check the input shapes");
      }
      dc.host_outputs.resize(model.outputs.size());
      dc.host_outputs[o].reserve(std::max<size_t>(static_cast<size_t>(bytes), 1));
      views[t] = TensorView{dtype, planned, dc.host_outputs[o].get()};
      continue;
    }
    const TensorView& buffer = cs.caller_outputs.at(o);
    if (shape_numel(buffer.shape) < shape_numel(planned)) {
      fail(ErrorCode::kInvalidArgument, "output '", name, "': the buffer bound to it, ", dtype_name(buffer.dtype),
           shape_to_string(buffer.shape), ", holds ", shape_numel(buffer.shape),
           " elements, but for these inputs it needs up to ", shape_numel(planned), " (", shape_to_string(planned),
           "; its shape depends on the input data)");
    }
    views[t] = TensorView{dtype, planned, buffer.data};
  }
  bool uploaded = false;
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    if (engine.segment_of[t] != here) continue;
    if (views[t].data == nullptr) views[t].data = backends::placeholder_bytes();
    if (!plan.has_shape_value[t] || plan.shape_values[t].bytes.empty()) continue;
    const HostTensor& value = plan.shape_values[t];
    KILN_CUDA_CHECK(cudaMemcpyAsync(views[t].data, value.bytes.data(), value.bytes.size(), cudaMemcpyHostToDevice,
                                    stream));
    uploaded = true;
  }
  if (uploaded) KILN_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host copies are the plan's temporaries
}

// The kernel states of layers [begin, end) for the shapes planned now (prepared once per set).
DeviceContext::SegmentStates& prepare_segment(DeviceContext& dc, const CallState& cs, size_t segment, size_t begin,
                                              size_t end, const std::vector<TensorView>& views,
                                              const std::vector<const HostTensor*>& host) {
  auto& cache = dc.segment_states.at(segment);
  std::vector<Shape> key = plan_key(*dc.engine, cs);
  if (const auto found = cache.find(key); found != cache.end()) return found->second;
  if (cache.size() >= kMaxCachedSegmentPlans) cache.clear();  // data-dependent sizes and values vary per call
  DeviceContext::SegmentStates prepared;
  prepared.states.resize(end - begin);
  LaunchViews scratch;
  for (size_t l = begin; l < end; ++l) {
    const CudaKernel* kernel = dc.device->kernels[l];
    if (!kernel || !kernel->prepare) continue;
    LaunchContext ctx = make_launch(dc, l, scratch, views, host, dc.own_stream);
    ctx.workspace_size = size_t{1} << 30;
    size_t workspace = 0;
    prepared.states[l - begin] = kernel->prepare(ctx, &workspace);
    prepared.workspace_bytes = std::max(prepared.workspace_bytes, workspace);
  }
  return cache.emplace(std::move(key), std::move(prepared)).first->second;
}

// Runs host layer `l` with its CPU kernel: waits for the stream, copies the inputs the host does
// not know to host memory, runs the kernel on the calling thread and copies the outputs back
// (their real shapes into `written` for an op with data-dependent sizes), then waits again, as the
// staging is reused by the next host layer.
void run_host_layer(DeviceContext& dc, size_t l, const cpu::CpuKernel& kernel, const std::vector<TensorView>& views,
                    const std::vector<const HostTensor*>& host, std::span<Shape> written, cudaStream_t stream) {
  const EnginePlan& engine = *dc.engine;
  const format::Layer& layer = engine.model.layers[l];
  auto& staging = dc.host_staging;
  staging.clear();
  staging.reserve(layer.inputs.size() + layer.outputs.size());  // views below point into it
  std::vector<TensorView> inputs(layer.inputs.size());
  for (size_t i = 0; i < layer.inputs.size(); ++i) {
    const int32_t t = layer.inputs[i];
    if (t < 0) continue;  // absent: a null view
    const auto ti = static_cast<size_t>(t);
    if (host[ti]) {
      inputs[i] = view_of(*host[ti]);
    } else if (engine.model.tensors[ti].kind == format::TensorKind::kWeight) {
      inputs[i] = engine.weight_view(t);
    } else {
      HostTensor& copy = staging.emplace_back(views[ti].dtype, views[ti].shape);
      if (!copy.bytes.empty()) {
        KILN_CUDA_CHECK(cudaMemcpyAsync(copy.bytes.data(), views[ti].data, copy.bytes.size(), cudaMemcpyDeviceToHost,
                                        stream));
      }
      inputs[i] = view_of(copy);
    }
    if (inputs[i].data == nullptr) inputs[i].data = backends::placeholder_bytes();
  }
  std::vector<TensorView> outputs(layer.outputs.size());
  for (size_t o = 0; o < layer.outputs.size(); ++o) {
    const TensorView& bound = views[static_cast<size_t>(layer.outputs[o])];
    outputs[o] = view_of(staging.emplace_back(bound.dtype, bound.shape));
    if (outputs[o].data == nullptr) outputs[o].data = backends::placeholder_bytes();
  }
  KILN_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (dc.host_states.size() < engine.model.layers.size()) dc.host_states.resize(engine.model.layers.size());
  cpu::KernelContext ctx{layer.name, layer.op, layer.attrs, inputs, outputs, &dc.host_states[l],
                         engine.layers[l].weight_inputs};
  cpu::invoke_cpu_kernel(kernel, ctx);
  for (size_t o = 0; o < layer.outputs.size(); ++o) {
    const TensorView& bound = views[static_cast<size_t>(layer.outputs[o])];
    if (o < written.size()) written[o] = outputs[o].shape;  // within the bound: checked by the caller
    const auto bytes = static_cast<size_t>(shape_numel(outputs[o].shape)) * dtype_size(outputs[o].dtype);
    if (bytes > bound.nbytes()) {
      fail(ErrorCode::kInternal, "host layer '", layer.name, "' (", layer.op, ") wrote ",
           shape_to_string(outputs[o].shape), " into a buffer for ", shape_to_string(bound.shape));
    }
    if (bytes) KILN_CUDA_CHECK(cudaMemcpyAsync(bound.data, outputs[o].data, bytes, cudaMemcpyHostToDevice, stream));
  }
  KILN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// Runs an engine with data-dependent shapes whose inputs are bound (device pointers) and whose
// segment 0 is planned. Leaves cs.plan with every tensor's real shape. `events`: as launch_layers.
void run_segments(DeviceContext& dc, CallState& cs, bool staged, cudaStream_t stream,
                  const std::vector<cudaEvent_t>* events = nullptr) {
  const EnginePlan& engine = *dc.engine;
  const auto& model = engine.model;
  const auto& ends = engine.segment_ends;
  if (dc.segment_states.size() < ends.size()) dc.segment_states.resize(ends.size());
  std::vector<TensorView> views(model.tensors.size());
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    if (model.tensors[t].kind == format::TensorKind::kWeight) views[t] = device_weight(dc, static_cast<int32_t>(t));
    if (model.tensors[t].kind == format::TensorKind::kInput) views[t] = cs.data[t];
    if (views[t].data == nullptr) views[t].data = backends::placeholder_bytes();
  }
  LaunchViews scratch;
  size_t begin = 0;
  for (size_t segment = 0; segment < ends.size(); ++segment) {
    if (segment > 0) cs.plan_segment(segment);
    bind_segment(dc, cs, segment, staged, views, stream);
    const std::vector<const HostTensor*> host = host_values(engine, cs);
    DeviceContext::SegmentStates& prepared = prepare_segment(dc, cs, segment, begin, ends[segment], views, host);
    dc.workspace.reserve(std::max<size_t>(prepared.workspace_bytes, kIoAlignment));
    for (size_t l = begin; l < ends[segment]; ++l) {
      const CudaKernel* kernel = dc.device->kernels[l];
      const cpu::CpuKernel* host_kernel = dc.device->host_kernels[l];
      if (!kernel && !host_kernel) continue;
      const format::Layer& layer = model.layers[l];
      const bool reports_shapes = engine.layers[l].def->data_dependent_shapes;
      std::vector<Shape> written;
      if (reports_shapes) {
        for (const int32_t t : layer.outputs) written.push_back(cs.plan.shapes[static_cast<size_t>(t)]);
      }
      if (events) KILN_CUDA_CHECK(cudaEventRecord((*events)[2 * l], stream));
      if (host_kernel) {
        run_host_layer(dc, l, *host_kernel, views, host, written, stream);
      } else {
        LaunchContext ctx = make_launch(dc, l, scratch, views, host, stream);
        ctx.workspace = dc.workspace.get();
        ctx.workspace_size = dc.workspace.size();
        ctx.state = prepared.states[l - begin].get();
        ctx.written_shapes = written;
        kernel->launch(ctx);
      }
      if (events) KILN_CUDA_CHECK(cudaEventRecord((*events)[2 * l + 1], stream));
      if (!reports_shapes) continue;
      // The real output shapes, which the next segment is planned from.
      for (size_t o = 0; o < layer.outputs.size(); ++o) {
        const auto t = static_cast<size_t>(layer.outputs[o]);
        const Shape& bound = cs.plan.shapes[t];
        if (written[o].size() != bound.size() || shape_numel(written[o]) > shape_numel(bound)) {
          fail(ErrorCode::kInternal, "layer '", layer.name, "' (", layer.op, ") reported shape ",
               shape_to_string(written[o]), " for tensor '", model.tensors[t].name, "', beyond its bound ",
               shape_to_string(bound));
        }
        cs.plan.shapes[t] = written[o];
        views[t].shape = written[o];
      }
    }
    begin = ends[segment];
  }
}

// Binds a call on caller buffers of an engine that runs segmented: outputs are kept aside
// (cs.caller_outputs), bound with their capacity checked once their segment is planned.
void bind_segmented_call(DeviceContext& dc, CallState& cs, std::span<const NamedTensor> inputs,
                         std::span<const NamedTensor> outputs, cudaStream_t stream) {
  cs.bind_inputs(inputs);
  fetch_input_values(dc, cs, stream);
  cs.update_plan(/*place_shape_values=*/true);
  cs.check_outputs(outputs);
  cs.caller_outputs.assign(dc.engine->outputs.size(), TensorView{});
  for (const NamedTensor& out : outputs) {
    cs.caller_outputs[output_index(*dc.engine, out.name)] =
        TensorView{out.tensor.dtype, out.tensor.shape, out.tensor.data ? out.tensor.data : backends::placeholder_bytes()};
  }
}

void run(DeviceContext& dc, CallState& cs, std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
         cudaStream_t stream) {
  if (runs_segmented(dc)) {
    bind_segmented_call(dc, cs, inputs, outputs, stream);
    run_segments(dc, cs, /*staged=*/false, stream);
    return;
  }
  const bool use_graph = dc.graphs_enabled;
  DeviceContext::ShapeEntry& entry = prepare_call(dc, cs, inputs, outputs, stream, use_graph);
  const auto& model = dc.engine->model;
  if (!use_graph) {
    launch_layers(dc, cs, entry, device_views(dc, cs, entry, false), stream);
    return;
  }
  // Replays touch only the I/O slots; views of every tensor are built only to launch layers.
  auto* slots = static_cast<uint8_t*>(dc.arena.get());
  for (const format::Binding& in : model.inputs) {
    const TensorView& src = cs.data[in.tensor];
    if (src.nbytes()) {
      KILN_CUDA_CHECK(cudaMemcpyAsync(slots + entry.io_offsets[in.tensor], src.data, src.nbytes(),
                                      cudaMemcpyDeviceToDevice, stream));
    }
  }
  if (entry.graph) {
    KILN_CUDA_CHECK(cudaGraphLaunch(entry.graph, stream));
  } else if (entry.eager_runs == 0) {
    // The first run is eager: libraries load their kernels lazily, which capture does not allow.
    launch_layers(dc, cs, entry, device_views(dc, cs, entry, true), stream);
    ++entry.eager_runs;
  } else {
    // Captured on the context's own stream (the caller's may be the legacy default stream, which
    // cannot capture); the graph then runs on the caller's stream like any other work.
    const std::vector<TensorView> views = device_views(dc, cs, entry, true);
    cudaGraph_t graph = nullptr;
    KILN_CUDA_CHECK(cudaStreamBeginCapture(dc.own_stream, cudaStreamCaptureModeThreadLocal));
    try {
      launch_layers(dc, cs, entry, views, dc.own_stream);
    } catch (...) {
      cudaStreamEndCapture(dc.own_stream, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    KILN_CUDA_CHECK(cudaStreamEndCapture(dc.own_stream, &graph));
    const cudaError_t status = cudaGraphInstantiate(&entry.graph, graph, 0);
    cudaGraphDestroy(graph);
    KILN_CUDA_CHECK(status);
    KILN_CUDA_CHECK(cudaGraphLaunch(entry.graph, stream));
  }
  for (const format::Binding& out : model.outputs) {
    const TensorView& dst = cs.data[out.tensor];
    if (dst.nbytes()) {
      KILN_CUDA_CHECK(cudaMemcpyAsync(dst.data, slots + entry.io_offsets[out.tensor], dst.nbytes(),
                                      cudaMemcpyDeviceToDevice, stream));
    }
  }
}

void execute_on_device(DeviceContext& dc, CallState& cs, std::span<const NamedTensor> inputs,
                       std::span<const NamedTensor> outputs, void* stream) {
  if (!get_multi_device_safe_mode()) {
    check_current_device(dc);
    run(dc, cs, inputs, outputs, static_cast<cudaStream_t>(stream));
    return;
  }
  int current = -1;
  KILN_CUDA_CHECK(cudaGetDevice(&current));
  if (current != dc.device->ordinal) warn_device_switch_once(dc, current);
  DeviceGuard guard(dc.device->ordinal);
  run(dc, cs, inputs, outputs, static_cast<cudaStream_t>(stream));
}

std::vector<LayerTiming> profile_on_device(DeviceContext& dc, CallState& cs, std::span<const NamedTensor> inputs,
                                           std::span<const NamedTensor> outputs, int iterations) {
  DeviceGuard guard(dc.device->ordinal);
  const bool segmented = runs_segmented(dc);
  DeviceContext::ShapeEntry* entry = nullptr;
  std::vector<TensorView> views;
  if (segmented) {
    bind_segmented_call(dc, cs, inputs, outputs, nullptr);
  } else {
    entry = &prepare_call(dc, cs, inputs, outputs, nullptr, /*use_graph=*/false);
    views = device_views(dc, cs, *entry, false);
  }
  // One run; engines with data-dependent shapes re-plan from segment 0 for every run after the first.
  bool first_run = true;
  auto launch = [&](const std::vector<cudaEvent_t>* timed) {
    if (!segmented) return launch_layers(dc, cs, *entry, views, nullptr, timed);
    if (!first_run) cs.update_plan(/*place_shape_values=*/true);
    first_run = false;
    run_segments(dc, cs, /*staged=*/false, nullptr, timed);
  };
  const auto& layers = dc.engine->model.layers;
  std::vector<cudaEvent_t> events(2 * layers.size(), nullptr);
  for (cudaEvent_t& event : events) KILN_CUDA_CHECK(cudaEventCreate(&event));
  std::vector<std::vector<float>> samples(layers.size());
  try {
    launch(nullptr);  // warm-up
    for (int i = 0; i < std::max(iterations, 1); ++i) {
      launch(&events);
      KILN_CUDA_CHECK(cudaStreamSynchronize(nullptr));
      for (size_t l = 0; l < layers.size(); ++l) {
        if (!dc.device->kernels[l] && !dc.device->host_kernels[l]) continue;
        float ms = 0.0f;
        KILN_CUDA_CHECK(cudaEventElapsedTime(&ms, events[2 * l], events[2 * l + 1]));
        samples[l].push_back(ms);
      }
    }
  } catch (...) {
    for (cudaEvent_t event : events) cudaEventDestroy(event);
    throw;
  }
  for (cudaEvent_t event : events) cudaEventDestroy(event);
  std::vector<LayerTiming> timings;
  for (size_t l = 0; l < layers.size(); ++l) {
    if (samples[l].empty()) continue;
    std::sort(samples[l].begin(), samples[l].end());
    timings.push_back({layers[l].name, layers[l].op, samples[l][samples[l].size() / 2],
                       backends::layer_bytes(*dc.engine, cs.plan, l)});
  }
  return timings;
}

// execute_from_host for engines with data-dependent shapes, once the inputs are on the device: the
// outputs are staged on the device at their bounds, then copied back in their real shapes.
std::vector<Tensor> execute_segmented_from_host(DeviceContext& dc, CallState& cs,
                                                std::span<const NamedTensor> device_inputs) {
  const auto& model = dc.engine->model;
  cs.bind_inputs(device_inputs);
  fetch_input_values(dc, cs, dc.own_stream);
  cs.update_plan(/*place_shape_values=*/true);
  run_segments(dc, cs, /*staged=*/true, dc.own_stream);
  std::vector<Tensor> results(model.outputs.size());
  for (size_t o = 0; o < results.size(); ++o) {
    Tensor& r = results[o];
    r.dtype = dc.engine->outputs[o].dtype;
    r.shape = cs.plan.shapes[model.outputs[o].tensor];
    r.bytes.resize(static_cast<size_t>(checked_byte_size(r.shape, r.dtype, dc.engine->outputs[o].name)));
    if (r.bytes.empty()) continue;
    KILN_CUDA_CHECK(cudaMemcpyAsync(r.bytes.data(), dc.host_outputs.at(o).get(), r.bytes.size(),
                                    cudaMemcpyDeviceToHost, dc.own_stream));
  }
  KILN_CUDA_CHECK(cudaStreamSynchronize(dc.own_stream));
  return results;
}

std::vector<Tensor> execute_from_host(DeviceContext& dc, CallState& cs, std::span<const NamedTensor> inputs) {
  DeviceGuard guard(dc.device->ordinal);
  // Validate and size everything on the host before touching the device.
  cs.bind_inputs(inputs);
  cs.update_plan(/*place_shape_values=*/true);
  const auto& model = dc.engine->model;
  dc.host_inputs.resize(inputs.size());
  std::vector<NamedTensor> device_inputs(inputs.begin(), inputs.end());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const size_t bytes = static_cast<size_t>(shape_numel(inputs[i].tensor.shape)) * dtype_size(inputs[i].tensor.dtype);
    dc.host_inputs[i].reserve(std::max<size_t>(bytes, 1));
    if (bytes) {
      KILN_CUDA_CHECK(cudaMemcpyAsync(dc.host_inputs[i].get(), inputs[i].tensor.data, bytes, cudaMemcpyHostToDevice,
                                      dc.own_stream));
    }
    device_inputs[i].tensor.data = dc.host_inputs[i].get();
  }
  if (runs_segmented(dc)) return execute_segmented_from_host(dc, cs, device_inputs);
  std::vector<Tensor> results(model.outputs.size());
  std::vector<NamedTensor> device_outputs(model.outputs.size());
  dc.host_outputs.resize(model.outputs.size());
  for (size_t o = 0; o < model.outputs.size(); ++o) {
    Tensor& r = results[o];
    r.dtype = dc.engine->outputs[o].dtype;
    r.shape = cs.plan.shapes[model.outputs[o].tensor];
    r.bytes.resize(static_cast<size_t>(shape_numel(r.shape)) * dtype_size(r.dtype));
    dc.host_outputs[o].reserve(std::max<size_t>(r.bytes.size(), 1));
    device_outputs[o] = NamedTensor{dc.engine->outputs[o].name, TensorRef{r.dtype, r.shape, dc.host_outputs[o].get()}};
  }
  run(dc, cs, device_inputs, device_outputs, dc.own_stream);
  for (size_t o = 0; o < results.size(); ++o) {
    if (results[o].bytes.empty()) continue;
    KILN_CUDA_CHECK(cudaMemcpyAsync(results[o].bytes.data(), dc.host_outputs[o].get(), results[o].bytes.size(),
                                    cudaMemcpyDeviceToHost, dc.own_stream));
  }
  KILN_CUDA_CHECK(cudaStreamSynchronize(dc.own_stream));
  return results;
}

class CudaContext final : public backends::BackendContext {
 public:
  CudaContext(const EnginePlan& engine, std::shared_ptr<const DeviceEngine> bound) : dc_(engine, std::move(bound)) {}

  std::vector<Tensor> execute(CallState& call, std::span<const NamedTensor> inputs) override {
    return execute_from_host(dc_, call, inputs);
  }
  void execute(CallState& call, std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
               void* stream) override {
    execute_on_device(dc_, call, inputs, outputs, stream);
  }
  std::vector<LayerTiming> profile(CallState& call, std::span<const NamedTensor> inputs,
                                   std::span<const NamedTensor> outputs, int iterations) override {
    return profile_on_device(dc_, call, inputs, outputs, iterations);
  }
  // Device layers cannot read host memory: shape values get arena space and are uploaded.
  bool places_shape_values() const override { return true; }
  // No stream is known here: every queued write to the inputs must finish first.
  void read_input_values(CallState& call) override {
    if (!dc_.engine->shapes_depend_on_input_values) return;
    DeviceGuard guard(dc_.device->ordinal);
    KILN_CUDA_CHECK(cudaDeviceSynchronize());
    fetch_input_values(dc_, call, dc_.own_stream);
  }
  void set_graphs(bool enabled) override { dc_.graphs_enabled = enabled; }
  // Engines that run segmented run uncaptured whatever the setting (run_segments).
  bool graphs_enabled() const override { return dc_.graphs_enabled && !runs_segmented(dc_); }

 private:
  DeviceContext dc_;
};

}  // namespace

std::unique_ptr<backends::BackendContext> create_device_context(const EnginePlan& engine,
                                                                std::shared_ptr<const backends::BoundEngine> bound) {
  return std::make_unique<CudaContext>(engine, std::static_pointer_cast<const DeviceEngine>(std::move(bound)));
}

}  // namespace kiln::cuda
