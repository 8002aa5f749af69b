// NVRTC, loaded with dlopen on first use. kiln never links libnvrtc and never includes nvrtc.h:
// machines that only run engines, and CI, need neither. The few entry points kiln calls are
// declared here with the C signatures of NVRTC's public API (CUDA 12 and 13).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace kiln::codegen {

// The NVRTC entry points compile_cuda uses, resolved from one loaded library.
struct NvrtcLibrary {
  using Result = int;  // nvrtcResult; 0 is NVRTC_SUCCESS
  using Program = struct NvrtcProgramOpaque*;
  static constexpr Result kSuccess = 0;
  static constexpr Result kErrorInvalidOption = 5;  // NVRTC_ERROR_INVALID_OPTION
  static constexpr Result kErrorCompilation = 6;    // NVRTC_ERROR_COMPILATION

  std::string path;  // what dlopen was given
  int major = 0;     // nvrtcVersion()
  int minor = 0;

  const char* (*get_error_string)(Result) = nullptr;
  Result (*create_program)(Program*, const char* source, const char* name, int header_count,
                           const char* const* headers, const char* const* include_names) = nullptr;
  Result (*destroy_program)(Program*) = nullptr;
  Result (*compile_program)(Program, int option_count, const char* const* options) = nullptr;
  Result (*get_program_log_size)(Program, size_t*) = nullptr;
  Result (*get_program_log)(Program, char*) = nullptr;
  Result (*get_cubin_size)(Program, size_t*) = nullptr;
  Result (*get_cubin)(Program, char*) = nullptr;
};

// The libraries to try, in order: only $KILN_NVRTC_LIBRARY when it is set (a full path: the user
// chose it); else "libnvrtc.so.13" (the dynamic loader's own search: LD_LIBRARY_PATH, the system's
// directories), then $CUDA_HOME/lib64, /usr/local/cuda/lib64, then the directory CMake found at
// configure time (e.g. the Python environment's nvidia/cu13/lib from the nvidia-cuda-nvrtc wheel).
std::vector<std::string> nvrtc_search_paths();

// dlopens the first of `candidates` that loads and has every entry point.
// Throws kUnsupported naming every candidate tried and why each failed (dlerror), and how to
// provide NVRTC.
std::shared_ptr<const NvrtcLibrary> load_nvrtc(const std::vector<std::string>& candidates);

// The process's NVRTC: load_nvrtc(nvrtc_search_paths()) on the first call (std::call_once, so any
// thread may call it). A failure is remembered and thrown again by every later call (the
// environment it depends on does not change while a process runs).
const NvrtcLibrary& nvrtc_library();

}  // namespace kiln::codegen
