// Plugin layers' op semantics: shapes and dtypes come from the plugin
// (src/plugins/plugin_layer.hpp).
#include "ops/op_families.hpp"
#include "ops/op_registry.hpp"
#include "plugins/plugin_layer.hpp"

namespace kiln::ops {
namespace {

// Plugins take and give any number of tensors; these bounds only keep counts sane.
constexpr int kMaxPluginTensors = 64;

void infer_plugin(InferContext& ctx);

// The plugin's errors name the plugin; this adds the node.
void infer_plugin_naming_node(InferContext& ctx) {
  try {
    infer_plugin(ctx);
  } catch (const Error& e) {
    throw Error(e.code(),
                detail::concat("node '", ctx.node_name(), "' (", ctx.op(), "): ", e.what()));
  }
}

void infer_plugin(InferContext& ctx) {
  const auto instance = plugins::instance_of_layer(ctx.attrs(), ctx.node_name());
  std::vector<DType> dtypes(ctx.num_inputs(), DType::kFloat32);
  std::vector<kiln_plugin_tensor_desc> descs(ctx.num_inputs());
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const ValueInfo& in = ctx.input(i);
    descs[i].dtype = static_cast<kiln_dtype>(in.dtype);
    descs[i].ndim = in.present ? static_cast<int32_t>(in.shape.size()) : -1;
    descs[i].shape = in.present ? in.shape.data() : nullptr;
    if (in.present) dtypes[i] = in.dtype;
  }
  instance->check_dtypes(dtypes);
  const std::vector<kiln_plugin_output_desc> outputs = instance->infer(descs, ctx.num_outputs());
  for (size_t o = 0; o < outputs.size(); ++o) {
    ValueInfo& out = ctx.output(o);
    out.dtype = static_cast<DType>(outputs[o].dtype);
    out.shape.clear();
    for (int32_t d = 0; d < outputs[o].ndim; ++d) {
      const kiln_plugin_dim& dim = outputs[o].dims[d];
      switch (dim.kind) {
        case KILN_PLUGIN_DIM_VALUE:
          out.shape.push_back(dim.value < 0 ? kDynamicDim : dim.value);
          break;
        case KILN_PLUGIN_DIM_COPY:
          out.shape.push_back(
              ctx.input(static_cast<size_t>(dim.input)).shape[static_cast<size_t>(dim.input_dim)]);
          break;
        case KILN_PLUGIN_DIM_DATA_DEPENDENT:
          if (ctx.op() != plugins::kDataDependentPluginOp) {
            kiln::fail(
                ErrorCode::kInvalidArgument, "plugin ", instance->creator().label(),
                " gave output ", o,
                " a data-dependent dimension, but the layer was built as one with fixed shapes");
          }
          out.shape.push_back(ctx.data_dependent_dim(dim.value));
          break;
      }
    }
  }
}

}  // namespace

void register_plugin_ops(OpRegistry& registry) {
  registry.add(OpDef{std::string(plugins::kPluginOp),
                     0,
                     kMaxPluginTensors,
                     1,
                     kMaxPluginTensors,
                     {},
                     &infer_plugin_naming_node});
  OpDef data_dependent{std::string(plugins::kDataDependentPluginOp),
                       0,
                       kMaxPluginTensors,
                       1,
                       kMaxPluginTensors,
                       {},
                       &infer_plugin_naming_node};
  data_dependent.data_dependent_shapes = true;
  registry.add(std::move(data_dependent));
}

}  // namespace kiln::ops
