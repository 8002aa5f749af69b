// kiln build: ONNX model -> engine file.
#include <algorithm>
#include <chrono>
#include <iomanip>
#include <map>
#include <sstream>
#include <fstream>
#include <iostream>
#include <optional>
#include <string_view>

#include "base/error.hpp"
#include "kiln/runtime.hpp"
#include "base/json.hpp"
#include "format/engine_io.hpp"
#include "format/engine_schema.hpp"
#include "kiln/builder.hpp"
#include "tools/cli_args.hpp"
#include "tools/commands.hpp"
#include "tools/json_writer.hpp"

namespace kiln::tools {
namespace {

constexpr std::string_view kBuildHelp = R"(usage: kiln build MODEL.onnx -o OUT.kiln [options]

Compile an ONNX model into a kiln engine file.

options:
  -o, --output PATH        the engine file to write (required)
  --fp32 | --tf32 | --fp16 | --bf16
                           precision of the engine's math (default fp32)
  --target cpu|cuda        the backend the engine runs on (default cpu)
  --device N               cuda: the GPU whose architecture the engine targets (default 0)
  --cuda-arch SM           cuda: build for compute capability SM (e.g. 90 or sm_90) without that
                           GPU; tactics are then chosen when the engine first runs on its GPU
  --workspace BYTES        scratch memory kernels may use; only the default 1G is supported yet
  --memory-limit BYTES     fail when a static tensor or the static activation arena is larger;
                           K/M/G suffixes allowed (default $KILN_MEMORY_LIMIT, else physical RAM)
  --timing-cache FILE      cuda: reuse the GEMM/convolution tactics timed by earlier builds from
                           FILE and add this build's to it (created when missing)
  --kernel-cache DIR|off   cuda: directory of compiled generated kernels reused across builds
                           (default $KILN_KERNEL_CACHE, else ~/.cache/kiln/kernels); off: none
  --profile NAME:min=DIMS,opt=DIMS,max=DIMS
                           range of a dynamic input's shape, DIMS like 1x3x224x224; repeat per
                           input. opt defaults to min. Inputs with dynamic dims and no profile
                           get the builder's default range.
  --metadata JSON          a JSON object recorded in the engine (see kiln inspect)
  --no-host-layers         cuda: fail when a layer has no cuda kernel that takes it, instead of
                           running it on the host (listed as a warning, and in the metadata
                           under kiln_build.host_layers)
  --plugins PATH           load the plugin library PATH (docs/plugins.md): ONNX nodes of a domain
                           and op type it registers become plugin layers; repeat per library
  --verbose                print the build's phases and their times, each pass's changes and
                           time, the layers by op, the fusion groups and (cuda) the tactic chosen
                           per layer; records the explanation in the engine as --explain does
  --explain                print what each pass changed, each Add or Relu a Conv, MatMul or Gemm
                           did not fuse as its epilogue and why, and, per node, which fusion
                           group (one generated kernel) it joined or why it joined none; also
                           recorded in the engine's metadata under kiln_build.explain
  -h, --help               show this help
)";

// Warns, on stderr, about the layers a cuda engine runs on the host (kiln_build.host_layers).
// `build`: the metadata's kiln_build object, or null.
void warn_host_layers(const json::Value* build) {
  const json::Value* host = build ? build->find("host_layers") : nullptr;
  if (host == nullptr || host->as_array().empty()) return;
  std::cerr << "warning: " << host->as_array().size()
            << " layer(s) run on the host, since no cuda kernel takes them; each call synchronises at "
               "them and runs without CUDA graphs (--no-host-layers refuses them):\n";
  for (const json::Value& layer : host->as_array()) std::cerr << "  " << layer.as_string("host layer") << "\n";
}

// Prints the explanation the builder recorded in the engine's metadata (--explain).
void print_explanation(const json::Value* build) {
  const json::Value* explain = build ? build->find("explain") : nullptr;
  if (explain == nullptr) return;
  std::cout << "passes:\n";
  for (const json::Value& pass : explain->find("passes")->as_array()) {
    std::cout << "  " << pass.find("pass")->as_string() << ": " << pass.find("changes")->as_int64()
              << " change(s), " << pass.find("ms")->as_number() << " ms\n";
  }
  // Engines built before epilogue misses were recorded have no "epilogues".
  if (const json::Value* epilogues = explain->find("epilogues")) {
    const auto& misses = epilogues->as_array();
    std::cout << "epilogue fusion: " << misses.size() << " epilogue(s) not fused\n";
    for (const json::Value& m : misses) {
      std::cout << "  node '" << m.find("node")->as_string() << "' (" << m.find("op")->as_string()
                << "): not fused with '" << m.find("reader")->as_string() << "' ("
                << m.find("reader_op")->as_string() << "): " << m.find("reason")->as_string() << "\n";
    }
  }
  const json::Value& fusion = *explain->find("fusion");
  const auto& decisions = fusion.find("decisions")->as_array();
  std::cout << "fusion: " << fusion.find("groups")->as_int64() << " generated kernel(s) from "
            << fusion.find("members")->as_int64() << " node(s)";
  if (decisions.empty()) std::cout << " (cpu engines are not grouped)";
  std::cout << "\n";
  for (const json::Value& d : decisions) {
    std::cout << "  node '" << d.find("node")->as_string() << "' (" << d.find("op")->as_string() << "): ";
    if (const json::Value* group = d.find("group")) {
      std::cout << "in group '" << group->as_string() << "'";
      if (const json::Value* reason = d.find("reason")) std::cout << "; " << reason->as_string();
    } else if (const json::Value* reason = d.find("reason")) {
      std::cout << reason->as_string();
    }
    std::cout << "\n";
  }
}

// "85 ms" below a second, "12.34 s" above.
std::string format_seconds(double seconds) {
  std::ostringstream out;
  out << std::fixed;
  if (seconds < 1.0) {
    out << std::setprecision(seconds < 0.01 ? 1 : 0) << seconds * 1e3 << " ms";
  } else {
    out << std::setprecision(2) << seconds << " s";
  }
  return out.str();
}

// What --verbose adds after the "built" line: the phases, the passes, the layers by op, the
// fusion groups and the tactics recorded in the layers.
void print_verbose(const format::EngineModel& model, const json::Value* build, double build_s, double write_s) {
  std::cout << "phases: build " << format_seconds(build_s) << " (import, passes, planning, serialization), write "
            << format_seconds(write_s) << "\n";
  const json::Value* explain = build ? build->find("explain") : nullptr;
  if (explain != nullptr) {
    const auto& passes = explain->find("passes")->as_array();
    double passes_ms = 0.0;
    for (const json::Value& pass : passes) passes_ms += pass.find("ms")->as_number();
    std::cout << "passes (" << passes.size() << ", " << std::fixed << std::setprecision(1) << passes_ms
              << " ms in all):\n";
    for (const json::Value& pass : passes) {
      std::cout << "  " << std::left << std::setw(28) << pass.find("pass")->as_string() << std::right
                << std::setw(5) << pass.find("changes")->as_int64() << " change(s) " << std::setw(9)
                << std::setprecision(3) << pass.find("ms")->as_number() << " ms\n";
    }
    const json::Value& fusion = *explain->find("fusion");
    std::cout << "fusion: " << fusion.find("groups")->as_int64() << " generated kernel(s) from "
              << fusion.find("members")->as_int64() << " node(s)\n";
  }
  std::map<std::string, int> by_op;
  for (const format::Layer& layer : model.layers) ++by_op[layer.op];
  std::cout << "layers: " << model.layers.size() << " (";
  bool first = true;
  for (const auto& [op, count] : by_op) {
    std::cout << (first ? "" : ", ") << op << " " << count;
    first = false;
  }
  std::cout << ")\n";
  int tactics = 0;
  for (const format::Layer& layer : model.layers) {
    const std::string tactic = layer.attrs.get_string_or("kiln_tactic", "");
    if (tactic.empty()) continue;
    if (tactics++ == 0) std::cout << "tactics:\n";
    std::cout << "  " << layer.op << " '" << layer.name << "': " << tactic << "\n";
  }
  if (tactics == 0) std::cout << "tactics: none recorded (cpu engines, or tactics chosen at first run)\n";
}

// Fails when `path` is a kiln engine file rather than an ONNX model (a common slip: the output of
// an earlier build passed back in).
void reject_engine_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[sizeof(format::schema::kMagic)] = {};
  if (!in.read(magic, sizeof(magic))) return;  // short or unreadable: the importer reports it
  if (std::equal(std::begin(magic), std::end(magic), std::begin(format::schema::kMagic))) {
    fail(ErrorCode::kInvalidArgument, path,
         ": this is a kiln engine, not an ONNX model (run it with kiln run or kiln bench, describe "
         "it with kiln inspect; build takes the .onnx file it came from)");
  }
}

