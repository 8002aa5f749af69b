// kiln run: execute an engine once on .npy (or random) inputs and save the outputs.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string_view>
#include <system_error>

#include "base/error.hpp"
#include "kiln/runtime.hpp"
#include "tools/cli_args.hpp"
#include "tools/cli_tensors.hpp"
#include "tools/commands.hpp"
#include "tools/npy.hpp"

namespace kiln::tools {
namespace {

constexpr std::string_view kRunHelp = R"(usage: kiln run ENGINE.kiln [options]

Run an engine once and print each output's name, dtype, shape and leading values.

options:
  --input NAME=FILE.npy   the value of input NAME; repeat per input. A float file is converted
                          to a float input of another width (and int to int), with a note.
  --random                inputs without --input get random values (floats in [-1, 1),
                          integers in [0, 4), bools 0/1); dynamic dims take their opt value
  --shapes NAME:DIMS[,NAME:DIMS...]
                          the shape of a random input, e.g. x:8x3x224x224 (dynamic engines: any
                          shape in the engine's range); repeat or separate with ','
  --seed N                seed of the random inputs (default 0)
  --output-dir DIR        write each output to DIR/<name>.npy (DIR is created; characters of
                          the name other than [A-Za-z0-9._-] become '_')
  --save-inputs           with --output-dir, also write the inputs used to DIR/<name>.npy
                          under an "input." prefix
  --threads N             CPU engines: threads one call's kernels split their work over
                          (default: the CPUs this process may use; 0 means the default)
  --no-cuda-graph         CUDA engines: launch the layers one by one instead of capturing them
                          into a CUDA graph (for debugging a kernel; same results)
  --plugins PATH          load the plugin library PATH (docs/plugins.md) before loading the
                          engine; repeat per library
  -h, --help              show this help

bfloat16 tensors are stored in .npy files as raw bits with dtype '<u2', float8 tensors as their
codes with dtype '|u1'.
)";

}  // namespace

int run_command(std::span<const std::string> args) {
  std::optional<std::string> engine_path;
  std::vector<InputFile> input_files;
  bool random_missing = false;
  bool save_inputs = false;
  bool cuda_graphs = true;
  uint64_t seed = 0;
  int threads = 0;
  std::optional<std::string> output_dir;
  std::vector<std::string> plugin_libraries;
  std::vector<InputShape> shapes;

  ArgCursor cursor(args);
  while (cursor.next()) {
    const std::string& flag = cursor.flag();
    if (cursor.is_positional()) {
      if (engine_path) cursor.reject();
      engine_path = flag;
    } else if (flag == "-h" || flag == "--help") {
      std::cout << kRunHelp;
      return 0;
    } else if (flag == "--input") {
      input_files.push_back(parse_input_option(cursor.value()));
    } else if (flag == "--shapes") {
      parse_shapes_option(cursor.value(), shapes);
    } else if (flag == "--random") {
      cursor.expect_no_value();
      random_missing = true;
    } else if (flag == "--save-inputs") {
      cursor.expect_no_value();
      save_inputs = true;
    } else if (flag == "--threads") {
      threads = parse_threads(cursor.value());
    } else if (flag == "--no-cuda-graph") {
      cursor.expect_no_value();
      cuda_graphs = false;
    } else if (flag == "--seed") {
      seed = parse_unsigned(cursor.value(), "--seed");
    } else if (flag == "--output-dir") {
      output_dir = cursor.value();
    } else if (flag == "--plugins") {
      plugin_libraries.push_back(cursor.value());
    } else {
      cursor.reject();
    }
  }
  if (!engine_path) throw UsageError("missing the engine file to run");
  if (save_inputs && !output_dir) throw UsageError("--save-inputs needs --output-dir");
  if (!shapes.empty() && !random_missing && input_files.empty()) {
    throw UsageError("--shapes sets the shape of random inputs: add --random (or --input files)");
  }

  for (const std::string& library : plugin_libraries) load_plugin_library(library);
  LoadedEngine loaded = load_engine(*engine_path);
  std::vector<OwnedInput> inputs = prepare_inputs(loaded, input_files, random_missing, seed, shapes);
  std::vector<NamedTensor> named = as_named_tensors(inputs);

  ExecutionContext context = loaded.engine.create_context();
  context.set_cuda_graphs(cuda_graphs);
  context.set_threads(threads);
  const auto start = std::chrono::steady_clock::now();
  std::vector<Tensor> outputs = context.execute(named);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  const std::vector<BindingInfo>& output_bindings = loaded.engine.outputs();
  if (outputs.size() != output_bindings.size()) {
    fail(ErrorCode::kInternal, "the engine returned ", outputs.size(), " outputs for ",
         output_bindings.size(), " output bindings");
  }
  if (output_dir) {
    std::error_code ec;
    std::filesystem::create_directories(*output_dir, ec);
    if (ec) fail(ErrorCode::kIoError, *output_dir, ": cannot create directory: ", ec.message());
  }
  for (const OwnedInput& input : inputs) {
    std::cout << "input  " << input.name << ": " << dtype_name(input.tensor.dtype) << ' '
              << shape_to_string(input.tensor.shape) << ' '
              << format_leading_values(input.tensor, 6) << '\n';
    if (output_dir && save_inputs) {
      const std::string path =
          (std::filesystem::path(*output_dir) / ("input." + file_name_for(input.name) + ".npy"))
              .string();
      write_npy(path, input.tensor.dtype, input.tensor.shape, input.tensor.bytes.data());
    }
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    const std::string& name = output_bindings[i].name;
    std::cout << "output " << name << ": " << dtype_name(out.dtype) << ' '
              << shape_to_string(out.shape) << ' ' << format_leading_values(out, 6) << '\n';
    if (output_dir) {
      const std::string path =
          (std::filesystem::path(*output_dir) / (file_name_for(name) + ".npy")).string();
      write_npy(path, out.dtype, out.shape, out.bytes.data());
      std::cout << "  wrote " << path << '\n';
    }
  }
  std::cout << "ran " << *engine_path << " (" << loaded.engine.backend() << ") in " << ms
            << " ms\n";
  return 0;
}

}  // namespace kiln::tools
