#include "builder/cuda_attention_preview.hpp"

#include <cstdlib>
#include <cstring>
#include <span>
#include <string>

#include "base/error.hpp"
#include "base/json.hpp"
#include "builder/build_from_graph.hpp"
#include "builder/engine_emitter.hpp"
#include "builder/input_profiles.hpp"
#include "format/engine_io.hpp"
#include "frontend/onnx/onnx_importer.hpp"
#include "passes/attention_fusion.hpp"
#include "passes/attention_lowering.hpp"
#include "passes/dead_code_elimination.hpp"
#include "passes/precision_lowering.hpp"
#include "passes/qkv_packing.hpp"
#include "runtime/c_api_support.hpp"

namespace kiln::builder {

std::vector<uint8_t> build_cpu_engine_with_cuda_attention_passes(ir::Graph graph, DType precision,
                                                                 AttentionPreview mode) {
  EmitOptions options;
  options.input_ranges = apply_input_profiles(graph, BuilderConfig{});
  optimize_graph(graph);
  if (precision != DType::kFloat32) passes::lower_precision(graph, precision);
  if (mode == AttentionPreview::kLowered) {
    passes::lower_attention(graph);
  } else if (mode != AttentionPreview::kNone) {
    passes::fuse_attention(graph, mode == AttentionPreview::kTensorCores);
    passes::eliminate_dead_code(graph);
    if (passes::pack_qkv_projections(graph) > 0) passes::eliminate_dead_code(graph);
  }
  graph.verify();
  options.precision = precision;
  return format::write_engine(emit_engine_model(graph, options));
}

}  // namespace kiln::builder

namespace {

struct PreviewConfig {
  kiln::DType precision = kiln::DType::kFloat16;
  kiln::builder::AttentionPreview mode = kiln::builder::AttentionPreview::kTensorCores;
};

PreviewConfig parse_preview_config(const char* config_json) {
  using namespace kiln;
  PreviewConfig config;
  if (config_json == nullptr) return config;
  json::ParseOptions options;
  options.source = "config_json";
  const json::Value root = json::parse(config_json, options);
  for (const auto& [key, value] : root.as_object("config_json")) {
    const std::string what = "config key '" + key + "'";
    const std::string text = value.as_string(what);
    if (key == "precision" && (text == "fp32" || text == "fp16" || text == "bf16")) {
      config.precision = text == "fp32"   ? DType::kFloat32
                         : text == "fp16" ? DType::kFloat16
                                          : DType::kBFloat16;
    } else if (key == "attention" &&
               (text == "none" || text == "lowered" || text == "tensor_cores" || text == "any")) {
      config.mode = text == "none"           ? builder::AttentionPreview::kNone
                    : text == "lowered"      ? builder::AttentionPreview::kLowered
                    : text == "tensor_cores" ? builder::AttentionPreview::kTensorCores
                                             : builder::AttentionPreview::kAny;
    } else {
      fail(ErrorCode::kInvalidArgument, what, ": unexpected key or value '", text,
           "' (precision: fp32, fp16, bf16; attention: none, lowered, tensor_cores, any)");
    }
  }
  return config;
}

}  // namespace

extern "C" kiln_status kiln_testing_build_with_cuda_attention_passes(const void* onnx,
                                                                     size_t onnx_size,
                                                                     const char* config_json,
                                                                     void** engine, size_t* size) {
  return kiln::capi::guarded(__func__, [&] {
    using namespace kiln;
    if (!engine || !size) fail(ErrorCode::kInvalidArgument, "engine and size must not be NULL");
    *engine = nullptr;
    *size = 0;
    if (!onnx && onnx_size != 0)
      fail(ErrorCode::kInvalidArgument, "onnx is NULL but onnx_size is ", onnx_size);
    const PreviewConfig config = parse_preview_config(config_json);
    const std::span<const uint8_t> bytes(static_cast<const uint8_t*>(onnx), onnx_size);
    const std::vector<uint8_t> built = builder::build_cpu_engine_with_cuda_attention_passes(
        onnx::import_model_bytes(bytes, onnx::ImportOptions{}), config.precision, config.mode);
    void* buffer = std::malloc(built.empty() ? 1 : built.size());
    if (!buffer) throw std::bad_alloc();
    if (!built.empty()) std::memcpy(buffer, built.data(), built.size());
    *engine = buffer;
    *size = built.size();
  });
}