Precision parse_precision_flag(const std::string& flag) {
  if (flag == "--fp32") return Precision::kFp32;
  if (flag == "--tf32") return Precision::kTf32;
  if (flag == "--fp16") return Precision::kFp16;
  return Precision::kBf16;
}

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
  return "?";
}

// "name:min=1x3x8x8,opt=2x3x8x8,max=4x3x8x8". Input names may contain ':' (e.g. "onnx::Add_0"),
// so the name ends at the last ':' that is followed by a range key.
InputProfile parse_profile(const std::string& text) {
  const std::string what = "--profile '" + text + "'";
  size_t split = std::string::npos;
  for (size_t pos = text.find(':'); pos != std::string::npos; pos = text.find(':', pos + 1)) {
    const std::string_view rest = std::string_view(text).substr(pos + 1);
    if (rest.starts_with("min=") || rest.starts_with("opt=") || rest.starts_with("max=")) {
      split = pos;
    }
  }
  if (split == std::string::npos || split == 0) {
    throw UsageError(what + ": expected NAME:min=DIMS,opt=DIMS,max=DIMS");
  }
  InputProfile profile;
  profile.name = text.substr(0, split);
  std::optional<Shape> min, opt, max;
  size_t start = split + 1;
  while (start <= text.size()) {
    const size_t end = text.find(',', start);
    const std::string part = text.substr(start, end == std::string::npos ? end : end - start);
    const size_t eq = part.find('=');
    const std::string key = part.substr(0, eq);
    if (eq == std::string::npos || (key != "min" && key != "opt" && key != "max")) {
      throw UsageError(what + ": expected min=DIMS, opt=DIMS or max=DIMS, got '" + part + "'");
    }
    std::optional<Shape>& slot = key == "min" ? min : key == "opt" ? opt : max;
    if (slot) throw UsageError(what + ": '" + key + "' given twice");
    slot = parse_dims(part.substr(eq + 1), what + " " + key);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (!min || !max) throw UsageError(what + ": both min= and max= are required");
  if (!opt) opt = min;
  if (min->size() != max->size() || opt->size() != min->size()) {
    throw UsageError(what + ": min, opt and max must have the same rank");
  }
  for (size_t d = 0; d < min->size(); ++d) {
    if ((*min)[d] > (*opt)[d] || (*opt)[d] > (*max)[d]) {
      throw UsageError(what + ": dimension " + std::to_string(d) + " needs min <= opt <= max");
    }
  }
  profile.min = *min;
  profile.opt = *opt;
  profile.max = *max;
  return profile;
}

}  // namespace

