// The cpu backend: the host executor. Runs each segment of the plan (engines with data-dependent
// shapes plan each later segment once the layer ending the previous one reported its shapes) with
// the CPU kernels, in host arenas owned by the context.
#include "backends/cpu/cpu_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/cpu_node_runner.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "base/checked_math.hpp"
#include "base/error.hpp"

namespace kiln::cpu {
namespace {

using backends::CallState;
using backends::EnginePlan;
using backends::placeholder_bytes;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

// A context's host memory: segment 0's arena, and for engines with data-dependent shapes the
// arenas of segments 1.. (each planned while the engine runs).
struct HostArenas {
  uint64_t host_arena_capacity = 0;
  std::unique_ptr<uint8_t, FreeDeleter> host_arena;
  std::vector<uint64_t> segment_arena_capacity;
  std::vector<std::unique_ptr<uint8_t, FreeDeleter>> segment_arenas;
  // What each layer's kernel prepared in this context (KernelContext::state), by layer index.
  std::vector<std::unique_ptr<KernelState>> layer_states;
};

// One call: the engine, the runtime's state of the context and its arenas.
struct Call {
  const EnginePlan* engine;
  CallState& state;
  HostArenas& arenas;
  backends::ShapePlan& plan = state.plan;
  std::vector<TensorView>& data = state.data;
  std::vector<TensorView>& caller_outputs = state.caller_outputs;

