// A backend: what runs the layers of an engine whose target names it ("cpu", "cuda"). The runtime
// (src/runtime) knows backends only through this interface and the registry
// (backends/backend_registry.hpp); it never names one. Implementations: src/backends/cpu/
// cpu_backend.cpp and src/backends/cuda/cuda_backend.cpp, registered by
// src/backends/builtin_backends.cpp.
//
// Lifetimes: a Backend lives as long as the process. The runtime keeps the EnginePlan alive while
// any BoundEngine or BackendContext made from it exists, keeps the BoundEngine alive while any
// context made from it exists, and destroys a BackendContext before its EnginePlan.
// Thread safety: Backend and BoundEngine calls may come from any thread at once; a BackendContext
// is used by one thread at a time (like the ExecutionContext that owns it).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backends/engine_plan.hpp"
#include "base/error.hpp"
#include "backends/kernel_support.hpp"
#include "base/memory_limit.hpp"
#include "format/engine_model.hpp"
#include "kiln/runtime.hpp"

namespace kiln::backends {

// What a device's driver says about one pointer a caller bound, without any driver's types.
struct PointerPlace {
  bool known = false;          // the driver answered (false: no driver, no device, an error)
  bool device_memory = false;  // device memory, as opposed to host, pinned or managed memory
  int device = -1;             // device_memory: the device it is on
};

// One device of a backend, as a builder choosing a target for it needs to know it.
struct DeviceInfo {
  std::string name;         // e.g. "NVIDIA H100 80GB HBM3"
  int arch = 0;             // the backend's architecture number (cuda: compute capability x 10)
  size_t total_memory = 0;  // bytes
};

// An engine bound to where it runs (a GPU, or the host): its weights and kernels there. Made by
// Backend::bind; shared by every context of the engine.
class BoundEngine {
 public:
  virtual ~BoundEngine() = default;
  // The device ordinal the engine's memory is on (Engine::device_index), -1 for host memory.
  virtual int device() const = 0;
  // The ceiling for one context's memory: KILN_MEMORY_LIMIT when set, else the memory of where
  // the engine runs (resolve_memory_limit). Throws as memory_limit_from_env.
  virtual MemoryLimit memory_limit() const = 0;
};

// A backend's per-context state (arenas, streams, library handles, captured graphs). Made by
// Backend::create_context; each call gets the runtime's CallState of the same context, which it
// uses to bind and plan (it validates the bindings; a backend checks only what is its own).
// Every call leaves `call.plan` holding the shapes the outputs got (the runtime then answers
// last_output_shapes from it). Failures throw kiln::Error; a failed call leaves the context usable.
class BackendContext {
 public:
  virtual ~BackendContext() = default;
  // Host tensors in, owned host tensors out (ExecutionContext::execute(inputs)); synchronous.
  virtual std::vector<Tensor> execute(CallState& call, std::span<const NamedTensor> inputs) = 0;
  // Buffers in the engine's address space (ExecutionContext::execute(inputs, outputs, stream)):
  // enqueued on `stream` where the backend has streams (null: its default), else run before
  // returning. A backend without streams fails kInvalidArgument for a non-null `stream`.
  virtual void execute(CallState& call, std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
                       void* stream) = 0;
  // Per-layer times over `iterations` runs (at least one) on bound buffers, as
  // ExecutionContext::profile documents: one entry per layer that ran, in layer order, the median
  // time and layer_bytes.
  virtual std::vector<LayerTiming> profile(CallState& call, std::span<const NamedTensor> inputs,
                                           std::span<const NamedTensor> outputs, int iterations) = 0;
  // The `place_shape_values` this context's calls pass to CallState::update_plan, so that
  // ExecutionContext::output_shapes plans what execute will reuse.
  virtual bool places_shape_values() const = 0;
  // ExecutionContext::output_shapes, after bind_inputs: a backend whose inputs may be device
  // memory sets CallState::input_values for the engine's value inputs
  // (EnginePlan::value_input_tensors) once every queued write to them has finished. The default
  // does nothing: shape propagation reads host inputs where they are.
  virtual void read_input_values(CallState& /*call*/) {}
  // CUDA graph capture (ExecutionContext::set_cuda_graphs): a backend without graphs ignores the
  // setting and reports false.
  virtual void set_graphs(bool enabled) = 0;
  virtual bool graphs_enabled() const = 0;
  // Intra-op host threads (ExecutionContext::set_threads): `threads` >= 0 (the runtime checks),
  // 0 for the backend's default. threads() is the count the next call uses. A backend that runs
  // no kernels on the host ignores the setting and reports 1.
  virtual void set_threads(int /*threads*/) {}
  virtual int threads() const { return 1; }
};

class Backend {
 public:
  virtual ~Backend() = default;

