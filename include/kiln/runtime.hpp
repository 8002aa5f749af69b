// kiln runtime, C++ API: load an engine, create execution contexts, run them.
//
// Thread safety: an Engine is immutable and may be shared by any number of threads. An
// ExecutionContext belongs to one thread at a time (it owns its activation arena); create one per
// thread or stream. All calls report failure by throwing kiln::Error (see kiln/types.hpp), whose
// message names the file, binding, tensor or node and the expected vs actual value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kiln/types.hpp"

namespace kiln {

namespace detail {
struct EngineState;
struct ContextState;
}  // namespace detail
namespace backends {
class Backend;
}  // namespace backends

// Which device an engine should run on.
struct DeviceSpec {
  enum class Kind { kAuto, kCpu, kCuda };
  Kind kind = Kind::kAuto;  // kAuto: the engine's own backend
  int index = -1;           // kCuda: the GPU ordinal; -1 picks the most compatible one
};

// A borrowed, dense row-major tensor. On the CPU backend `data` is host memory.
struct TensorRef {
  DType dtype = DType::kFloat32;
  Shape shape;
  void* data = nullptr;
};

// A binding name with the tensor bound to it.
struct NamedTensor {
  std::string name;
  TensorRef tensor;
};

// An owned, dense row-major host tensor, as returned by ExecutionContext::execute.
struct Tensor {
  DType dtype = DType::kFloat32;
  Shape shape;
  std::vector<uint8_t> bytes;

  int64_t numel() const { return shape_numel(shape); }
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  template <typename T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  TensorRef ref() { return TensorRef{dtype, shape, bytes.data()}; }
};

// Time one layer took (median over the profiled runs).
struct LayerTiming {
  std::string name;
  std::string op;
  double milliseconds = 0.0;
  // Bytes of the layer's input and output tensors at the profiled shapes, weights included, each
  // distinct tensor once: the memory traffic of a kernel that reads every input and writes every
  // output once. bytes / milliseconds is the layer's achieved bandwidth.
  uint64_t bytes = 0;
};

struct BindingInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;                 // kDynamicDim for dynamic dimensions
  Shape min_shape, max_shape;  // inputs: the allowed range of each dimension (inclusive)
  // Outputs: the shape depends on the input *data* (it is written by a layer such as NonZero,
  // Unique, Compress or NonMaxSuppression, or after one), so it is known only after a run; see
  // ExecutionContext::execute and last_output_shapes.
  bool data_dependent_shape = false;
};

class ExecutionContext;
class EngineBuffer;

// The most threads ExecutionContext::set_threads accepts.
inline constexpr int kMaxContextThreads = 1024;
void synchronize(const class Engine& engine, void* stream);

// Engine and ExecutionContext are movable; a moved-from one throws kInvalidArgument from every
// call but assignment and destruction. Copies of an Engine share its loaded state.
class Engine {
 public:
  // Reads and verifies an engine file. Throws kNotFound/kIoError (path), kCorruptFile (anything
  // that fails verification), kIncompatible (newer major format, wrong GPU architecture),
  // kDeviceError (a CUDA engine and no usable GPU), kUnsupported (an op this runtime lacks).
  static Engine load_file(const std::string& path, DeviceSpec device = {});
  // The same from bytes in memory (copied; the caller may free them after the call).
  static Engine load_bytes(const void* data, size_t size, DeviceSpec device = {});

  const std::vector<BindingInfo>& inputs() const;
  const std::vector<BindingInfo>& outputs() const;
  // "cpu" or "cuda".
  const std::string& backend() const;
  // The engine file's format version, "major.minor", and the producer that wrote it.
  std::string format_version() const;
  const std::string& producer() const;
  const std::string& metadata_json() const;
  size_t num_layers() const;

  // A new context with its own arena. Cheap; may be called from any thread.
  ExecutionContext create_context() const;

  // The GPU ordinal a CUDA engine is bound to; -1 for CPU engines.
  int device_index() const;

 private:
  explicit Engine(std::shared_ptr<const detail::EngineState> state) : state_(std::move(state)) {}
  // The loaded state; throws kInvalidArgument for a moved-from Engine.
  const detail::EngineState& state() const;
  std::shared_ptr<const detail::EngineState> state_;
  friend class ExecutionContext;
  friend class EngineBuffer;
  friend void synchronize(const Engine& engine, void* stream);
};

class ExecutionContext {
 public:
  ExecutionContext(ExecutionContext&&) noexcept;
  ExecutionContext& operator=(ExecutionContext&&) noexcept;
  ~ExecutionContext();

  // Runs the engine on `inputs`, which must bind every input exactly once by name, each with the
  // binding's dtype and a shape whose dims match (dynamic dims within their range). Returns the
  // outputs in the engine's output order. Throws kInvalidArgument naming the binding and the
  // expected vs actual dtype/shape, or the missing/unknown name.
  std::vector<Tensor> execute(std::span<const NamedTensor> inputs);

  // As above, writing into caller-provided outputs (every output bound once, exact shape and
  // dtype). `stream` is the CUDA stream for CUDA engines and must be null for CPU engines.
  // Outputs whose shape depends on the input data (BindingInfo::data_dependent_shape) are the
  // exception: the buffer's shape gives its capacity (same dtype and rank; any dims), which must
  // hold at least the output's upper bound for these inputs (output_shapes() reports it where it
  // is known) or, where no bound is known before the run, the actual result. The result is
  // written row-major from the buffer's start; last_output_shapes() gives its shape. A buffer too
  // small throws kInvalidArgument naming the output, before anything is written to it.
  void execute(std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
               void* stream = nullptr);

