#include "kiln/builder.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <span>

#include "backends/backend_registry.hpp"
#include "backends/cpu/onednn_conv.hpp"
#include "base/checked_math.hpp"
#include "base/error.hpp"
#include "base/json.hpp"
#include "builder/build_from_graph.hpp"
#include "builder/builder_config.hpp"
#include "builder/engine_emitter.hpp"
#include "builder/input_profiles.hpp"
#include "builder/memory_ceiling.hpp"
#include "codegen/group_kernels.hpp"
#include "codegen/kernel_cache.hpp"
#include "format/engine_io.hpp"
#include "frontend/onnx/onnx_importer.hpp"
#include "passes/attention_fusion.hpp"
#include "passes/batch_norm_affine.hpp"
#include "passes/batch_norm_folding.hpp"
#include "passes/constant_folding.hpp"
#include "passes/conv_bias_epilogue.hpp"
#include "passes/conv_fusion.hpp"
#include "passes/conv_padding.hpp"
#include "passes/cpu_activation_fusion.hpp"
#include "passes/matmul_fusion.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/fusion_grouping.hpp"
#include "passes/identity_elimination.hpp"
#include "passes/einsum_lowering.hpp"
#include "passes/layout_nhwc.hpp"
#include "passes/pass_manager.hpp"
#include "passes/patch_convolution.hpp"
#include "passes/precision_lowering.hpp"
#include "passes/qkv_packing.hpp"
#include "kiln/runtime.hpp"
#include "passes/shape_inference.hpp"
#include "passes/transpose_composition.hpp"
#include "passes/variadic_expansion.hpp"
#include "plugins/engine_plugins.hpp"
#include "plugins/plugin_layer.hpp"
#include "runtime/engine_state.hpp"
#include "runtime/tactic_cache.hpp"

