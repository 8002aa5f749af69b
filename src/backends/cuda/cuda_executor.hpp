// The CUDA executor: binds an engine to a GPU (weights uploaded once), and runs contexts on the
// caller's stream, capturing each set of input shapes into a CUDA graph that later calls replay.
// cuda_backend.cpp puts it behind the Backend interface (src/backends/backend.hpp).
#pragma once

#include <memory>
#include <vector>

#include "backends/backend.hpp"
#include "format/engine_model.hpp"
#include "kiln/runtime.hpp"

namespace kiln::cuda {

// Picks the GPU (device.index if given, else the current device if its architecture matches,
// else the first GPU of the engine's architecture), checks it, uploads the weights, loads the
// engine's generated kernel modules and finds a kernel for every layer. Throws kDeviceError (no
// GPU), kIncompatible (architecture mismatch, naming both; a module the driver cannot run here),
// kCorruptFile (a module the driver refuses), kUnsupported (layers neither a CUDA kernel nor the
// host can run, all listed: layer_placement.hpp).
std::shared_ptr<const backends::BoundEngine> bind_engine_to_device(const backends::EnginePlan& engine,
                                                                    const DeviceSpec& device);

// A context of `engine` on the GPU `bound` (what bind_engine_to_device returned for it): its own
// stream, library handles, arena and captured graphs. Engines with a layer of data-dependent output
// sizes (EnginePlan::segment_ends) run eagerly, never captured: each segment is planned once the
// layer ending the previous one reported its real output shapes (its launch synchronises the
// stream for that), and bound outputs are then written row-major from their buffers' start.
// Engines whose shapes depend on input values run the same way, after the inputs whose values
// shape propagation reads are copied to the host (the call synchronises the stream for that).
// Calls on device buffers run on the caller's
// stream and check the current device (multi-device safe mode switches to the engine's instead);
// calls on host tensors stage through the context's memory on its own stream and synchronise.
std::unique_ptr<backends::BackendContext> create_device_context(const backends::EnginePlan& engine,
                                                                std::shared_ptr<const backends::BoundEngine> bound);

}  // namespace kiln::cuda