int build_command(std::span<const std::string> args) {
  BuilderConfig config;
  std::optional<std::string> model_path;
  std::optional<std::string> output_path;
  std::optional<std::string> precision_flag;
  bool verbose = false;
  bool explain_flag = false;

  ArgCursor cursor(args);
  while (cursor.next()) {
    const std::string& flag = cursor.flag();
    if (cursor.is_positional()) {
      if (model_path) cursor.reject();
      model_path = flag;
    } else if (flag == "-h" || flag == "--help") {
      std::cout << kBuildHelp;
      return 0;
    } else if (flag == "-o" || flag == "--output") {
      output_path = cursor.value();
    } else if (flag == "--plugins") {
      load_plugin_library(cursor.value());
    } else if (flag == "--fp32" || flag == "--tf32" || flag == "--fp16" || flag == "--bf16") {
      cursor.expect_no_value();
      if (precision_flag && *precision_flag != flag) {
        throw UsageError("conflicting precision options " + *precision_flag + " and " + flag);
      }
      precision_flag = flag;
      config.precision = parse_precision_flag(flag);
    } else if (flag == "--target") {
      config.target = cursor.value();
      if (config.target != "cpu" && config.target != "cuda") {
        throw UsageError("--target: expected cpu or cuda, got '" + config.target + "'");
      }
    } else if (flag == "--device") {
      const uint64_t device = parse_unsigned(cursor.value(), "--device");
      if (device > 1024) throw UsageError("--device: " + std::to_string(device) + " is too large");
      config.device = static_cast<int>(device);
    } else if (flag == "--cuda-arch") {
      std::string arch = cursor.value();
      if (arch.rfind("sm_", 0) == 0) arch = arch.substr(3);
      const uint64_t value = parse_unsigned(arch, "--cuda-arch");
      if (value < 50 || value > 1000) throw UsageError("--cuda-arch: expected e.g. 90 or sm_90, got '" + arch + "'");
      config.cuda_arch = static_cast<int>(value);
    } else if (flag == "--timing-cache") {
      config.timing_cache = cursor.value();
    } else if (flag == "--kernel-cache") {
      config.kernel_cache = cursor.value();
      if (config.kernel_cache.empty()) {
        throw UsageError("--kernel-cache: expected a directory or 'off', got ''");
      }
    } else if (flag == "--workspace") {
      config.workspace_limit = parse_unsigned(cursor.value(), "--workspace", true);
    } else if (flag == "--memory-limit") {
      config.memory_limit = parse_unsigned(cursor.value(), "--memory-limit", true);
      if (config.memory_limit == 0) throw UsageError("--memory-limit: expected a positive byte count");
    } else if (flag == "--profile") {
      InputProfile profile = parse_profile(cursor.value());
      for (const InputProfile& existing : config.profiles) {
        if (existing.name == profile.name) {
          throw UsageError("--profile given twice for input '" + profile.name + "'");
        }
      }
      config.profiles.push_back(std::move(profile));
    } else if (flag == "--no-host-layers") {
      cursor.expect_no_value();
      config.allow_host_layers = false;
    } else if (flag == "--explain") {
      cursor.expect_no_value();
      config.explain = true;
      explain_flag = true;
    } else if (flag == "--verbose" || flag == "-v") {
      cursor.expect_no_value();
      verbose = true;
      config.explain = true;
    } else if (flag == "--metadata") {
      config.metadata_json = cursor.value();
      const size_t first = config.metadata_json.find_first_not_of(" \t\r\n");
      if (!is_valid_json(config.metadata_json) || first == std::string::npos ||
          config.metadata_json[first] != '{') {
        throw UsageError("--metadata: expected a JSON object, got '" + config.metadata_json + "'");
      }
    } else {
      cursor.reject();
    }
  }
  if (!model_path) throw UsageError("missing the ONNX model to build");
  if (!output_path) throw UsageError("missing -o OUT.kiln");
  reject_engine_file(*model_path);

  const auto start = std::chrono::steady_clock::now();
  const std::vector<uint8_t> engine = build_engine_from_onnx_file(*model_path, config);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const auto write_start = std::chrono::steady_clock::now();
  std::ofstream out(*output_path, std::ios::binary | std::ios::trunc);
  if (!out) fail(ErrorCode::kIoError, *output_path, ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(engine.data()),
            static_cast<std::streamsize>(engine.size()));
  out.close();
  if (!out) fail(ErrorCode::kIoError, *output_path, ": write failed");
  const double write_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - write_start).count();

  std::cout << "built " << *output_path << " from " << *model_path << ": " << engine.size()
            << " bytes, target " << config.target << ", precision "
            << precision_name(config.precision) << ", " << format_seconds(seconds) << "\n";
  if (config.target != "cuda" && !verbose && !explain_flag) return 0;
  // The engine as written, read back once for what the build recorded in it.
  const format::EngineModel model =
      format::read_engine(std::make_shared<const std::vector<uint8_t>>(engine), *output_path);
  const json::Value metadata = json::parse(model.metadata_json);
  const json::Value* build = metadata.find("kiln_build");
  if (config.target == "cuda") warn_host_layers(build);
  if (verbose) print_verbose(model, build, seconds, write_seconds);
  if (explain_flag) print_explanation(build);
  return 0;
}

}  // namespace kiln::tools