namespace kiln {
namespace builder {
namespace {

// The user's metadata plus what the engine was built from, under "kiln_build" (a user key of that
// name wins).
// What --explain records: each pass's changes and time, the epilogues Conv/MatMul/Gemm did not
// take, and the fusion grouping's decisions.
struct BuildExplanation {
  std::vector<passes::PassRecord> passes;
  std::vector<passes::EpilogueMiss> epilogues;
  passes::FusionReport fusion;
};

json::Value explanation_json(const BuildExplanation& explanation) {
  json::Value passes{json::Array{}};
  for (const passes::PassRecord& record : explanation.passes) {
    json::Value entry{json::Object{}};
    entry.set("pass", json::Value(record.name));
    entry.set("changes", json::Value(static_cast<int64_t>(record.changes)));
    entry.set("ms", json::Value(record.milliseconds));
    passes.as_array().push_back(std::move(entry));
  }
  json::Value decisions{json::Array{}};
  for (const passes::FusionDecision& d : explanation.fusion.decisions) {
    json::Value entry{json::Object{}};
    entry.set("node", json::Value(d.node));
    entry.set("op", json::Value(d.op));
    if (!d.group.empty()) entry.set("group", json::Value(d.group));
    if (!d.reason.empty()) entry.set("reason", json::Value(d.reason));
    decisions.as_array().push_back(std::move(entry));
  }
  json::Value fusion{json::Object{}};
  fusion.set("groups", json::Value(static_cast<int64_t>(explanation.fusion.groups)));
  fusion.set("members", json::Value(static_cast<int64_t>(explanation.fusion.members)));
  fusion.set("decisions", std::move(decisions));
  json::Value epilogues{json::Array{}};
  for (const passes::EpilogueMiss& miss : explanation.epilogues) {
    json::Value entry{json::Object{}};
    entry.set("node", json::Value(miss.node));
    entry.set("op", json::Value(miss.op));
    entry.set("reader", json::Value(miss.reader));
    entry.set("reader_op", json::Value(miss.reader_op));
    entry.set("reason", json::Value(miss.reason));
    epilogues.as_array().push_back(std::move(entry));
  }
  json::Value out{json::Object{}};
  out.set("passes", std::move(passes));
  out.set("epilogues", std::move(epilogues));
  out.set("fusion", std::move(fusion));
  return out;
}

std::string engine_metadata(json::Value metadata, const ir::Graph& graph,
                            const BuilderConfig& config, const std::string& source,
                            const BuildExplanation* explanation) {
  if (!metadata.find("kiln_build")) {
    json::Value build{json::Object{}};
    build.set("producer", json::Value(std::string("kiln ") + KILN_VERSION));
    if (!source.empty()) build.set("source", json::Value(source));
    if (!graph.name.empty()) build.set("graph", json::Value(graph.name));
    if (graph.opset > 0) build.set("opset", json::Value(graph.opset));
    build.set("target", json::Value(config.target));
    build.set("precision", json::Value(precision_name(config.precision)));
    if (explanation) build.set("explain", explanation_json(*explanation));
    metadata.set("kiln_build", std::move(build));
  }
  return json::serialize(metadata);
}

// TF32 is opt-in: kernels read this attribute to allow it for float32 GEMMs and convolutions.
void allow_tf32(ir::Graph& graph) {
  for (ir::Node& node : graph.nodes) {
    if (node.op_type == "Conv" || node.op_type == "ConvTranspose" || node.op_type == "MatMul" ||
        node.op_type == "Gemm") {
      node.attrs.set("kiln_allow_tf32", Attribute::of_int(1));
    }
  }
}

// KILN_CONV_LAYOUT=nchw|nhwc overrides the layout choice of fp16/bf16 convolution regions (for
// measuring one against the other): nchw keeps every region NCHW, nhwc converts depthwise regions
// too. Unset: NHWC except regions with depthwise convolutions (kChosen), and where the build runs
// on the GPU, a graph with depthwise convolutions is built both ways and the faster engine kept.
enum class ConvLayout { kChosen, kNchw, kNhwc };
ConvLayout conv_layout_override() {
  const char* layout = std::getenv("KILN_CONV_LAYOUT");
  if (layout == nullptr || *layout == '\0') return ConvLayout::kChosen;
  const std::string value(layout);
  if (value == "nhwc") return ConvLayout::kNhwc;
  if (value == "nchw") return ConvLayout::kNchw;
  fail(ErrorCode::kInvalidArgument, "KILN_CONV_LAYOUT must be 'nchw' or 'nhwc', got '", value, "'");
}

void lower_for_cuda(ir::Graph& graph, const BuilderConfig& config, const ResolvedConfig& resolved,
                    BuildExplanation& explanation, ConvLayout layout) {
  const bool half = resolved.precision != DType::kFloat32;
  passes::PassManager manager;
  // CUDA's Sum/Mean/Min/Max kernels take exactly two inputs.
  manager.add("variadic_expansion", [](ir::Graph& g) { return size_t(passes::expand_variadic_elementwise(g)); });
  manager.add("conv_padding", [](ir::Graph& g) { return size_t(passes::make_conv_padding_symmetric(g)); });
  // BatchNormalizations no conv absorbed become a per-channel multiply-add that fusion groups take
  // in (before precision lowering, which then converts their constants like any other).
  manager.add("batch_norm_affine", [](ir::Graph& g) { return passes::convert_batch_norm_to_affine(g); });
  // ViT-style patch embeddings (kernel == stride, no padding) run as one GEMM with the bias in
  // cuBLASLt's epilogue, not as an NCHW conv with C = 3. Before precision lowering (which converts
  // the new weight matrix like any constant) and before the NHWC pass (no longer a conv there).
  manager.add("patch_convolution", [](ir::Graph& g) { return size_t(passes::convert_patch_convolutions_to_matmul(g)); });
  if (half) {
    manager.add("precision_lowering", [&](ir::Graph& g) {
      passes::lower_precision(g, resolved.precision);
      return size_t{1};
    });
  }
  // fp16/bf16 convolutions run on tensor cores in NHWC: keep their activations NHWC.
  if (half && layout != ConvLayout::kNchw) {
    manager.add("layout_nhwc", [&](ir::Graph& g) {
      return size_t(passes::convert_conv_regions_to_nhwc(g, /*include_depthwise=*/layout == ConvLayout::kNhwc));
    });
  }
  // After the layouts are chosen (so they stay in NHWC regions): squeeze-excitation's 1x1 convs
  // of a 1x1 map become GEMMs between views, in either layout.
  manager.add("one_pixel_convolution", [](ir::Graph& g) {
    return size_t(passes::convert_patch_convolutions_to_matmul(g, passes::PatchKind::kOnePixel));
  });
  // Biases that cuDNN would add in a pass of their own go into the generated kernel of the op that
  // reads the conv's output (after the layouts are chosen: the bias broadcasts per layout).
  manager.add("conv_bias_epilogue", [](ir::Graph& g) { return passes::move_conv_bias_into_pointwise_readers(g); });
  // Layout edges meet the model's own permutes: composed, and cancelled where they undo each other.
  manager.add("transpose_composition", [](ir::Graph& g) { return passes::compose_transposes(g); });
  if (config.precision == Precision::kTf32) {
    manager.add("allow_tf32", [](ir::Graph& g) {
      allow_tf32(g);
      return size_t{0};  // attributes only: nothing to re-infer
    });
  }
  // After lowering, so that fused ops carry one dtype; the CPU (the reference) keeps the plain ops.
  manager.add("attention_fusion", [](ir::Graph& g) { return size_t(passes::fuse_attention(g, /*tensor_core_shapes_only=*/true)); });
  // Then one GEMM for each self-attention's Q, K and V projections (their biases, fused into the
  // MatMuls by optimize_graph, become one bias in the merged GEMM's epilogue).
  manager.add("qkv_packing", [](ir::Graph& g) { return size_t(passes::pack_qkv_projections(g)); });
  // Last: pointwise ops and reductions (with their prologues and epilogues) become FusedGroups,
  // each run by a kernel generated for it.
  manager.add("fusion_grouping", [&](ir::Graph& g) { return size_t(passes::form_fusion_groups(g, &explanation.fusion)); });
  manager.run(graph);
  explanation.passes.insert(explanation.passes.end(), manager.records().begin(), manager.records().end());
}

// The CPU target's lowering. oneDNN's float32 convolutions (brgemm and depthwise kernels) run
// NHWC natively; NCHW activations made every call reorder its input and output, about as much time
// as the convolutions themselves in MobileNetV2. So regions of convolutions keep their activations
// NHWC, depthwise ones included (KILN_CONV_LAYOUT=nchw keeps NCHW, for comparisons). Only where
// this process has oneDNN: without it the reference convolution would permute around each call.
void lower_for_cpu(ir::Graph& graph, const ResolvedConfig& resolved, BuildExplanation& explanation,
                   ConvLayout layout) {
  if (resolved.precision != DType::kFloat32 || layout == ConvLayout::kNchw || !cpu::onednn::available()) return;
  passes::PassManager manager;
  manager.add("layout_nhwc", [](ir::Graph& g) {
    return size_t(passes::convert_conv_regions_to_nhwc(g, /*include_depthwise=*/true, /*include_float32=*/true));
  });
  // Layout edges meet the model's own permutes: composed, and cancelled where they undo each other.
  manager.add("transpose_composition", [](ir::Graph& g) { return passes::compose_transposes(g); });
  manager.run(graph);
  explanation.passes.insert(explanation.passes.end(), manager.records().begin(), manager.records().end());
}

// After the common passes (conv_fusion took Relu and residual Adds): the activations that follow
// a Conv go into it, applied to its output while that is in cache (MobileNetV2's ReLU6,
// EfficientNet's SiLU), in either layout.
void fuse_for_cpu(ir::Graph& graph, const ResolvedConfig& resolved, BuildExplanation& explanation) {
  if (resolved.precision != DType::kFloat32) return;
  passes::PassManager manager;
  manager.add("cpu_activation_fusion", [](ir::Graph& g) { return size_t(passes::fuse_cpu_conv_activations(g)); });
  manager.run(graph);
  explanation.passes.insert(explanation.passes.end(), manager.records().begin(), manager.records().end());
}

// The CUDA backend runs a plugin layer with the plugin's execute_cuda: refuse, before any CUDA
// lowering, a plugin that has none, naming it and the backend.
void refuse_cpu_only_plugins_for_cuda(const ir::Graph& graph, const std::string& source) {
  for (const ir::Node& node : graph.nodes) {
    if (node.removed || !plugins::is_plugin_op(node.op_type)) continue;
    const plugins::PluginIdentity identity = plugins::identity_of(node.attrs, node.name);
    const plugins::RegisteredCreator& creator =
        plugins::require_creator(identity, source + ": node '" + node.name + "': ");
    if (creator.creator->execute_cuda) continue;
    fail(ErrorCode::kUnsupported, source, ": node '", node.name, "' runs plugin ", creator.label(), " (",
         creator.library_file_name(), "), which has no CUDA implementation (its execute_cuda is NULL), so the "
         "cuda backend cannot run it; build this model with --target cpu");
  }
}

// One call with zero-filled inputs at each input's opt shape.
void run_once_at_opt_shapes(const Engine& engine, const format::EngineModel& model) {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<NamedTensor> inputs;
  for (const format::Binding& binding : model.inputs) {
    const format::TensorDesc& desc = model.tensors.at(binding.tensor);
    Shape shape = desc.shape;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] == kDynamicDim) shape[d] = d < binding.ranges.size() ? binding.ranges[d].opt : 1;
    }
    storage.emplace_back(static_cast<size_t>(checked_byte_size(shape, desc.dtype, binding.name)), uint8_t{0});
    inputs.push_back(NamedTensor{binding.name, TensorRef{desc.dtype, shape, storage.back().data()}});
  }
  ExecutionContext context = engine.create_context();
  context.execute(inputs);
}

}  // namespace