  // The outputs' shapes (in the engine's output order) the last execute() or profile() on this
  // context produced: for data-dependent outputs, the actual shapes. Throws kInvalidArgument when
  // the context has not run (or its last call failed before finishing).
  std::vector<Shape> last_output_shapes() const;

  const Engine& engine() const;

  // The outputs' shapes (in the engine's output order) that execute() would produce for `inputs`,
  // validated as execute() validates them. Reads input data only for engines whose shapes depend
  // on input values: CPU engines read host tensors; CUDA engines copy those inputs (host or device
  // memory) to the host after waiting for all work on the device; otherwise only shapes matter.
  // Updates this context's shape plan, so a following execute() on the same shapes is cheaper.
  // For outputs whose shape depends on the input data, this is the upper bound where one is known
  // before running (the output of a data-dependent layer whose inputs' shapes are known), and the
  // engine's declared shape (-1 for the data-dependent dims) otherwise.
  std::vector<Shape> output_shapes(std::span<const NamedTensor> inputs);

  // Runs the engine `iterations` times on bound buffers (as execute(inputs, outputs) with the
  // default stream), launching layer by layer without a CUDA graph, and returns each layer's
  // median time in launch order: GPU time between events for CUDA engines, host time for CPU
  // engines. Layers that run on the host during shape propagation are not listed.
  std::vector<LayerTiming> profile(std::span<const NamedTensor> inputs, std::span<const NamedTensor> outputs,
                                   int iterations = 20);

  // CUDA engines: capture each set of input shapes into a CUDA graph and replay it (default on).
  // No effect on CPU engines.
  void set_cuda_graphs(bool enabled);
  bool cuda_graphs() const;

  // CPU engines: the number of threads one call's kernels split their work over (intra-op
  // parallelism; the calling thread is one of them). 0 restores the default: the CPUs this
  // process may run on divided by the number of live CPU contexts, at least 1, worked out at each
  // call, so contexts running at once share the cores instead of oversubscribing them. kiln keeps
  // OpenBLAS at one thread per call, so its threads never multiply with these. A default count
  // of two or more is a guess, so such a context times its calls on all its threads and on the
  // calling thread alone and runs the faster; a count set here is used on every call. Throws
  // kInvalidArgument outside [0, kMaxContextThreads]. No effect on CUDA engines.
  void set_threads(int threads);
  // The thread count the next call uses (the default resolved); 1 for CUDA engines.
  int threads() const;

 private:
  explicit ExecutionContext(std::unique_ptr<detail::ContextState> state);
  // The context's state; throws kInvalidArgument for a moved-from context.
  detail::ContextState& state() const;
  std::unique_ptr<detail::ContextState> state_;
  friend class Engine;
};

// Memory in an engine's address space: device memory on the engine's GPU for CUDA engines, host
// memory for CPU engines. For callers without an allocator of their own (the CLI, plain C++ apps)
// that want to run ExecutionContext::execute on bound buffers.
class EngineBuffer {
 public:
  // Allocates `bytes` (at least 1). Throws kOutOfMemory or kDeviceError.
  EngineBuffer(const Engine& engine, size_t bytes);
  ~EngineBuffer();
  EngineBuffer(EngineBuffer&& other) noexcept;
  EngineBuffer& operator=(EngineBuffer&& other) noexcept;
  EngineBuffer(const EngineBuffer&) = delete;
  EngineBuffer& operator=(const EngineBuffer&) = delete;

  // A moved-from buffer holds nothing: data() is null and size() 0.
  void* data() const { return data_; }
  size_t size() const { return size_; }
  // Synchronous copies of the first `bytes` bytes (kInvalidArgument past size(), from or to a null
  // pointer, or on a moved-from buffer); they wait for work enqueued earlier on the default stream.
  void copy_from_host(const void* source, size_t bytes);
  void copy_to_host(void* destination, size_t bytes) const;

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t size_ = 0;
  int device_ = -1;  // -1: host memory
  const backends::Backend* backend_ = nullptr;  // whose memory it is; lives as long as the process
};

// Waits until the work enqueued for `engine` on `stream` has finished (no-op for CPU engines).
void synchronize(const Engine& engine, void* stream = nullptr);

// Peak DRAM bandwidth of a CUDA engine's GPU in GB/s (1e9 bytes/s): twice the memory clock times
// the bus width, as the driver reports them. 0 for CPU engines and when the driver reports
// neither (never throws), so callers print it only when positive.
double peak_memory_bandwidth_gb_per_s(const Engine& engine);

// Multi-device safe mode, process-wide and off by default. Off: a call with device buffers checks
// that the current CUDA device is the engine's and fails clearly (kDeviceError, naming both) when
// it is not. On: such a call switches to the engine's device (warning once per engine/device pair)
// and restores the caller's device after. Either way: calls with host tensors (Engine::run and
// the host-tensor execute) stage through the engine's own GPU memory, so they always run on its
// device and leave the caller's current device as it was; a device buffer of another GPU is an
// error naming the tensor and both devices (raw device memory is never moved; the torch
// integration moves torch tensors in safe mode). set_ returns the previous mode, so callers can
// restore it.
bool set_multi_device_safe_mode(bool enabled);
bool get_multi_device_safe_mode();

// The runtime's version ("0.1.0") and the newest engine format it reads ("1.0").
std::string runtime_version();
std::string engine_format_version();

// Loads a plugin library (include/kiln/plugin.h) with dlopen, kept loaded for the process's life,
// and registers its creators (its kiln_plugin_init, and whatever its constructors registered).
// Returns the path the loader resolved. Throws kiln::Error: kNotFound when it cannot be loaded
// (dlerror's text), kIncompatible for another plugin ABI version, kInvalidArgument for a file that
// is no kiln plugin or a creator that conflicts with one already registered (naming both libraries).
std::string load_plugin_library(const std::string& path);

}  // namespace kiln
