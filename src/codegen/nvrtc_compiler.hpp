// Compiling generated CUDA C++ to a cubin with NVRTC, at engine build time, for the engine's GPU
// architecture. The cubin travels in the engine (format::KernelModule); the runtime loads it with
// the CUDA runtime's library API and never needs NVRTC.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::codegen {

struct CompiledModule {
  std::vector<uint8_t> cubin;  // for exactly sm_<sm_arch>
  std::string compiler;        // e.g. "nvrtc 13.0"
  std::string log;             // compiler warnings, may be empty
};

// The options compile_cuda passes to NVRTC for `sm_arch`, `extra_options` last:
// --gpu-architecture=sm_XX (a cubin, not PTX), -std=c++17, and IEEE math spelled out
// (--ftz=false --prec-div=true --prec-sqrt=true: denormals kept, exact division and square root;
// multiply-adds may still contract into FMAs, NVRTC's default). An extra option "--name=value"
// replaces the default of that name (e.g. --prec-div=false).
std::vector<std::string> nvrtc_options(int sm_arch, const std::vector<std::string>& extra_options);

// Compiles `source` (CUDA C++, no #includes needed) for sm_<sm_arch> with NVRTC, using
// nvrtc_options(sm_arch, extra_options). NVRTC is loaded with dlopen on first use
// (nvrtc_library.hpp says where it looks; KILN_NVRTC_LIBRARY, a full path, wins when set).
// Safe to call from several threads at once (each call has its own NVRTC program).
// Throws kiln::Error:
//   kUnsupported     NVRTC cannot be loaded (the message names every place tried);
//   kInvalidArgument sm_arch outside [10, 9999], or NVRTC rejected an option (naming the options);
//   kInternal        the source does not compile: the message names `name` and the architecture,
//                    holds NVRTC's log and the numbered source lines around the first error.
CompiledModule compile_cuda(std::string_view name, const std::string& source, int sm_arch,
                            const std::vector<std::string>& extra_options = {});

// "nvrtc 13.0" (major.minor of the loaded library); throws like compile_cuda when NVRTC is missing.
std::string nvrtc_version();

}  // namespace kiln::codegen