  // The engine target this backend runs (format::Target::backend): unique in the registry.
  virtual const std::string& name() const = 0;

  // Before anything is prepared: fails (kIncompatible, naming `source` and the device) when an
  // engine of this backend can never run on `device`, so the caller learns that first.
  virtual void check_device(const std::string& source, const DeviceSpec& device) const = 0;

  // "" when this backend has a kernel for `layer` of `model` that takes its op and the dtypes of
  // its tensors, else why not, naming what is missing or the tensor, its dtype and the dtypes the
  // kernel takes (e.g. "input 0 'x' is float64; the cuda kernel takes float32, float16,
  // bfloat16"). Answers from the kernel registrations (backends/kernel_support.hpp) and, for
  // plugin layers, from the plugin registry; attributes and shapes are checked when the engine is
  // bound. Never throws.
  virtual std::string why_unsupported(const format::EngineModel& model, const format::Layer& layer) const = 0;
  // The ops this backend has kernels for (sorted), and what the kernel of `op` takes (null when it
  // has none): its registration, for the backend-ops conformance test and tools. Never throw.
  virtual std::vector<std::string> kernel_ops() const { return {}; }
  virtual const KernelSupport* kernel_support(std::string_view /*op*/) const { return nullptr; }
  // why_unsupported(model, layer) is "".
  bool supports(const format::EngineModel& model, const format::Layer& layer) const {
    return why_unsupported(model, layer).empty();
  }

  // The devices of this machine this backend can run on: how many (0 when it has no devices of its
  // own, as the host backend, or no driver or device answers; never throws), and one of them
  // (throws kDeviceError when the driver cannot answer, kInvalidArgument for a backend without).
  virtual int device_count() const { return 0; }
  virtual DeviceInfo device_info(int ordinal) const {
    fail(ErrorCode::kInvalidArgument, "the ", name(), " backend has no device ", ordinal);
  }

  // The checks bind makes that need no device, for an engine built for another machine: throws
  // kUnsupported, naming every layer concerned, for layers this backend cannot run. The builder
  // calls it through check_loadable_off_device.
  virtual void check_loadable(const EnginePlan& engine) const = 0;
  // The layers of `engine` that a device backend runs on the host instead (no kernel of its own
  // takes them), each "layer 'name' (op 'Op'): why not on the device", in layer order; empty for
  // backends without such a fallback. Needs no device; throws as check_loadable.
  virtual std::vector<std::string> host_layers(const EnginePlan& /*engine*/) const { return {}; }
  // True when this backend's kernel for `layer` computes its output 0 correctly with it placed
  // over the bytes of input `input` (same shape and dtype): the runtime's memory plan may then
  // give that output the input's storage where the input is read by no later layer, which saves
  // the bytes and the copy a kernel would make (a convolution's residual). False by default.
  // Never throws.
  virtual bool writes_over_input(const format::Layer& /*layer*/, size_t /*input*/) const { return false; }

  // Binds a prepared engine to `device` (DeviceSpec{} lets the backend choose): makes the checks
  // of check_loadable, picks and checks the device, puts the weights and kernels where they run.
  // Throws kUnsupported as check_loadable, kDeviceError/kIncompatible for devices, kOutOfMemory.
  virtual std::shared_ptr<const BoundEngine> bind(const EnginePlan& engine, const DeviceSpec& device) const = 0;

  // A context of `engine` as bound by this backend's bind (`bound` is what it returned).
  virtual std::unique_ptr<BackendContext> create_context(const EnginePlan& engine,
                                                         std::shared_ptr<const BoundEngine> bound) const = 0;

  // ---- memory in a bound engine's address space (EngineBuffer, synchronize) --------------------
  // `device` is a BoundEngine::device() of this backend. Each throws kOutOfMemory/kDeviceError.
  virtual void* allocate(int device, size_t bytes) const = 0;
  // Frees what allocate returned; never throws (errors are dropped: it runs in destructors).
  virtual void release(int device, void* data) const noexcept = 0;
  // Synchronous copies, ordered after work enqueued earlier on the default stream.
  virtual void copy_from_host(int device, void* destination, const void* source, size_t bytes) const = 0;
  virtual void copy_to_host(int device, void* destination, const void* source, size_t bytes) const = 0;
  // Waits for the work enqueued on `stream` (null: the default stream) of `device`.
  virtual void synchronize(int device, void* stream) const = 0;
  // Where `pointer` lives, as this backend's driver knows it ({} when it cannot tell). Never throws.
  virtual PointerPlace locate(const void* pointer) const = 0;
  // Peak DRAM bandwidth of `device` in GB/s; 0 when unknown (host memory). Never throws.
  virtual double peak_memory_bandwidth_gb_per_s(int device) const = 0;
};

}  // namespace kiln::backends
