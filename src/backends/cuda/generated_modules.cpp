#include "backends/cuda/generated_modules.hpp"

#include <algorithm>

#include <cuda.h>

#include "base/error.hpp"
#include "format/cubin_image.hpp"

namespace kiln::cuda {
namespace {

// What a refused cubin means for the caller: a broken image, or one this GPU or driver cannot run.
ErrorCode load_error_code(cudaError_t status) {
  switch (status) {
    case cudaErrorInvalidKernelImage:
    case cudaErrorInvalidSource:
    case cudaErrorInvalidPtx:
    case cudaErrorSharedObjectInitFailed:
    case cudaErrorSharedObjectSymbolNotFound:
    case cudaErrorInvalidValue:  // what the driver returns for bytes that are no image at all
      return ErrorCode::kCorruptFile;
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInsufficientDriver:
    case cudaErrorJitCompilerNotFound:
      return ErrorCode::kIncompatible;
    case cudaErrorMemoryAllocation:
      return ErrorCode::kOutOfMemory;
    default:
      return ErrorCode::kDeviceError;
  }
}

[[noreturn]] void fail_module(const format::KernelModule& module, const char* call,
                              cudaError_t status) {
  cudaGetLastError();  // clear a non-sticky error so the context stays usable
  int device = -1;
  cudaGetDevice(&device);
  fail(load_error_code(status), "generated kernel module '", module.name, "' (sm_", module.sm_arch,
       ", ", module.cubin.size(), " bytes, ",
       module.compiler.empty() ? "unknown compiler" : module.compiler, "): ", call, " on cuda:",
       device, " failed with ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ")");
}

// cuKernelGetFunction through the runtime's driver entry points (the runtime links no libcuda):
// it loads a context-independent kernel into the current context, so a cubin the GPU cannot run is
// refused at engine load rather than at its first launch.
using KernelGetFunction = CUresult (*)(CUfunction*, CUkernel);
KernelGetFunction kernel_get_function() {
  static const KernelGetFunction function = [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuKernelGetFunction", &entry, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return KernelGetFunction{nullptr};
    }
    return reinterpret_cast<KernelGetFunction>(entry);
  }();
  return function;
}

ErrorCode driver_error_code(CUresult status) {
  switch (status) {
    case CUDA_ERROR_NO_BINARY_FOR_GPU:
    case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
    case CUDA_ERROR_INVALID_PTX:
      return ErrorCode::kIncompatible;
    case CUDA_ERROR_INVALID_IMAGE:
    case CUDA_ERROR_INVALID_SOURCE:
    case CUDA_ERROR_SHARED_OBJECT_INIT_FAILED:
    case CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND:
      return ErrorCode::kCorruptFile;
    case CUDA_ERROR_OUT_OF_MEMORY:
      return ErrorCode::kOutOfMemory;
    default:
      return ErrorCode::kDeviceError;
  }
}

// The current GPU's compute capability x 10, or 0 when it cannot be read.
int current_device_arch() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major * 10 + minor;
}

std::string joined_names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "'" : ", '") + name + "'";
  return out.empty() ? std::string("none") : out;
}

}  // namespace

