#include "kiln/builder.hpp"

#include <span>

#include "base/error.hpp"
#include "base/json.hpp"
#include "builder/build_from_graph.hpp"
#include "builder/builder_config.hpp"
#include "builder/engine_emitter.hpp"
#include "builder/input_profiles.hpp"
#include "format/engine_io.hpp"
#include "frontend/onnx/onnx_importer.hpp"
#include "passes/batch_norm_folding.hpp"
#include "passes/constant_folding.hpp"
#include "passes/conv_fusion.hpp"
#include "passes/conv_padding.hpp"
#include "passes/matmul_fusion.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/elementwise_fusion.hpp"
#include "passes/identity_elimination.hpp"
#include "passes/precision_lowering.hpp"
#include "kiln/runtime.hpp"
#include "passes/shape_inference.hpp"

namespace kiln {
namespace builder {
namespace {

// The user's metadata plus what the engine was built from, under "kiln_build" (a user key of that
// name wins).
std::string engine_metadata(json::Value metadata, const ir::Graph& graph,
                            const BuilderConfig& config, const std::string& source) {
  if (!metadata.find("kiln_build")) {
    json::Value build{json::Object{}};
    build.set("producer", json::Value(std::string("kiln ") + KILN_VERSION));
    if (!source.empty()) build.set("source", json::Value(source));
    if (!graph.name.empty()) build.set("graph", json::Value(graph.name));
    if (graph.opset > 0) build.set("opset", json::Value(graph.opset));
    build.set("target", json::Value(config.target));
    build.set("precision", json::Value(precision_name(config.precision)));
    metadata.set("kiln_build", std::move(build));
  }
  return json::serialize(metadata);
}

// TF32 is opt-in: kernels read this attribute to allow it for float32 GEMMs and convolutions.
void allow_tf32(ir::Graph& graph) {
  for (ir::Node& node : graph.nodes) {
    if (node.op_type == "Conv" || node.op_type == "MatMul" || node.op_type == "Gemm") {
      node.attrs.set("kiln_allow_tf32", Attribute::of_int(1));
    }
  }
}

void lower_for_cuda(ir::Graph& graph, const BuilderConfig& config, const ResolvedConfig& resolved) {
  if (passes::make_conv_padding_symmetric(graph) > 0) passes::infer_shapes(graph);
  if (resolved.precision != DType::kFloat32) passes::lower_precision(graph, resolved.precision);
  if (config.precision == Precision::kTf32) allow_tf32(graph);
  // After lowering, so that chains carry one dtype; the CPU (the reference) keeps the plain ops.
  if (passes::fuse_elementwise_chains(graph) > 0) passes::infer_shapes(graph);
}

}  // namespace

void optimize_graph(ir::Graph& graph) {
  passes::infer_shapes(graph);
  passes::fold_constants(graph);
  passes::eliminate_identities(graph);
  passes::fold_batch_norm(graph);
  passes::eliminate_dead_code(graph);
  passes::fuse_conv_epilogues(graph);
  passes::fuse_matmul_epilogues(graph);
  passes::infer_shapes(graph);
  graph.verify();
}

format::EngineModel build_engine_model(ir::Graph graph, const BuilderConfig& config,
                                       const std::string& source) {
  ResolvedConfig resolved = resolve_config(config);
  EmitOptions options;
  options.input_ranges = apply_input_profiles(graph, config);
  optimize_graph(graph);
  if (resolved.target.backend == "cuda") lower_for_cuda(graph, config, resolved);
  options.target = resolved.target;
  options.precision = resolved.precision;
  options.metadata_json = engine_metadata(std::move(resolved.metadata), graph, config, source);
  return emit_engine_model(graph, options);
}

std::vector<uint8_t> build_engine_from_graph(ir::Graph graph, const BuilderConfig& config,
                                             const std::string& source) {
  std::vector<uint8_t> bytes = format::write_engine(build_engine_model(std::move(graph), config, source));
  if (config.target == "cuda") {
    // Load it on the target GPU: every layer must have a kernel there, so a missing one surfaces
    // at build time rather than at deployment.
    DeviceSpec device;
    device.kind = DeviceSpec::Kind::kCuda;
    device.index = config.device;
    Engine::load_bytes(bytes.data(), bytes.size(), device);
  }
  return bytes;
}

}  // namespace builder

std::vector<uint8_t> build_engine_from_onnx_file(const std::string& onnx_path,
                                                 const BuilderConfig& config) {
  builder::resolve_config(config);  // report config errors before the (slower) import
  return builder::build_engine_from_graph(onnx::import_model_file(onnx_path), config, onnx_path);
}

std::vector<uint8_t> build_engine_from_onnx_bytes(const void* data, size_t size,
                                                  const std::string& base_dir,
                                                  const BuilderConfig& config) {
  if (data == nullptr && size != 0)
    fail(ErrorCode::kInvalidArgument, "ONNX bytes are null but size is ", size);
  builder::resolve_config(config);
  onnx::ImportOptions options;
  options.base_dir = base_dir;
  options.source = "<bytes>";
  const std::span<const uint8_t> bytes(static_cast<const uint8_t*>(data), size);
  return builder::build_engine_from_graph(onnx::import_model_bytes(bytes, options), config,
                                          options.source);
}

}  // namespace kiln
