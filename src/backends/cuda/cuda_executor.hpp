// The CUDA executor: binds an engine to a GPU (weights uploaded once), and runs contexts on the
// caller's stream, capturing each set of input shapes into a CUDA graph that later calls replay.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "kiln/runtime.hpp"

namespace kiln::detail {
struct EngineState;
struct ContextState;
}  // namespace kiln::detail

namespace kiln::cuda {

struct DeviceEngine;
class DeviceContext;
struct CudaKernel;  // cuda_kernel.hpp

// Picks the GPU (device.index if given, else the current device if its architecture matches,
// else the first GPU of the engine's architecture), checks it, uploads the weights, loads the
// engine's generated kernel modules and finds a kernel for every layer. Throws kDeviceError (no
// GPU), kIncompatible (architecture mismatch, naming both; a module the driver cannot run here),
// kCorruptFile (a module the driver refuses), kUnsupported (layers without a CUDA kernel, all
// listed).
std::shared_ptr<const DeviceEngine> bind_engine_to_device(const detail::EngineState& engine, const DeviceSpec& device);

// The CUDA kernel of every layer that runs on the GPU (null for layers run during shape
// propagation and views). Throws kUnsupported listing every such layer without a CUDA kernel in
// this runtime, or else every such layer with a uint16/uint32/uint64 tensor (the CUDA backend has
// no kernels for them), or the first layer whose kernel's check_attributes refuses its attributes.
// Needs no GPU: a build for the cuda target checks its engine with it.
std::vector<const CudaKernel*> find_cuda_kernels(const detail::EngineState& engine);

std::shared_ptr<DeviceContext> create_device_context(std::shared_ptr<const detail::EngineState> engine);

// Device pointers in and out, on `stream` (null: the legacy default stream).
void execute_on_device(detail::ContextState& context, std::span<const NamedTensor> inputs,
                       std::span<const NamedTensor> outputs, void* stream);
// Host tensors in and out: copies in, runs on the context's own stream, copies out, synchronises.
std::vector<Tensor> execute_from_host(detail::ContextState& context, std::span<const NamedTensor> inputs);

// Per-layer GPU times (see ExecutionContext::profile), on the default stream.
std::vector<LayerTiming> profile_on_device(detail::ContextState& context, std::span<const NamedTensor> inputs,
                                           std::span<const NamedTensor> outputs, int iterations);

// The GPU ordinal an engine is bound to.
int engine_device(const detail::EngineState& engine);
void set_cuda_graphs(detail::ContextState& context, bool enabled);
bool cuda_graphs_enabled(const detail::ContextState& context);

}  // namespace kiln::cuda
