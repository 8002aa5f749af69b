#include "builder/builder_config.hpp"

#include "backends/backend_registry.hpp"
#include "base/error.hpp"
#include "codegen/kernel_cache.hpp"

namespace kiln::builder {
namespace {

format::Target resolve_cpu_target(const BuilderConfig& config) {
  if (config.precision != Precision::kFp32) {
    fail(ErrorCode::kUnsupported, "precision ", precision_name(config.precision),
         " is not available for target 'cpu': the CPU backend computes in float32; ",
         precision_name(config.precision), " needs target cuda");
  }
  format::Target target;
  target.backend = "cpu";
  return target;
}

format::Target resolve_cuda_target(const BuilderConfig& config) {
  if (config.cuda_arch != 0) {
    // Cross-compiling: NVRTC writes the kernels for this architecture; no GPU is asked.
    if (config.cuda_arch < 50 || config.cuda_arch > 1000) {
      fail(ErrorCode::kInvalidArgument, "cuda_arch must be a compute capability x 10 such as 90, got ",
           config.cuda_arch);
    }
    format::Target target;
    target.backend = "cuda";
    target.sm_arch = config.cuda_arch;
    return target;
  }
  // The GPUs are asked through the cuda backend (which loads its library: only here, not for
  // cross-compiling above, which needs no GPU).
  const backends::Backend* cuda = backends::find_backend("cuda");
  if (!cuda) {
    fail(ErrorCode::kUnsupported, "target 'cuda' is not available: this kiln ", backends::why_absent("cuda"));
  }
  const int count = cuda->device_count();
  if (count == 0) {
    fail(ErrorCode::kDeviceError, "target 'cuda' needs a GPU to build on (kernels are chosen by timing them on ",
         "the target), and this machine has none");
  }
  if (config.device >= count) {
    fail(ErrorCode::kInvalidArgument, "device ", config.device, " does not exist: this machine has ", count,
         " CUDA device(s)");
  }
  const backends::DeviceInfo device = cuda->device_info(config.device);
  format::Target target;
  target.backend = "cuda";
  target.sm_arch = device.arch;
  target.device_name = device.name;
  return target;
}

DType precision_dtype(Precision precision) {
  switch (precision) {
    case Precision::kFp32:
    case Precision::kTf32:
      return DType::kFloat32;
    case Precision::kFp16:
      return DType::kFloat16;
    case Precision::kBf16:
      return DType::kBFloat16;
  }
  fail(ErrorCode::kInvalidArgument, "unknown precision value ", static_cast<int>(precision));
}

}  // namespace

std::string_view precision_name(Precision precision) {
  switch (precision) {
    case Precision::kFp32:
      return "fp32";
    case Precision::kTf32:
      return "tf32";
    case Precision::kFp16:
      return "fp16";
    case Precision::kBf16:
      return "bf16";
  }
  return "unknown";
}

ResolvedConfig resolve_config(const BuilderConfig& config) {
  ResolvedConfig resolved;
  resolved.precision = precision_dtype(config.precision);
  if (config.device < 0)
    fail(ErrorCode::kInvalidArgument, "device must be >= 0, got ", config.device);
  // Kernels get a fixed scratch allowance at run time that an engine does not record, so any other
  // limit would be accepted and then ignored: refused until engines carry one.
  if (config.workspace_limit != BuilderConfig{}.workspace_limit) {
    fail(ErrorCode::kUnsupported, "workspace_limit ", config.workspace_limit,
         " is not supported: kernels get a fixed scratch allowance of ", BuilderConfig{}.workspace_limit,
         " bytes (1 GiB) that engines cannot change yet; leave workspace_limit unset");
  }
  if (config.target == "cpu") {
    resolved.target = resolve_cpu_target(config);
  } else if (config.target == "cuda") {
    resolved.target = resolve_cuda_target(config);
  } else {
    fail(ErrorCode::kInvalidArgument, "unknown target '", config.target,
         "' (expected 'cpu' or 'cuda')");
  }
  json::ParseOptions options;
  options.source = "metadata_json";
  resolved.metadata = json::parse(config.metadata_json, options);
  if (!resolved.metadata.is_object()) {
    fail(ErrorCode::kInvalidArgument, "metadata_json must be a JSON object, got ",
         json::type_name(resolved.metadata.type()));
  }
  if (config.kernel_cache.empty()) {
    resolved.kernel_cache_dir = codegen::default_kernel_cache_dir();
  } else if (config.kernel_cache != "off") {
    resolved.kernel_cache_dir = config.kernel_cache;
  }
  return resolved;
}

}  // namespace kiln::builder
