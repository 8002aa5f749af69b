// Where each layer of a CUDA engine runs: on the GPU with its CUDA kernel, or, where this runtime
// has no CUDA kernel that takes it (its op, a dtype such as uint32 or float8, an attribute choice),
// on the host with the CPU backend's kernel, its inputs copied from the device and its outputs back
// (a host layer). Only a layer neither backend can run refuses the engine. Host layers make every
// call synchronise at each of them and keep the engine out of CUDA graphs, so the builder reports
// them and can refuse them (BuildConfig::allow_host_layers).
#pragma once

#include <string>
#include <vector>

#include "backends/engine_plan.hpp"

namespace kiln::cpu {
struct CpuKernel;
}

namespace kiln::cuda {

struct CudaKernel;  // cuda_kernel.hpp

struct LayerPlacement {
  // Per layer: its CUDA kernel, or null (shape-value layers, views and host layers).
  std::vector<const CudaKernel*> device;
  // Per layer: the CPU kernel of a host layer, else null.
  std::vector<const cpu::CpuKernel*> host;
  // Per host layer, in layer order: "layer 'n' (op 'X'): why the GPU does not run it".
  std::vector<std::string> host_reasons;

  bool has_host_layers() const { return !host_reasons.empty(); }
};

// Places every layer the executor runs. Throws kUnsupported naming every layer that neither a CUDA
// kernel nor the CPU backend can run (with both reasons). Needs no GPU: loads and cuda-target
// builds both run it.
LayerPlacement place_layers(const backends::EnginePlan& engine);

}  // namespace kiln::cuda