GeneratedModules::GeneratedModules(std::span<const format::KernelModule> modules) {
  modules_.reserve(modules.size());
  // cuKernelGetFunction (below) needs a current context, which the runtime only creates on its
  // first call that needs one: without this, a process whose first CUDA work is loading this
  // engine got CUDA_ERROR_INVALID_CONTEXT (seen on H100 from `kiln bench`).
  const int device_arch = modules.empty() ? 0 : current_device_arch();
  if (!modules.empty()) {
    const cudaError_t status = cudaFree(nullptr);
    if (status != cudaSuccess) {
      cudaGetLastError();
      fail(ErrorCode::kDeviceError, "cannot initialise the CUDA context to load generated kernels: ",
           cudaGetErrorName(status), " (", cudaGetErrorString(status), ")");
    }
  }
  try {
    for (const format::KernelModule& source : modules) {
      Module& module = modules_.emplace_back();
      module.name = source.name;
      // The driver trusts the image's tables; the format reader checks them too, but modules may
      // also come from elsewhere (tests, tools).
      if (const std::string problem = format::cubin_image_problem(source.cubin); !problem.empty()) {
        fail(ErrorCode::kCorruptFile, "generated kernel module '", source.name, "' is not a valid cubin: ", problem);
      }
      // A cubin for another architecture loads without error but exposes no kernels on this GPU
      // (seen on H100 with an sm_80 cubin): say so before the driver does not.
      if (device_arch > 0 && source.sm_arch != device_arch) {
        fail(ErrorCode::kIncompatible, "generated kernel module '", source.name, "' was compiled for sm_",
             source.sm_arch, " but the current GPU is sm_", device_arch, "; rebuild the engine for this GPU");
      }
      cudaError_t status = cudaLibraryLoadData(&module.library, source.cubin.data(), nullptr,
                                               nullptr, 0, nullptr, nullptr, 0);
      if (status != cudaSuccess) {
        module.library = nullptr;
        fail_module(source, "cudaLibraryLoadData", status);
      }
      unsigned int count = 0;
      status = cudaLibraryGetKernelCount(&count, module.library);
      if (status != cudaSuccess) fail_module(source, "cudaLibraryGetKernelCount", status);
      if (count == 0) {
        fail(ErrorCode::kCorruptFile, "generated kernel module '", source.name, "' (", source.cubin.size(),
             " bytes) holds no kernel");
      }
      std::vector<cudaKernel_t> kernels(count);
      status = cudaLibraryEnumerateKernels(kernels.data(), count, module.library);
      if (status != cudaSuccess) fail_module(source, "cudaLibraryEnumerateKernels", status);
      for (cudaKernel_t kernel : kernels) {
        const char* name = nullptr;
        status = cudaFuncGetName(&name, reinterpret_cast<const void*>(kernel));
        if (status != cudaSuccess) fail_module(source, "cudaFuncGetName", status);
        // Loads the kernel into the current GPU's context now: the driver refuses a cubin it cannot
        // run here, not at the first launch (which may be inside a capture). Without the driver
        // entry point, asking the runtime for the kernel's attributes loads it too.
        if (const KernelGetFunction get_function = kernel_get_function()) {
          CUfunction function = nullptr;
          const CUresult loaded = get_function(&function, reinterpret_cast<CUkernel>(kernel));
          if (loaded != CUDA_SUCCESS) {
            int device = -1;
            cudaGetDevice(&device);
            fail(driver_error_code(loaded), "generated kernel module '", source.name, "' (sm_", source.sm_arch,
                 "): the driver cannot load kernel '", name ? name : "?", "' on cuda:", device,
                 " (CUresult ", static_cast<int>(loaded), ")");
          }
        } else {
          cudaFuncAttributes attributes{};
          status = cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(kernel));
          if (status != cudaSuccess) fail_module(source, "cudaFuncGetAttributes", status);
        }
        module.kernels.emplace_back(name != nullptr ? name : "", kernel);
      }
    }
  } catch (...) {
    unload_all();
    throw;
  }
}

GeneratedModules::~GeneratedModules() { unload_all(); }

void GeneratedModules::unload_all() noexcept {
  for (Module& module : modules_) {
    if (module.library != nullptr) cudaLibraryUnload(module.library);
    module.library = nullptr;
  }
  modules_.clear();
  cudaGetLastError();  // e.g. cudaErrorCudartUnloading at process exit: nothing to report
}

cudaKernel_t GeneratedModules::kernel(std::string_view module, std::string_view function) const {
  const auto found = std::find_if(modules_.begin(), modules_.end(),
                                  [&](const Module& m) { return m.name == module; });
  if (found == modules_.end()) {
    std::vector<std::string> names;
    for (const Module& m : modules_) names.push_back(m.name);
    fail(ErrorCode::kNotFound, "generated kernel module '", module, "' (for function '", function,
         "') is not in the engine; its modules: ", joined_names(names));
  }
  for (const auto& [name, kernel] : found->kernels) {
    if (name == function) return kernel;
  }
  std::vector<std::string> names;
  for (const auto& entry : found->kernels) names.push_back(entry.first);
  fail(ErrorCode::kNotFound, "generated kernel module '", module, "' has no function '", function,
       "'; its functions: ", joined_names(names));
}

}  // namespace kiln::cuda
