// Plugin layers on the CPU: the plugin's execute_cpu on the executor's host buffers.
#include <cstdlib>
#include <memory>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "plugins/plugin_layer.hpp"

namespace kiln::cpu {
namespace {

constexpr size_t kWorkspaceAlignment = 64;

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

void run_plugin(KernelContext& ctx);

// The plugin's errors name the plugin; this adds the layer.
void run_plugin_naming_layer(KernelContext& ctx) {
  try {
    run_plugin(ctx);
  } catch (const Error& e) {
    ctx.fail(e.code(), e.what());
  }
}

void run_plugin(KernelContext& ctx) {
  const auto instance = plugins::instance_of_layer(ctx.attrs, ctx.node_name);
  // The plugin may rewrite output shapes (data-dependent dims), so every tensor gets its own copy.
  std::vector<Shape> input_shapes(ctx.inputs.size());
  std::vector<Shape> output_shapes(ctx.outputs.size());
  std::vector<kiln_plugin_tensor> inputs(ctx.inputs.size());
  std::vector<kiln_plugin_tensor_desc> input_descs(ctx.inputs.size());
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    const TensorView& in = ctx.inputs[i];
    const bool present = ctx.has_input(i) || in.present();
    input_shapes[i] = in.shape;
    inputs[i] = {static_cast<kiln_dtype>(in.dtype),
                 present ? static_cast<int32_t>(in.shape.size()) : -1, input_shapes[i].data(),
                 in.data};
    input_descs[i] = {inputs[i].dtype, inputs[i].ndim, input_shapes[i].data()};
  }
  std::vector<kiln_plugin_tensor> outputs(ctx.outputs.size());
  std::vector<kiln_plugin_tensor_desc> output_descs(ctx.outputs.size());
  for (size_t o = 0; o < ctx.outputs.size(); ++o) {
    const TensorView& out = ctx.outputs[o];
    output_shapes[o] = out.shape;
    outputs[o] = {static_cast<kiln_dtype>(out.dtype), static_cast<int32_t>(out.shape.size()),
                  output_shapes[o].data(), out.data};
    output_descs[o] = {outputs[o].dtype, outputs[o].ndim, out.shape.data()};
  }
  const int64_t workspace_bytes = instance->workspace_size(KILN_PLUGIN_BACKEND_CPU, input_descs, output_descs);
  std::unique_ptr<void, AlignedFree> workspace;
  if (workspace_bytes > 0) {
    const auto rounded = (static_cast<size_t>(workspace_bytes) + kWorkspaceAlignment - 1) /
                         kWorkspaceAlignment * kWorkspaceAlignment;
    workspace.reset(std::aligned_alloc(kWorkspaceAlignment, rounded));
    if (!workspace)
      fail(ErrorCode::kOutOfMemory, "cannot allocate the plugin's ", workspace_bytes,
           " bytes of workspace");
  }
  instance->execute_cpu(inputs, outputs, workspace.get());
  if (ctx.op != plugins::kDataDependentPluginOp) return;
  // Outputs were allocated at their upper bounds; each now takes the shape the plugin wrote.
  for (size_t o = 0; o < ctx.outputs.size(); ++o) {
    const Shape& written = output_shapes[o];
    const Shape& bound = ctx.outputs[o].shape;
    for (size_t d = 0; d < written.size(); ++d) {
      if (written[d] < 0) {
        fail(ErrorCode::kInvalidArgument, "plugin ", instance->creator().label(), " wrote output ",
             o, " dimension ", d, " = ", written[d]);
      }
    }
    if (shape_numel(written) > shape_numel(bound)) {
      fail(ErrorCode::kInvalidArgument, "plugin ", instance->creator().label(), " wrote output ", o,
           " with shape ", shape_to_string(written), ", more elements than its upper bound ",
           shape_to_string(bound));
    }
    ctx.outputs[o].shape = written;
  }
}

// Whether the cpu runs this plugin layer, answered by the plugin registry: its creator is
// registered, has a CPU implementation and takes the input dtypes (its `supports` call).
std::string plugin_runs_on_cpu(const format::EngineModel& model, const format::Layer& layer) {
  try {
    const auto instance = plugins::instance_of_layer(layer.attrs, layer.name);
    if (!instance->creator().creator->execute_cpu) {
      return "plugin " + instance->creator().label() + " has no CPU implementation (execute_cpu)";
    }
    std::vector<DType> dtypes;
    for (const int32_t id : layer.inputs) {
      const bool known = id >= 0 && static_cast<size_t>(id) < model.tensors.size();
      dtypes.push_back(known ? model.tensors[static_cast<size_t>(id)].dtype : DType::kFloat32);
    }
    instance->check_dtypes(dtypes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

void register_plugin_kernels(CpuKernelRegistry& registry) {
  // float_compute off: the plugin sees the dtypes it declared it supports.
  registry.add(plugins::kPluginOp, CpuKernel{&run_plugin_naming_layer, false}, {.check = plugin_runs_on_cpu});
  registry.add(plugins::kDataDependentPluginOp, CpuKernel{&run_plugin_naming_layer, false},
               {.check = plugin_runs_on_cpu});
}

}  // namespace kiln::cpu