namespace {

void optimize_graph(ir::Graph& graph, std::vector<passes::PassRecord>* records,
                    std::vector<passes::EpilogueMiss>* epilogue_misses) {
  // Inference node by node with folding in between, rather than inference alone: shape arithmetic
  // on static shapes (Shape -> Size -> Sub -> ConstantOfShape -> Concat, as ONNX's function
  // expansions write it) becomes constant before the node that needs its value (a Reshape's
  // shape) is inferred. Inputs get their symbolic dims first (idempotent: the profiles gave them
  // already, graphs built by hand get them here).
  graph.assign_input_symbols();
  passes::fold_constants(graph);
  passes::PassManager manager;
  // Einsum has no kernels: it becomes Transpose/Reshape/MatMul/ReduceSum for every target.
  manager.add("einsum_lowering", [](ir::Graph& g) { return size_t(passes::lower_einsum(g)); });
  manager.add("constant_folding", [](ir::Graph& g) { return passes::fold_constants(g); });
  manager.add("identity_elimination", [](ir::Graph& g) { return passes::eliminate_identities(g); });
  manager.add("batch_norm_folding", [](ir::Graph& g) { return passes::fold_batch_norm(g); });
  manager.add("dead_code_elimination", [](ir::Graph& g) { return passes::eliminate_dead_code(g).nodes_removed; });
  manager.add("conv_fusion", [&](ir::Graph& g) { return size_t(passes::fuse_conv_epilogues(g, epilogue_misses)); });
  manager.add("matmul_fusion",
              [&](ir::Graph& g) { return size_t(passes::fuse_matmul_epilogues(g, epilogue_misses)); });
  manager.run(graph);
  graph.verify();
  if (records) records->insert(records->end(), manager.records().begin(), manager.records().end());
}

}  // namespace

