// kiln compare: run an engine and compare its outputs with saved ones (.npy files or an .npz).
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <string_view>

#include "base/error.hpp"
#include "base/host_tensor.hpp"
#include "kiln/runtime.hpp"
#include "tools/cli_args.hpp"
#include "tools/cli_tensors.hpp"
#include "tools/commands.hpp"
#include "tools/json_writer.hpp"
#include "tools/npy.hpp"
#include "tools/npz.hpp"

namespace kiln::tools {
namespace {

constexpr std::string_view kCompareHelp = R"(usage: kiln compare ENGINE.kiln --reference DIR|FILE.npz [options]

Run an engine once and compare each output with a saved one: DIR/<name>.npy (the files
`kiln run --output-dir` writes, names sanitised the same way) or the array <name> of an .npz
archive (np.savez). For each output it prints the largest absolute and relative error, the mean
absolute error and how many elements are outside the tolerance; NaN matches NaN only.
(Comparing with ONNX Runtime needs Python: python -m kiln.compare MODEL.onnx ENGINE.kiln.)

options:
  --reference PATH        the saved outputs (required)
  --input NAME=FILE.npy   the value of input NAME; repeat per input (the inputs the reference
                          outputs were computed from)
  --random                inputs without --input get random values (see kiln run --help)
  --seed N                seed of the random inputs (default 0)
  --shapes NAME:DIMS[,NAME:DIMS...]
                          the shape of a random input of a dynamic engine
  --atol X                absolute tolerance (default 1e-5)
  --rtol X                relative tolerance (default 1e-5): an element passes when
                          |got - want| <= atol + rtol * |want|
  --threads N             CPU engines: threads one call's kernels use (default: all CPUs)
  --json                  print the results as one JSON object
  --plugins PATH          load the plugin library PATH before loading the engine
  -h, --help              show this help

Exit status: 0 when every output is within tolerance, 1 when one is not (or on a runtime error),
2 on a usage error.
)";

struct OutputError {
  std::string name;
  std::string problem;  // a shape or dtype mismatch; empty when the values were compared
  double max_abs = 0.0;
  double max_rel = 0.0;
  double mean_abs = 0.0;
  int64_t mismatches = 0;
  int64_t elements = 0;
  bool passed() const { return problem.empty() && mismatches == 0; }
};

OutputError compare_output(const std::string& name, const Tensor& got, const Tensor& want,
                           double atol, double rtol) {
  OutputError e{name, "", 0, 0, 0, 0, got.numel()};
  if (got.shape != want.shape) {
    e.problem = "shape " + shape_to_string(got.shape) + ", reference " + shape_to_string(want.shape);
    return e;
  }
  const TensorView a{got.dtype, got.shape, const_cast<uint8_t*>(got.bytes.data())};
  const TensorView b{want.dtype, want.shape, const_cast<uint8_t*>(want.bytes.data())};
  double sum_abs = 0.0;
  for (int64_t i = 0; i < e.elements; ++i) {
    const double x = read_as_double(a, i);
    const double y = read_as_double(b, i);
    if (std::isnan(x) || std::isnan(y)) {
      if (std::isnan(x) != std::isnan(y)) {
        ++e.mismatches;
        e.max_abs = e.max_rel = std::numeric_limits<double>::infinity();
      }
      continue;
    }
    const double diff = x == y ? 0.0 : std::fabs(x - y);  // equal infinities differ by 0
    sum_abs += diff;
    e.max_abs = std::max(e.max_abs, diff);
    if (diff > 0.0) e.max_rel = std::max(e.max_rel, diff / std::max(std::fabs(y), 1e-30));
    if (!(diff <= atol + rtol * std::fabs(y))) ++e.mismatches;
  }
  e.mean_abs = e.elements > 0 ? sum_abs / static_cast<double>(e.elements) : 0.0;
  return e;
}

// The reference outputs by engine output name.
std::map<std::string, Tensor> read_references(const std::string& path, const std::vector<BindingInfo>& outputs) {
  std::map<std::string, Tensor> references;
  if (std::filesystem::is_directory(path)) {
    for (const BindingInfo& output : outputs) {
      const std::string file = (std::filesystem::path(path) / (file_name_for(output.name) + ".npy")).string();
      if (!std::filesystem::exists(file)) {
        fail(ErrorCode::kNotFound, "--reference ", path, ": no ", file_name_for(output.name), ".npy for output '",
             output.name, "'");
      }
      references[output.name] = read_npy(file);
    }
    return references;
  }
  std::map<std::string, Tensor> arrays = read_npz(path);
  for (const BindingInfo& output : outputs) {
    auto it = arrays.find(output.name);
    if (it == arrays.end()) it = arrays.find(file_name_for(output.name));
    if (it == arrays.end()) {
      std::string names;
      for (const auto& [name, array] : arrays) names += (names.empty() ? "" : ", ") + name;
      fail(ErrorCode::kNotFound, "--reference ", path, ": no array for output '", output.name, "' (it holds: ",
           names, ")");
    }
    references[output.name] = std::move(it->second);
  }
  return references;
}

double parse_tolerance(const std::string& text, const std::string& what) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(value >= 0.0) || std::isinf(value)) {
    throw UsageError(what + ": expected a non-negative number, got '" + text + "'");
  }
  return value;
}

}  // namespace

