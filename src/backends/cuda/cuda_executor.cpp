#include "backends/cuda/cuda_executor.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/cuda_device.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/device_buffer.hpp"
#include "backends/cuda/generated_modules.hpp"
#include "backends/cuda/library_handles.hpp"
#include "base/checked_math.hpp"

namespace kiln::cuda {

using backends::CallState;
using backends::EnginePlan;

struct DeviceEngine final : backends::BoundEngine {
  int ordinal = 0;
  DeviceProperties props;
  DeviceBuffer weights;
  std::unique_ptr<GeneratedModules> generated;  // the engine's kernel modules, loaded once
  std::vector<const CudaKernel*> kernels;  // per layer; null for layers that run on the host

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

// "uint32 tensor 'x'" for the first uint16/uint32/uint64, float8 (float8e8m0 too), int4/uint4/
// int2/uint2 or float4e2m1 tensor `layer` reads or writes; "" when none. No CUDA kernel is written
// for these dtypes (the CPU backend has them), and several CUDA kernels pick their code by element
// size alone, so such a layer is refused before it could run.
std::string cpu_only_tensor(const format::EngineModel& model, const format::Layer& layer) {
  for (const std::vector<int32_t>* ids : {&layer.inputs, &layer.outputs}) {
    for (const int32_t id : *ids) {
      if (id < 0) continue;
      const format::TensorDesc& tensor = model.tensors.at(static_cast<size_t>(id));
      if (tensor.dtype == DType::kUInt16 || tensor.dtype == DType::kUInt32 || tensor.dtype == DType::kUInt64 ||
          is_float8(tensor.dtype) || tensor.dtype == DType::kFloat8E8M0 ||
          is_sub_byte(tensor.dtype)) {
        return std::string(dtype_name(tensor.dtype)) + " tensor '" + tensor.name + "'";
      }
    }
  }
  return "";
}

// "float64 tensor 'x'" when `layer` is one whose CPU kernel takes a dtype its CUDA kernel does not:
// float64 Softmax/LogSoftmax/MatMul/Gemm (the CUDA kernels compute float32/float16/bfloat16 only,
// and would read the doubles as other values) and int8/uint8 MaxPool; "" otherwise.
std::string cpu_only_dtype_of(const format::EngineModel& model, const format::Layer& layer) {
  static const std::set<std::string> kFloatOnlyOps = {"Softmax", "LogSoftmax", "MatMul", "Gemm",
                                                      "MaxPool"};
  if (!kFloatOnlyOps.count(layer.op) || layer.inputs.empty() || layer.inputs[0] < 0) return "";
  const format::TensorDesc& x = model.tensors.at(static_cast<size_t>(layer.inputs[0]));
  if (x.dtype == DType::kFloat32 || x.dtype == DType::kFloat16 || x.dtype == DType::kBFloat16) {
    return "";
  }
  return std::string(dtype_name(x.dtype)) + " tensor '" + x.name +
         "' (its cuda kernel takes float32, float16 and bfloat16)";
}

}  // namespace

bool supports_layer(const format::EngineModel& model, const format::Layer& layer) {
  if (!cuda_kernels().find(layer.op)) return false;
  // The CUDA MaxPool kernel writes the pooled values only; MaxPool's Indices output is CPU-only.
  if (layer.op == "MaxPool" && layer.outputs.size() > 1) return false;
  return cpu_only_tensor(model, layer).empty() && cpu_only_dtype_of(model, layer).empty();
}

void refuse_value_dependent_shapes(const EnginePlan& engine) {
  for (size_t l = 0; l < engine.model.layers.size(); ++l) {
    if (!engine.layers[l].def->data_dependent_shapes) continue;
    const format::Layer& layer = engine.model.layers[l];
    fail(ErrorCode::kUnsupported, engine.source, ": layer '", layer.name, "' (", layer.op,
         ") has output shapes that depend on its input data, which the cuda backend does not support yet; "
         "build the engine for the cpu backend");
  }
  if (engine.shapes_depend_on_input_values) {
    fail(ErrorCode::kUnsupported, engine.source,
         ": the engine's shapes depend on input values, which the cuda backend does not support yet");
  }
}

std::vector<const CudaKernel*> find_cuda_kernels(const EnginePlan& engine) {
  const auto& model = engine.model;
  std::vector<const CudaKernel*> kernels(model.layers.size(), nullptr);
  std::vector<std::string> missing;
  std::vector<std::string> cpu_only_layers;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    if (engine.layers[l].computes_shape_values || engine.layers[l].is_view) continue;
    const format::Layer& layer = model.layers[l];
    kernels[l] = cuda_kernels().find(layer.op);
    if (!kernels[l]) missing.push_back("layer '" + layer.name + "' (op '" + layer.op + "')");
    // The CUDA MaxPool kernel writes the pooled values only; MaxPool's Indices output is CPU-only.
    if (kernels[l] && layer.op == "MaxPool" && layer.outputs.size() > 1) {
      missing.push_back("layer '" + layer.name + "' (op 'MaxPool' with its Indices output)");
    }
    if (kernels[l] && kernels[l]->check_attributes) kernels[l]->check_attributes(layer.name, layer.op, layer.attrs);
    if (const std::string tensor = cpu_only_tensor(model, layer); !tensor.empty()) {
      cpu_only_layers.push_back("layer '" + layer.name + "' (op '" + layer.op + "'): " + tensor);
    } else if (const std::string dtype = cpu_only_dtype_of(model, layer); !dtype.empty()) {
      cpu_only_layers.push_back("layer '" + layer.name + "' (op '" + layer.op + "'): " + dtype);
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (const std::string& m : missing) list += "\n  " + m;
    fail(ErrorCode::kUnsupported, engine.source, ": this runtime (kiln ", KILN_VERSION, ") has no cuda kernel for ",
         missing.size(), " layer(s):", list);
  }
  if (!cpu_only_layers.empty()) {
    std::string list;
    for (const std::string& m : cpu_only_layers) list += "\n  " + m;
    fail(ErrorCode::kUnsupported, engine.source,
         ": the cuda backend has no kernels for uint16/uint32/uint64 tensors or float8 tensors (float8e8m0 "
         "too), nor for int4/uint4/int2/uint2 or float4e2m1 tensors, nor float64 Softmax/LogSoftmax/"
         "MatMul/Gemm or int8/uint8 MaxPool (",
         cpu_only_layers.size(), " layer(s)); build this model for the cpu target:", list);
  }
  return kernels;
}

std::shared_ptr<const backends::BoundEngine> bind_engine_to_device(const EnginePlan& engine, const DeviceSpec& spec) {
  const auto& model = engine.model;
  auto bound = std::make_shared<DeviceEngine>();
  bound->ordinal = choose_device(model.target, spec, engine.source);
  bound->props = device_properties(bound->ordinal);

  bound->kernels = find_cuda_kernels(engine);

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
// and shape values of the current plan.
std::vector<const HostTensor*> host_values(const EnginePlan& engine, const CallState& cs) {
  std::vector<const HostTensor*> values(engine.model.tensors.size(), nullptr);
  for (size_t t = 0; t < values.size(); ++t) {
    if (engine.weight_values[t]) {
      values[t] = engine.weight_values[t].get();
    } else if (cs.plan.has_shape_value[t]) {
      values[t] = &cs.plan.shape_values[t];
    }
  }
  return values;
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

void run(DeviceContext& dc, CallState& cs, std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
         cudaStream_t stream) {
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
  DeviceContext::ShapeEntry* entry = &prepare_call(dc, cs, inputs, outputs, nullptr, /*use_graph=*/false);
  const std::vector<TensorView> views = device_views(dc, cs, *entry, false);
  const auto& layers = dc.engine->model.layers;
  std::vector<cudaEvent_t> events(2 * layers.size(), nullptr);
  for (cudaEvent_t& event : events) KILN_CUDA_CHECK(cudaEventCreate(&event));
  std::vector<std::vector<float>> samples(layers.size());
  try {
    launch_layers(dc, cs, *entry, views, nullptr);  // warm-up
    for (int i = 0; i < std::max(iterations, 1); ++i) {
      launch_layers(dc, cs, *entry, views, nullptr, &events);
      KILN_CUDA_CHECK(cudaStreamSynchronize(nullptr));
      for (size_t l = 0; l < layers.size(); ++l) {
        if (!dc.device->kernels[l]) continue;
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
  void set_graphs(bool enabled) override { dc_.graphs_enabled = enabled; }
  bool graphs_enabled() const override { return dc_.graphs_enabled; }

 private:
  DeviceContext dc_;
};

}  // namespace

std::unique_ptr<backends::BackendContext> create_device_context(const EnginePlan& engine,
                                                                std::shared_ptr<const backends::BoundEngine> bound) {
  return std::make_unique<CudaContext>(engine, std::static_pointer_cast<const DeviceEngine>(std::move(bound)));
}

}  // namespace kiln::cuda
