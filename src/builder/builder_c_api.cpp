// The builder's C API: BuilderConfig from JSON, engine bytes in malloc'ed memory.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/error.hpp"
#include "base/json.hpp"
#include "kiln/builder.hpp"
#include "kiln/kiln_builder.h"
#include "runtime/c_api_support.hpp"

namespace kiln::builder {
namespace {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "tf32") return Precision::kTf32;
  if (name == "fp16") return Precision::kFp16;
  if (name == "bf16") return Precision::kBf16;
  fail(ErrorCode::kInvalidArgument, "config key 'precision': unknown precision '", name,
       "' (expected fp32, tf32, fp16 or bf16)");
}

Shape parse_dims(const json::Value& value, const std::string& what) {
  Shape dims;
  for (const json::Value& dim : value.as_array(what))
    dims.push_back(dim.as_int64(what + " element"));
  return dims;
}

InputProfile parse_profile(const std::string& input, const json::Value& value) {
  const std::string what = "config key 'profiles' entry '" + input + "'";
  InputProfile profile;
  profile.name = input;
  bool has_min = false, has_opt = false, has_max = false;
  for (const auto& [key, member] : value.as_object(what)) {
    const std::string member_what = what + " key '" + key + "'";
    if (key == "min") {
      profile.min = parse_dims(member, member_what);
      has_min = true;
    } else if (key == "opt") {
      profile.opt = parse_dims(member, member_what);
      has_opt = true;
    } else if (key == "max") {
      profile.max = parse_dims(member, member_what);
      has_max = true;
    } else {
      fail(ErrorCode::kInvalidArgument, what, ": unknown key '", key, "' (expected min, opt, max)");
    }
  }
  if (!has_min || !has_max) fail(ErrorCode::kInvalidArgument, what, ": needs both 'min' and 'max'");
  // opt defaults to max: the shape an engine is most often tuned for.
  if (!has_opt) profile.opt = profile.max;
  return profile;
}

BuilderConfig parse_config(const char* config_json) {
  BuilderConfig config;
  if (config_json == nullptr) return config;
  json::ParseOptions options;
  options.source = "config_json";
  const json::Value root = json::parse(config_json, options);
  for (const auto& [key, value] : root.as_object("config_json")) {
    const std::string what = "config key '" + key + "'";
    if (key == "precision") {
      config.precision = parse_precision(value.as_string(what));
    } else if (key == "target") {
      config.target = value.as_string(what);
    } else if (key == "device") {
      const int64_t device = value.as_int64(what);
      if (device < 0 || device > 1024)
        fail(ErrorCode::kInvalidArgument, what, ": invalid device ", device);
      config.device = static_cast<int>(device);
    } else if (key == "workspace_limit") {
      const int64_t limit = value.as_int64(what);
      if (limit < 0) fail(ErrorCode::kInvalidArgument, what, ": must be >= 0, got ", limit);
      config.workspace_limit = static_cast<uint64_t>(limit);
    } else if (key == "timing_cache") {
      config.timing_cache = value.as_string(what);
    } else if (key == "kernel_cache") {
      config.kernel_cache = value.as_string(what);
    } else if (key == "cuda_arch") {
      config.cuda_arch = static_cast<int>(std::clamp<int64_t>(value.as_int64(what), -1, 100000));
    } else if (key == "explain") {
      config.explain = value.as_bool(what);
    } else if (key == "allow_host_layers") {
      config.allow_host_layers = value.as_bool(what);
    } else if (key == "metadata") {
      value.as_object(what);
      config.metadata_json = json::serialize(value);
    } else if (key == "profiles") {
      for (const auto& [input, profile] : value.as_object(what))
        config.profiles.push_back(parse_profile(input, profile));
    } else {
      fail(ErrorCode::kInvalidArgument, "config_json: unknown key '", key,
           "' (expected precision, target, device, workspace_limit, timing_cache, kernel_cache, ",
           "cuda_arch, explain, allow_host_layers, metadata, profiles)");
    }
  }
  return config;
}

// Hands `bytes` to the caller in malloc'ed memory (kiln_free releases it).
void export_bytes(const std::vector<uint8_t>& bytes, void** out, size_t* size) {
  void* buffer = std::malloc(bytes.empty() ? 1 : bytes.size());
  if (!buffer) throw std::bad_alloc();
  if (!bytes.empty()) std::memcpy(buffer, bytes.data(), bytes.size());
  *out = buffer;
  *size = bytes.size();
}

void check_out_params(void** engine, size_t* size) {
  if (!engine || !size) fail(ErrorCode::kInvalidArgument, "engine and size must not be NULL");
  *engine = nullptr;
  *size = 0;
}

}  // namespace
}  // namespace kiln::builder

extern "C" {

kiln_status kiln_build_onnx_file(const char* onnx_path, const char* config_json, void** engine,
                                 size_t* size) {
  return kiln::capi::guarded(__func__, [&] {
    using namespace kiln;
    builder::check_out_params(engine, size);
    if (!onnx_path) fail(ErrorCode::kInvalidArgument, "onnx_path must not be NULL");
    const BuilderConfig config = builder::parse_config(config_json);
    builder::export_bytes(build_engine_from_onnx_file(onnx_path, config), engine, size);
  });
}

kiln_status kiln_build_onnx_bytes(const void* onnx, size_t onnx_size, const char* base_dir,
                                  const char* config_json, void** engine, size_t* size) {
  return kiln::capi::guarded(__func__, [&] {
    using namespace kiln;
    builder::check_out_params(engine, size);
    if (!onnx && onnx_size != 0)
      fail(ErrorCode::kInvalidArgument, "onnx is NULL but onnx_size is ", onnx_size);
    const BuilderConfig config = builder::parse_config(config_json);
    builder::export_bytes(
        build_engine_from_onnx_bytes(onnx, onnx_size, base_dir ? base_dir : "", config), engine,
        size);
  });
}

void kiln_free(void* buffer) {
  std::free(buffer);
}

}  // extern "C"