  void plan_segment(size_t segment) { state.plan_segment(segment); }
  bool update_plan(bool place_shape_values) { return state.update_plan(place_shape_values); }
  void bind_inputs(std::span<const NamedTensor> inputs) { state.bind_inputs(inputs); }
  void check_outputs(std::span<const NamedTensor> outputs) const { state.check_outputs(outputs); }
  int32_t output_tensor(const std::string& name) const { return state.output_tensor(name); }
};

size_t output_index(const EnginePlan& engine, const std::string& name) {
  for (size_t o = 0; o < engine.outputs.size(); ++o)
    if (engine.outputs[o].name == name) return o;
  fail(ErrorCode::kInternal, "output '", name, "' is not one of the engine's outputs");
}

void ensure_host_arena(Call& s) {
  constexpr uint64_t kAlignment = 256;
  const uint64_t needed = std::max<uint64_t>(s.plan.arena_size, kAlignment);
  if (needed <= s.arenas.host_arena_capacity) return;
  const uint64_t rounded = (needed + kAlignment - 1) / kAlignment * kAlignment;
  auto* memory = static_cast<uint8_t*>(std::aligned_alloc(kAlignment, rounded));
  if (!memory) fail(ErrorCode::kOutOfMemory, "cannot allocate a host arena of ", rounded, " bytes");
  s.arenas.host_arena.reset(memory);
  s.arenas.host_arena_capacity = rounded;
}

// Binds the tensors layers [begin, end) write: activations to `arena` at their planned offsets,
// shape values to their host copies.
void bind_activations(Call& s, size_t segment, uint8_t* arena) {
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
void copy_shape_value_outputs(Call& s, size_t segment) {
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
void run_layers(Call& s, size_t begin, size_t end, std::vector<double>* timings) {
  const auto& model = s.engine->model;
  std::vector<TensorView> in_views;
  std::vector<TensorView> out_views;
  if (s.arenas.layer_states.size() != model.layers.size()) s.arenas.layer_states.resize(model.layers.size());
  for (size_t l = begin; l < end; ++l) {
    if (s.engine->layers[l].computes_shape_values || s.engine->layers[l].is_view) continue;
    const format::Layer& layer = model.layers[l];
    in_views.assign(layer.inputs.size(), TensorView{});
    for (size_t i = 0; i < layer.inputs.size(); ++i)
      if (layer.inputs[i] >= 0) in_views[i] = s.data[static_cast<size_t>(layer.inputs[i])];
    out_views.assign(layer.outputs.size(), TensorView{});
    for (size_t o = 0; o < layer.outputs.size(); ++o) out_views[o] = s.data[static_cast<size_t>(layer.outputs[o])];
    KernelContext ctx{layer.name, layer.op, layer.attrs, in_views, out_views, &s.arenas.layer_states[l],
                      s.engine->layers[l].weight_inputs};
    const auto start = std::chrono::steady_clock::now();
    invoke_cpu_kernel(*s.engine->layers[l].kernel, ctx);
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
  void bind(Call& s, size_t segment) const {
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
  void finish(Call& s) const {
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

uint8_t* ensure_segment_arena(Call& s, size_t segment) {
  if (segment == 0) {
    ensure_host_arena(s);
    return s.arenas.host_arena.get();
  }
  constexpr uint64_t kAlignment = 256;
  if (s.arenas.segment_arenas.size() < segment) {
    s.arenas.segment_arenas.resize(segment);
    s.arenas.segment_arena_capacity.resize(segment, 0);
  }
  const uint64_t needed = std::max<uint64_t>(s.plan.segment_arena_sizes[segment], kAlignment);
  uint64_t& capacity = s.arenas.segment_arena_capacity[segment - 1];
  if (needed > capacity) {
    const uint64_t rounded = (needed + kAlignment - 1) / kAlignment * kAlignment;
    auto* memory = static_cast<uint8_t*>(std::aligned_alloc(kAlignment, rounded));
    if (!memory) fail(ErrorCode::kOutOfMemory, "cannot allocate a host arena of ", rounded, " bytes");
    s.arenas.segment_arenas[segment - 1].reset(memory);
    capacity = rounded;
  }
  return s.arenas.segment_arenas[segment - 1].get();
}

// Runs an engine whose plan is current (segment 0). Engines without data-dependent shapes have
// their outputs bound already (`outputs` is then unused); the others bind them segment by
// segment, planning each segment after the data-dependent layer before it ran.
void run_on_cpu(Call& s, const OutputBinder& outputs, std::vector<double>* timings = nullptr) {
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
}

// Validates a call on caller-provided buffers and binds them.
// Engines with data-dependent shapes keep the buffers aside: they are bound (and their capacity
// checked) when their segment is planned.
void bind_bound_call(Call& s, std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs) {
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
    s.caller_outputs[output_index(*s.engine, out.name)] = view;
  }
}


std::string missing_kernel_list(const EnginePlan& engine, const backends::Backend& backend) {
  std::string list;
  size_t count = 0;
  for (const format::Layer& layer : engine.model.layers) {
    const std::string reason = backend.why_unsupported(engine.model, layer);
    if (reason.empty()) continue;
    list += "\n  layer '" + layer.name + "' (op '" + layer.op + "'): " + reason;
    ++count;
  }
  if (count == 0) return "";
  return std::to_string(count) + " layer(s):" + list;
}

class CpuBoundEngine final : public backends::BoundEngine {
 public:
  int device() const override { return -1; }
  MemoryLimit memory_limit() const override { return host_memory_limit(); }
};

class CpuContext final : public backends::BackendContext {
 public:
  explicit CpuContext(const EnginePlan& engine) : engine_(engine) {}

  std::vector<Tensor> execute(CallState& state, std::span<const NamedTensor> inputs) override {
    const TimedCall timed(*this);
    Call s{&engine_, state, arenas_};
    s.bind_inputs(inputs);
    s.update_plan(/*place_shape_values=*/false);
    std::vector<Tensor> results(engine_.outputs.size());
    const OutputBinder binder{&results};
    if (!engine_.has_data_dependent_shapes()) binder.bind(s, 0);
    run_on_cpu(s, binder);
    return results;
  }

  void execute(CallState& state, std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
               void* stream) override {
    if (stream != nullptr) {
      fail(ErrorCode::kInvalidArgument, "a stream was given, but this engine runs on the cpu backend (pass null)");
    }
    const TimedCall timed(*this);
    Call s{&engine_, state, arenas_};
    bind_bound_call(s, inputs, outputs);
    run_on_cpu(s, OutputBinder{});
  }

  std::vector<LayerTiming> profile(CallState& state, std::span<const NamedTensor> inputs,
                                   std::span<const NamedTensor> outputs, int iterations) override {
    const IntraOpScope scope(pool());
    Call s{&engine_, state, arenas_};
    const auto& layers = engine_.model.layers;
    std::vector<std::vector<double>> samples(layers.size());
    std::vector<double> timings(layers.size(), -1.0);
    bind_bound_call(s, inputs, outputs);
    for (int i = 0; i < std::max(iterations, 1); ++i) {
      std::fill(timings.begin(), timings.end(), -1.0);
      if (i > 0 && engine_.has_data_dependent_shapes()) s.update_plan(/*place_shape_values=*/false);
      run_on_cpu(s, OutputBinder{}, &timings);
      for (size_t l = 0; l < layers.size(); ++l)
        if (timings[l] >= 0.0) samples[l].push_back(timings[l]);
    }
    std::vector<LayerTiming> result;
    for (size_t l = 0; l < layers.size(); ++l) {
      if (samples[l].empty()) continue;
      std::sort(samples[l].begin(), samples[l].end());
      result.push_back({layers[l].name, layers[l].op, samples[l][samples[l].size() / 2],
                        backends::layer_bytes(engine_, state.plan, l)});
    }
    return result;
  }

  bool places_shape_values() const override { return false; }
  void set_graphs(bool) override {}
  bool graphs_enabled() const override { return false; }
  void set_threads(int threads) override {
    requested_threads_ = threads;
    choice_ = ThreadCountChoice{/*adaptive=*/threads == 0};
  }
  int threads() const override {
    return requested_threads_ > 0 ? requested_threads_ : default_intra_op_threads();
  }

 private:
  // One execute call: on the context's threads or on the calling thread alone, as the choice says
  // (ThreadCountChoice: only for the default count), timed for it. A call that throws is not counted.
  class TimedCall {
   public:
    explicit TimedCall(CpuContext& context)
        : context_(context),
          pool_(context.pool()),
          all_threads_(pool_ == nullptr || context.choice_.next_uses_all_threads()),
          scope_(all_threads_ ? pool_ : nullptr),
          start_(std::chrono::steady_clock::now()) {}
    ~TimedCall() {
      if (pool_ == nullptr || std::uncaught_exceptions() > 0) return;
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_).count();
      context_.choice_.record(all_threads_, ms);
    }
    TimedCall(const TimedCall&) = delete;
    TimedCall& operator=(const TimedCall&) = delete;

   private:
    CpuContext& context_;
    ThreadPool* pool_;
    bool all_threads_;
    IntraOpScope scope_;
    std::chrono::steady_clock::time_point start_;
  };

  // The pool of this call's size (threads(): the default follows the live contexts), or null for
  // one thread. Resized between calls only.
  ThreadPool* pool() {
    const int wanted = threads();
    if (wanted <= 1) return nullptr;
    if (!pool_ || pool_->size() != wanted) {
      pool_.reset();
      pool_ = std::make_unique<ThreadPool>(wanted);
      choice_ = ThreadCountChoice{/*adaptive=*/requested_threads_ == 0};  // timed afresh for the new size
    }
    return pool_.get();
  }

  const EnginePlan& engine_;
  HostArenas arenas_;
  const LiveCpuContext live_;
  int requested_threads_ = 0;  // 0: default_intra_op_threads()
  std::unique_ptr<ThreadPool> pool_;
  ThreadCountChoice choice_;
};

class CpuBackend final : public backends::Backend {
 public:
  const std::string& name() const override { return name_; }

  void check_device(const std::string& source, const DeviceSpec& device) const override {
    if (device.kind == DeviceSpec::Kind::kCuda) {
      fail(ErrorCode::kIncompatible, source, ": engine was built for the cpu backend and cannot run on cuda:",
           device.index, "; rebuild it with --target cuda");
    }
  }

  std::vector<std::string> kernel_ops() const override { return cpu_kernels().ops(); }
  const backends::KernelSupport* kernel_support(std::string_view op) const override {
    return cpu_kernels().find_support(op);
  }

  std::string why_unsupported(const format::EngineModel& model, const format::Layer& layer) const override {
    const backends::KernelSupport* support = cpu_kernels().find_support(layer.op);
    if (!support) return "the cpu backend has no kernel for op '" + layer.op + "'";
    return backends::check_kernel_support(*support, model, layer, name_);
  }

  // A fused convolution's residual (input 3): oneDNN's sum post-op accumulates into the output's
  // bytes, and the reference kernel copies the residual aside before writing the output.
  bool writes_over_input(const format::Layer& layer, size_t input) const override {
    return layer.op == "Conv" && input == 3;
  }

  // The host runs every layer: each needs a CPU kernel.
  void check_loadable(const EnginePlan& engine) const override {
    if (const std::string missing = missing_kernel_list(engine, *this); !missing.empty()) {
      fail(ErrorCode::kUnsupported, engine.source, ": this runtime (kiln ", KILN_VERSION, ") has no cpu kernel for ",
           missing);
    }
  }

  std::shared_ptr<const backends::BoundEngine> bind(const EnginePlan& engine, const DeviceSpec&) const override {
    check_loadable(engine);
    return std::make_shared<CpuBoundEngine>();
  }

  std::unique_ptr<backends::BackendContext> create_context(
      const EnginePlan& engine, std::shared_ptr<const backends::BoundEngine>) const override {
    return std::make_unique<CpuContext>(engine);
  }

  void* allocate(int, size_t bytes) const override {
    void* data = std::malloc(bytes);
    if (!data) fail(ErrorCode::kOutOfMemory, "cannot allocate ", bytes, " bytes of host memory");
    return data;
  }
  void release(int, void* data) const noexcept override { std::free(data); }
  void copy_from_host(int, void* destination, const void* source, size_t bytes) const override {
    std::memcpy(destination, source, bytes);
  }
  void copy_to_host(int, void* destination, const void* source, size_t bytes) const override {
    std::memcpy(destination, source, bytes);
  }
  void synchronize(int, void*) const override {}  // every call ran before it returned
  backends::PointerPlace locate(const void*) const override { return {}; }
  double peak_memory_bandwidth_gb_per_s(int) const override { return 0.0; }

 private:
  const std::string name_ = "cpu";
};

}  // namespace

const backends::Backend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace kiln::cpu
