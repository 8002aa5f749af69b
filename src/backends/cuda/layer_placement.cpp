#include "backends/cuda/layer_placement.hpp"

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/kernel_support.hpp"
#include "base/error.hpp"

namespace kiln::cuda {
namespace {

// "" when the CUDA kernel `kernel` takes `layer`, else why not.
std::string device_refusal(const format::EngineModel& model, const format::Layer& layer, const CudaKernel* kernel) {
  const backends::KernelSupport* support = cuda_kernels().find_support(layer.op);
  if (!kernel || !support) return "the cuda backend has no kernel for op '" + layer.op + "'";
  if (std::string reason = backends::check_kernel_support(*support, model, layer, "cuda"); !reason.empty()) {
    return reason;
  }
  if (!kernel->check_attributes) return "";
  try {
    kernel->check_attributes(layer.name, layer.op, layer.attrs);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kUnsupported) throw;  // a malformed attribute is the engine's fault
    return e.what();
  }
  return "";
}

}  // namespace

LayerPlacement place_layers(const backends::EnginePlan& engine) {
  const auto& model = engine.model;
  LayerPlacement placement;
  placement.device.assign(model.layers.size(), nullptr);
  placement.host.assign(model.layers.size(), nullptr);
  std::string refused;
  size_t refused_count = 0;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const backends::PreparedLayer& prepared = engine.layers[l];
    if (prepared.computes_shape_values || prepared.is_view) continue;
    const format::Layer& layer = model.layers[l];
    const CudaKernel* kernel = cuda_kernels().find(layer.op);
    const std::string device_reason = device_refusal(model, layer, kernel);
    if (device_reason.empty()) {
      placement.device[l] = kernel;
      continue;
    }
    const backends::KernelSupport* host_support = cpu::cpu_kernels().find_support(layer.op);
    const std::string host_reason = !prepared.kernel || !host_support
                                        ? "the cpu backend has no kernel for op '" + layer.op + "' either"
                                        : backends::check_kernel_support(*host_support, model, layer, "cpu");
    const std::string where = "layer '" + layer.name + "' (op '" + layer.op + "')";
    if (host_reason.empty()) {
      placement.host[l] = prepared.kernel;
      placement.host_reasons.push_back(where + ": " + device_reason);
      continue;
    }
    refused += "\n  " + where + ": " + device_reason + "; on the host: " + host_reason;
    ++refused_count;
  }
  if (refused_count > 0) {
    fail(ErrorCode::kUnsupported, engine.source, ": this runtime (kiln ", KILN_VERSION, ") can run ", refused_count,
         " layer(s) neither on the cuda backend nor on the host:", refused);
  }
  return placement;
}

}  // namespace kiln::cuda
