// The CUDA backend's kernel interface. A kernel is prepared once per layer per set of shapes
// (outside CUDA graph capture: choose algorithms, create descriptors, size workspace) and then
// launched any number of times, possibly inside stream capture.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backends/cuda/cuda_device.hpp"
#include "backends/kernel_support.hpp"
#include "base/attributes.hpp"
#include "base/error.hpp"
#include "base/family_registration.hpp"
#include "base/host_tensor.hpp"

namespace kiln::cuda {

struct LibraryHandles;  // per execution context: cuBLASLt and cuDNN handles (library_handles.hpp)
class GeneratedModules;  // per engine: its generated CUDA modules (generated_modules.hpp)

// What a kernel keeps between prepare and launch (algorithm choice, descriptors).
class LayerState {
 public:
  virtual ~LayerState() = default;
};

// Everything one layer sees. Tensor data are device pointers on the engine's device (null for an
// absent optional input). Shapes are the concrete shapes of this run.
struct LaunchContext {
  std::string_view node_name;
  std::string_view op;
  const AttributeMap& attrs;
  std::span<const TensorView> inputs;
  std::span<const TensorView> outputs;
  // Per input: its value in host memory when known there (always for the op's value_inputs, e.g.
  // Slice's starts/ends or Reshape's shape: constants and shape tensors), else null.
  std::span<const HostTensor* const> host_inputs;
  cudaStream_t stream = nullptr;
  LibraryHandles* libs = nullptr;
  const DeviceProperties* device = nullptr;
  // The engine's generated modules (never null in the executor; empty for engines without any).
  // Layers with attribute "kiln_kernel" find their kernels here.
  const GeneratedModules* generated = nullptr;
  void* workspace = nullptr;     // launch: at least the bytes prepare asked for; prepare: null
  size_t workspace_size = 0;     // prepare: the most it may ask for
  LayerState* state = nullptr;   // launch: what prepare returned
  // For a layer whose op has data-dependent output sizes (OpDef::data_dependent_shapes): one entry
  // per output, holding the upper bound its buffer was sized for; launch replaces each with the
  // shape it actually wrote (row-major from the buffer's start) before returning. Such a launch may
  // synchronise `stream`: the executor never launches these layers under capture. Empty otherwise.
  std::span<Shape> written_shapes = {};

  bool has_input(size_t i) const { return i < inputs.size() && inputs[i].data != nullptr; }

  template <typename... Parts>
  [[noreturn]] void fail(ErrorCode code, Parts&&... parts) const {
    kiln::fail(code, "node '", node_name, "' (", op, ") on cuda: ", std::forward<Parts>(parts)...);
  }
};

struct CudaKernel {
  // Optional. May allocate, synchronise and query libraries; sets *workspace_bytes to what launch
  // needs (at most ctx.workspace_size). Throws kUnsupported for shapes/dtypes/attributes it lacks.
  std::unique_ptr<LayerState> (*prepare)(LaunchContext& ctx, size_t* workspace_bytes) = nullptr;
  // Enqueues the work on ctx.stream. Must not synchronise or allocate: it may run under capture.
  void (*launch)(LaunchContext& ctx) = nullptr;
  // Optional. Refuses (kUnsupported, naming the node and the attribute) attribute choices the
  // kernel does not implement. Needs no GPU: runs for every layer when an engine is loaded and
  // when one is built for the cuda target, so such a layer fails the build, not a run.
  void (*check_attributes)(std::string_view node_name, std::string_view op,
                           const AttributeMap& attrs) = nullptr;
};

// The dtypes any CUDA kernel may read or write. No CUDA kernel is written for uint16/uint32/uint64,
// float8 (float8e8m0 too) or int4/uint4/int2/uint2/float4e2m1 tensors (the CPU backend has them),
// and several pick their code by element size alone, so layers with such tensors are refused
// before they could run.
inline constexpr backends::DTypeSet kCudaTensorDTypes{
    DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt8, DType::kUInt8,
    DType::kInt16,   DType::kInt32,   DType::kInt64,    DType::kBool};

// What the elementwise and reduction kernels compute on (dispatch_numeric in cuda_common.cuh).
inline constexpr backends::DTypeSet kCudaNumericDTypes{DType::kFloat32, DType::kFloat16, DType::kBFloat16,
                                                       DType::kInt32, DType::kInt64};

// The CUDA kernels by op, each with what it takes (backends/kernel_support.hpp); every
// registration is narrowed to kCudaTensorDTypes.
class CudaKernelRegistry {
 public:
  void add(std::string_view op, CudaKernel kernel, backends::KernelSupport support = {});  // kInternal on a duplicate
  const CudaKernel* find(std::string_view op) const;
  // What the kernel of `op` takes, or null when there is none.
  const backends::KernelSupport* find_support(std::string_view op) const;
  std::vector<std::string> ops() const;  // sorted

 private:
  struct Entry {
    CudaKernel kernel;
    backends::KernelSupport support;
  };
  std::unordered_map<std::string, Entry> kernels_;
};

// Every built-in CUDA kernel, built on first use (thread-safe).
const CudaKernelRegistry& cuda_kernels();

// The CUDA kernel families: each src/backends/cuda/<family>*.{cpp,cu} with kernels defines
// `void register_<family>_kernels(CudaKernelRegistry& registry)`. This is their table, sorted by
// name and generated at build time from those definitions in src/backends/cuda only
// (base/family_registration.hpp), so adding a family edits no list; cuda_kernels() registers them.
using CudaKernelFamily = Family<CudaKernelRegistry>;
std::span<const CudaKernelFamily> cuda_kernel_families();

}  // namespace kiln::cuda
