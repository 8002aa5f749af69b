// Plugin layers on the CUDA backend: the plugin's execute_cuda on the launch's stream, with device
// pointers and a device workspace of the size the plugin asked for (allocated at prepare, owned by
// the layer's state, so a captured graph keeps a valid address).
//
// Fixed-shape plugin layers (op Plugin) may be launched under CUDA stream capture: their
// execute_cuda must only enqueue work (include/kiln/plugin.h). Data-dependent ones
// (PluginDataDependent) never are: their execute_cuda synchronises to learn the output sizes, and
// the executor reads them from the shapes it wrote (LaunchContext::written_shapes).
#include "backends/cuda/plugin_kernels.hpp"

#include <memory>
#include <vector>

#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/device_buffer.hpp"
#include "plugins/plugin_layer.hpp"

namespace kiln::cuda {
namespace {

struct PluginState final : LayerState {
  std::shared_ptr<const plugins::PluginInstance> instance;
  DeviceBuffer workspace;  // empty when the plugin needs none
};

// The layer's instance; its errors (unregistered plugin, failed create) name the layer.
std::shared_ptr<const plugins::PluginInstance> instance_for(const LaunchContext& ctx) {
  try {
    return plugins::instance_of_layer(ctx.attrs, ctx.node_name);
  } catch (const Error& e) {
    ctx.fail(e.code(), e.what());
  }
}

// The plugin's view of a tensor. `shape` is the plugin's own copy (it may rewrite an output's).
kiln_plugin_tensor plugin_tensor(const TensorView& view, bool present, Shape& shape) {
  shape = view.shape;
  return kiln_plugin_tensor{static_cast<kiln_dtype>(view.dtype),
                            present ? static_cast<int32_t>(shape.size()) : -1, shape.data(),
                            present ? view.data : nullptr};
}

std::unique_ptr<LayerState> prepare_plugin(LaunchContext& ctx, size_t* workspace_bytes) {
  auto state = std::make_unique<PluginState>();
  state->instance = instance_for(ctx);
  if (!state->instance->runs_on_cuda()) {
    ctx.fail(ErrorCode::kUnsupported, plugin_cuda_refusal(ctx.attrs, ctx.node_name));
  }
  std::vector<Shape> shapes(ctx.inputs.size() + ctx.outputs.size());
  std::vector<kiln_plugin_tensor_desc> inputs(ctx.inputs.size());
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    const kiln_plugin_tensor t = plugin_tensor(ctx.inputs[i], ctx.has_input(i), shapes[i]);
    inputs[i] = {t.dtype, t.ndim, t.shape};
  }
  std::vector<kiln_plugin_tensor_desc> outputs(ctx.outputs.size());
  for (size_t o = 0; o < ctx.outputs.size(); ++o) {
    // Data-dependent outputs are at their upper bounds here, as the ABI's workspace call expects.
    const kiln_plugin_tensor t = plugin_tensor(ctx.outputs[o], true, shapes[ctx.inputs.size() + o]);
    outputs[o] = {t.dtype, t.ndim, t.shape};
  }
  int64_t bytes = 0;
  try {
    bytes = state->instance->workspace_size(KILN_PLUGIN_BACKEND_CUDA, inputs, outputs);
  } catch (const Error& e) {
    ctx.fail(e.code(), e.what());
  }
  // cudaMalloc's 256-byte alignment covers the ABI's 64.
  if (bytes > 0) state->workspace = DeviceBuffer(static_cast<size_t>(bytes));
  *workspace_bytes = 0;  // the plugin's workspace is its own, not the context's shared one
  return state;
}

void launch_plugin(LaunchContext& ctx) {
  const auto* state = dynamic_cast<const PluginState*>(ctx.state);
  if (!state) ctx.fail(ErrorCode::kInternal, "launched without being prepared");
  const bool data_dependent = ctx.op == plugins::kDataDependentPluginOp;
  if (data_dependent && ctx.written_shapes.size() != ctx.outputs.size()) {
    ctx.fail(ErrorCode::kInternal, "a data-dependent layer launched without room for its output shapes");
  }
  std::vector<Shape> input_shapes(ctx.inputs.size());
  std::vector<kiln_plugin_tensor> inputs(ctx.inputs.size());
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    inputs[i] = plugin_tensor(ctx.inputs[i], ctx.has_input(i), input_shapes[i]);
  }
  std::vector<Shape> output_shapes(ctx.outputs.size());
  std::vector<kiln_plugin_tensor> outputs(ctx.outputs.size());
  for (size_t o = 0; o < ctx.outputs.size(); ++o) {
    outputs[o] = plugin_tensor(ctx.outputs[o], true, output_shapes[o]);
  }
  try {
    state->instance->execute_cuda(inputs, outputs, state->workspace.get(), ctx.stream);
    if (!data_dependent) return;
    // execute_cuda synchronised and wrote the sizes it produced into shape[] (the ABI's contract
    // for data-dependent outputs); the executor plans what follows from them.
    for (size_t o = 0; o < ctx.outputs.size(); ++o) {
      ctx.written_shapes[o] = state->instance->checked_written_shape(o, output_shapes[o], ctx.outputs[o].shape);
    }
  } catch (const Error& e) {
    ctx.fail(e.code(), e.what());
  }
}

// Refuses, before anything runs (builds for the cuda target, engine loads), a plugin without a
// CUDA implementation.
void check_plugin_runs_on_cuda(std::string_view node_name, std::string_view op, const AttributeMap& attrs) {
  if (const std::string refusal = plugin_cuda_refusal(attrs, node_name); !refusal.empty()) {
    fail(ErrorCode::kUnsupported, "node '", node_name, "' (", op, ") on cuda: ", refusal);
  }
}

}  // namespace

std::string plugin_cuda_refusal(const AttributeMap& attrs, std::string_view layer) noexcept {
  try {
    const auto instance = plugins::instance_of_layer(attrs, layer);
    if (instance->runs_on_cuda()) return "";
    return "plugin " + instance->creator().label() + " (" + instance->creator().library_file_name() +
           ") has no CUDA implementation (its execute_cuda is NULL), so the cuda backend cannot run it; "
           "build this model for the cpu backend, or use a build of the plugin with CUDA kernels";
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "its plugin could not be instantiated";
  }
}

namespace {
// The kernel registration's condition: kiln.supports, the builder and load checks ask it.
std::string plugin_layer_runs_on_cuda(const format::EngineModel&, const format::Layer& layer) {
  return plugin_cuda_refusal(layer.attrs, layer.name);
}
}  // namespace

void register_plugin_kernels(CudaKernelRegistry& registry) {
  const CudaKernel kernel{&prepare_plugin, &launch_plugin, &check_plugin_runs_on_cuda};
  registry.add(plugins::kPluginOp, kernel, {.check = plugin_layer_runs_on_cuda});
  registry.add(plugins::kDataDependentPluginOp, kernel, {.check = plugin_layer_runs_on_cuda});
}

}  // namespace kiln::cuda