void optimize_graph(ir::Graph& graph) { optimize_graph(graph, nullptr, nullptr); }

namespace {

// An engine for the host backend (cpu) runs every layer there: each layer must be one that
// backend's kernel registrations take, which is asked here so that the build fails naming the
// node, op, backend and the dtype expected vs got, not a load. (Engines for another backend are
// checked by check_loadable_off_device, which asks that backend, or by their run on its device.)
void check_host_backend_supports(const format::EngineModel& model, const std::string& source) {
  const backends::Backend& host = backends::host_backend();
  if (model.target.backend != host.name()) return;
  std::string list;
  size_t count = 0;
  for (const format::Layer& layer : model.layers) {
    const std::string reason = host.why_unsupported(model, layer);
    if (reason.empty()) continue;
    list += "\n  node '" + layer.name + "' (op '" + layer.op + "'): " + reason;
    ++count;
  }
  if (count > 0) {
    fail(ErrorCode::kUnsupported, source, ": the ", host.name(), " backend cannot run ", count, " layer(s):", list);
  }
}

format::EngineModel build_model_with_layout(ir::Graph graph, const BuilderConfig& config, const std::string& source,
                                            ConvLayout layout) {
  ResolvedConfig resolved = resolve_config(config);
  const MemoryLimit memory_limit = build_memory_limit(config);
  EmitOptions options;
  options.input_ranges = apply_input_profiles(graph, config);
  BuildExplanation explanation;
  optimize_graph(graph, &explanation.passes, &explanation.epilogues);
  if (resolved.target.backend == "cuda") refuse_cpu_only_plugins_for_cuda(graph, source);
  if (resolved.target.backend == "cuda") lower_for_cuda(graph, config, resolved, explanation, layout);
  if (resolved.target.backend == backends::host_backend().name()) {
    lower_for_cpu(graph, resolved, explanation, layout);
    fuse_for_cpu(graph, resolved, explanation);
  }
  check_static_tensors_fit(graph, memory_limit);
  options.target = resolved.target;
  options.precision = resolved.precision;
  std::vector<format::KernelModule> kernels;
  if (resolved.target.backend == "cuda") {
    kernels = codegen::generate_group_kernels(graph, resolved.target.sm_arch, codegen::KernelCache(resolved.kernel_cache_dir));
  }
  options.metadata_json = engine_metadata(std::move(resolved.metadata), graph, config, source,
                                          config.explain ? &explanation : nullptr);
  format::EngineModel model = emit_engine_model(graph, options);
  model.plugins = plugins::plugin_refs_of_layers(model);
  check_host_backend_supports(model, source);
  check_arena_fits(model, memory_limit);
  model.kernels = std::move(kernels);
  return model;
}

bool has_depthwise_conv(const ir::Graph& graph) {
  return std::any_of(graph.nodes.begin(), graph.nodes.end(),
                     [&](const ir::Node& node) { return passes::is_depthwise_conv(graph, node); });
}

// Runs `model` once on the build's GPU at the inputs' opt shapes, so its GEMM/convolution layers
// time their candidates (through `tactics`), and records each winner in its layer.
void tune_on_gpu(format::EngineModel& model, const BuilderConfig& config, TacticCache& tactics) {
  {
    const std::vector<uint8_t> untuned = format::write_engine(model);
    DeviceSpec device;
    device.kind = DeviceSpec::Kind::kCuda;
    device.index = config.device;
    ScopedTacticCache active(&tactics);
    const Engine engine = Engine::load_bytes(untuned.data(), untuned.size(), device);
    run_once_at_opt_shapes(engine, model);
  }
  const auto choices = tactics.layer_choices();
  for (format::Layer& layer : model.layers) {
    const auto it = choices.find(layer.name);
    if (it == choices.end()) continue;
    layer.attrs.set("kiln_tactic_key", Attribute::of_string(it->second.first));
    layer.attrs.set("kiln_tactic", Attribute::of_string(it->second.second));
  }
}

// Milliseconds per call of tuned `model` on the build's GPU at the inputs' opt shapes (zero
// inputs in device memory, CUDA graphs as deployed, median of 5 runs of 10 calls).
double time_on_gpu(const format::EngineModel& model, const BuilderConfig& config) {
  const std::vector<uint8_t> bytes = format::write_engine(model);
  DeviceSpec device;
  device.kind = DeviceSpec::Kind::kCuda;
  device.index = config.device;
  const Engine engine = Engine::load_bytes(bytes.data(), bytes.size(), device);
  std::vector<EngineBuffer> buffers;
  std::vector<NamedTensor> inputs, outputs;
  for (const format::Binding& binding : model.inputs) {
    const format::TensorDesc& desc = model.tensors.at(binding.tensor);
    Shape shape = desc.shape;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] == kDynamicDim) shape[d] = d < binding.ranges.size() ? binding.ranges[d].opt : 1;
    }
    const auto size = static_cast<size_t>(checked_byte_size(shape, desc.dtype, binding.name));
    buffers.emplace_back(engine, std::max<size_t>(size, 1));
    const std::vector<uint8_t> zeros(size, 0);
    if (size > 0) buffers.back().copy_from_host(zeros.data(), size);
    inputs.push_back(NamedTensor{binding.name, TensorRef{desc.dtype, shape, buffers.back().data()}});
  }
  ExecutionContext context = engine.create_context();
  const std::vector<Shape> shapes = context.output_shapes(inputs);
  for (size_t o = 0; o < model.outputs.size(); ++o) {
    const format::Binding& binding = model.outputs[o];
    const DType dtype = model.tensors.at(binding.tensor).dtype;
    buffers.emplace_back(engine, std::max<size_t>(static_cast<size_t>(checked_byte_size(shapes[o], dtype, binding.name)), 1));
    outputs.push_back(NamedTensor{binding.name, TensorRef{dtype, shapes[o], buffers.back().data()}});
  }
  for (int i = 0; i < 3; ++i) context.execute(inputs, outputs);
  synchronize(engine);
  std::vector<double> samples;
  for (int sample = 0; sample < 5; ++sample) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; ++i) context.execute(inputs, outputs);
    synchronize(engine);
    samples.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / 10);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// Adds kiln_build.conv_layout (what was timed and kept, or why NHWC was not) to the engine's metadata.
