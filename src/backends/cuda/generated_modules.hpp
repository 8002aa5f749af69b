// The CUDA modules an engine carries (format::KernelModule: cubins the builder generated and
// compiled with NVRTC), loaded once per engine. The runtime needs no NVRTC: it loads the cubins
// with the CUDA runtime's library API.
#pragma once

#include <cuda_runtime_api.h>

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "format/engine_model.hpp"

namespace kiln::cuda {

// The engine's generated modules, loaded with cudaLibraryLoadData (context-independent loading:
// the driver loads the module into each device context on first use, so one object serves any
// GPU; kernels of a library may be launched with cudaLaunchKernel((const void*)kernel, ...)).
// Construct with the engine's GPU current: the constructor also loads every kernel into that
// GPU's context (cudaFuncGetAttributes), so a cubin the driver refuses fails here, at engine
// load, and never during a CUDA graph capture.
class GeneratedModules {
 public:
  // Throws kiln::Error naming the module: kCorruptFile when the driver finds the image invalid,
  // kIncompatible when it has no code for this GPU (or needs a newer driver), kDeviceError for
  // other driver failures. Modules loaded before the failing one are unloaded again.
  explicit GeneratedModules(std::span<const format::KernelModule> modules);
  ~GeneratedModules();  // cudaLibraryUnload each; best effort, never throws
  GeneratedModules(const GeneratedModules&) = delete;
  GeneratedModules& operator=(const GeneratedModules&) = delete;

  // The kernel `function` (its name in the cubin; C++ names mangled unless extern "C") of module
  // `module`. Throws kNotFound naming both, and the modules or the module's functions there are.
  // Thread-safe: a lookup in what the constructor recorded, no CUDA call.
  cudaKernel_t kernel(std::string_view module, std::string_view function) const;
  size_t size() const { return modules_.size(); }

 private:
  struct Module {
    std::string name;
    cudaLibrary_t library = nullptr;
    std::vector<std::pair<std::string, cudaKernel_t>> kernels;  // every kernel, by name
  };
  void unload_all() noexcept;

  std::vector<Module> modules_;
};

}  // namespace kiln::cuda