int compare_command(std::span<const std::string> args) {
  std::optional<std::string> engine_path;
  std::optional<std::string> reference;
  std::vector<InputFile> input_files;
  std::vector<InputShape> shapes;
  bool random_missing = false;
  bool json = false;
  uint64_t seed = 0;
  int threads = 0;
  double atol = 1e-5;
  double rtol = 1e-5;

  ArgCursor cursor(args);
  while (cursor.next()) {
    const std::string& flag = cursor.flag();
    if (cursor.is_positional()) {
      if (engine_path) cursor.reject();
      engine_path = flag;
    } else if (flag == "-h" || flag == "--help") {
      std::cout << kCompareHelp;
      return 0;
    } else if (flag == "--reference") {
      reference = cursor.value();
    } else if (flag == "--input") {
      input_files.push_back(parse_input_option(cursor.value()));
    } else if (flag == "--random") {
      cursor.expect_no_value();
      random_missing = true;
    } else if (flag == "--seed") {
      seed = parse_unsigned(cursor.value(), "--seed");
    } else if (flag == "--shapes") {
      parse_shapes_option(cursor.value(), shapes);
    } else if (flag == "--atol") {
      atol = parse_tolerance(cursor.value(), "--atol");
    } else if (flag == "--rtol") {
      rtol = parse_tolerance(cursor.value(), "--rtol");
    } else if (flag == "--threads") {
      threads = parse_threads(cursor.value());
    } else if (flag == "--json") {
      cursor.expect_no_value();
      json = true;
    } else if (flag == "--plugins") {
      load_plugin_library(cursor.value());
    } else {
      cursor.reject();
    }
  }
  if (!engine_path) throw UsageError("missing the engine file to compare");
  if (!reference) throw UsageError("missing --reference DIR|FILE.npz");

  LoadedEngine loaded = load_engine(*engine_path);
  const std::map<std::string, Tensor> references = read_references(*reference, loaded.engine.outputs());
  std::vector<OwnedInput> inputs = prepare_inputs(loaded, input_files, random_missing, seed, shapes);
  std::vector<NamedTensor> named = as_named_tensors(inputs);
  ExecutionContext context = loaded.engine.create_context();
  context.set_threads(threads);
  const std::vector<Tensor> outputs = context.execute(named);

  std::vector<OutputError> errors;
  bool all_passed = true;
  for (size_t o = 0; o < outputs.size(); ++o) {
    const std::string& name = loaded.engine.outputs()[o].name;
    errors.push_back(compare_output(name, outputs[o], references.at(name), atol, rtol));
    all_passed = all_passed && errors.back().passed();
  }
  if (json) {
    JsonWriter out;
    out.begin_object();
    out.key("engine").value(*engine_path);
    out.key("reference").value(*reference);
    out.key("atol").value(atol);
    out.key("rtol").value(rtol);
    out.key("passed").value(all_passed);
    out.key("outputs").begin_array();
    for (const OutputError& e : errors) {
      out.begin_object();
      out.key("name").value(e.name);
      out.key("passed").value(e.passed());
      if (!e.problem.empty()) {
        out.key("problem").value(e.problem);
      } else {
        out.key("max_abs_error").value(e.max_abs);
        out.key("max_rel_error").value(e.max_rel);
        out.key("mean_abs_error").value(e.mean_abs);
        out.key("mismatches").value(e.mismatches);
        out.key("elements").value(e.elements);
      }
      out.end_object();
    }
    out.end_array();
    out.end_object();
    std::cout << out.str() << '\n';
    return all_passed ? 0 : 1;
  }
  std::cout << "compare " << *engine_path << " with " << *reference << " (atol " << atol << ", rtol " << rtol
            << ")\n";
  for (const OutputError& e : errors) {
    std::cout << (e.passed() ? "PASS " : "FAIL ") << e.name << ": ";
    if (!e.problem.empty()) {
      std::cout << e.problem << '\n';
      continue;
    }
    std::cout << std::scientific << std::setprecision(3) << "max abs " << e.max_abs << ", max rel " << e.max_rel
              << ", mean abs " << e.mean_abs << ", " << e.mismatches << " of " << e.elements
              << " outside tolerance\n";
  }
  std::cout << (all_passed ? "all outputs match\n" : "outputs differ\n");
  return all_passed ? 0 : 1;
}

}  // namespace kiln::tools