void record_layout_choice(format::EngineModel& model, double nchw_ms, double nhwc_ms, bool nhwc,
                          const std::string& nhwc_error) {
  json::Value metadata = json::parse(model.metadata_json);
  json::Value choice{json::Object{}};
  choice.set("depthwise_regions", json::Value(std::string(nhwc ? "nhwc" : "nchw")));
  choice.set("nchw_ms", json::Value(nchw_ms));
  if (nhwc_error.empty()) {
    choice.set("nhwc_ms", json::Value(nhwc_ms));
  } else {
    choice.set("nhwc_error", json::Value(nhwc_error));
  }
  if (const json::Value* build = metadata.find("kiln_build")) {
    json::Value updated = *build;
    updated.set("conv_layout", std::move(choice));
    metadata.set("kiln_build", std::move(updated));
  }
  model.metadata_json = json::serialize(metadata);
}

}  // namespace

format::EngineModel build_engine_model(ir::Graph graph, const BuilderConfig& config,
                                       const std::string& source) {
  return build_model_with_layout(std::move(graph), config, source, conv_layout_override());
}

// The layers a cuda engine would run on the host (layer_placement.hpp), from the checks a load
// makes without a device: refused unless the config allows them, else recorded in the metadata
// (kiln_build.host_layers).
void check_host_layers(format::EngineModel& model, const BuilderConfig& config, const std::string& source) {
  const std::vector<std::string> host = detail::check_loadable_off_device(model, source);
  if (host.empty()) return;
  if (!config.allow_host_layers) {
    std::string list;
    for (const std::string& h : host) list += "\n  " + h;
    fail(ErrorCode::kUnsupported, source, ": ", host.size(), " layer(s) would run on the host, since no cuda kernel takes ",
         "them, and host layers are not allowed (allow_host_layers):", list);
  }
  json::Value metadata = json::parse(model.metadata_json);
  json::Array listed(host.begin(), host.end());
  if (const json::Value* build = metadata.find("kiln_build")) {
    json::Value updated = *build;
    updated.set("host_layers", json::Value(std::move(listed)));
    metadata.set("kiln_build", std::move(updated));
  }
  model.metadata_json = json::serialize(metadata);
}

std::vector<uint8_t> build_engine_from_graph(ir::Graph graph, const BuilderConfig& config,
                                             const std::string& source) {
  // Cross-compiled engines (cuda_arch) are not run here: their tactics are chosen on their GPU.
  // What a load checks without a device is checked now, so that a layer no CUDA kernel runs fails
  // the build rather than the deployment.
  if (config.target != "cuda" || config.cuda_arch != 0) {
    format::EngineModel model = build_engine_model(std::move(graph), config, source);
    if (config.target == "cuda") check_host_layers(model, config, source);
    return format::write_engine(model);
  }
  // Run it once on the target GPU at the inputs' opt shapes: every layer must have a kernel there
  // (a missing one surfaces at build time rather than at deployment), and the GEMM/convolution
  // layers time their candidate algorithms; each winner is recorded in its layer.
  const ConvLayout forced = conv_layout_override();
  const bool half = config.precision == Precision::kFp16 || config.precision == Precision::kBf16;
  if (forced != ConvLayout::kChosen || !half || !has_depthwise_conv(graph)) {
    format::EngineModel model = build_model_with_layout(std::move(graph), config, source, forced);
    check_host_layers(model, config, source);
    TacticCache tactics;
    if (!config.timing_cache.empty()) tactics.load(config.timing_cache);
    tune_on_gpu(model, config, tactics);
    if (!config.timing_cache.empty()) tactics.save(config.timing_cache);
    return format::write_engine(model);
  }
  // Depthwise convolutions: neither layout wins everywhere (NHWC regions avoid the transposes
  // around them, NCHW suits cuDNN's and kiln's kernels at some sizes), so build both, time each
  // engine as deployed and keep the faster.
  TacticCache nchw_tactics, nhwc_tactics;
  if (!config.timing_cache.empty()) {
    nchw_tactics.load(config.timing_cache);
    nhwc_tactics.load(config.timing_cache);
  }
  format::EngineModel nchw = build_model_with_layout(graph, config, source, ConvLayout::kChosen);
  check_host_layers(nchw, config, source);
  tune_on_gpu(nchw, config, nchw_tactics);
  const double nchw_ms = time_on_gpu(nchw, config);
  // The NHWC variant is only a candidate: if it cannot be built or run, the NCHW engine stands
  // (and the metadata says why).
  std::optional<format::EngineModel> nhwc;
  double nhwc_ms = 0.0;
  std::string nhwc_error;
  try {
    nhwc = build_model_with_layout(std::move(graph), config, source, ConvLayout::kNhwc);
    check_host_layers(*nhwc, config, source);
    tune_on_gpu(*nhwc, config, nhwc_tactics);
    nhwc_ms = time_on_gpu(*nhwc, config);
  } catch (const Error& e) {
    nhwc.reset();
    nhwc_error = e.what();
  }
  const bool keep_nhwc = nhwc && nhwc_ms < nchw_ms;
  format::EngineModel& kept = keep_nhwc ? *nhwc : nchw;
  record_layout_choice(kept, nchw_ms, nhwc_ms, keep_nhwc, nhwc_error);
  if (!config.timing_cache.empty()) (keep_nhwc ? nhwc_tactics : nchw_tactics).save(config.timing_cache);
  return format::write_engine(kept);
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
