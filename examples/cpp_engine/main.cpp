// Deploying without torch: load an engine file with the kiln runtime alone (libkiln_runtime.so),
// run it on inputs read from .npy files, print the outputs and optionally save them as .npy.
//
// usage: kiln_engine_example ENGINE.kiln [INPUT.npy ...] [--output-dir DIR]
//
// One INPUT.npy per engine input, in the engine's input order. Without input files, every input
// gets a fixed pattern at its smallest accepted shape.
#include <kiln/runtime.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "npy.hpp"

namespace {

kiln::Tensor pattern_input(const kiln::BindingInfo& binding) {
  kiln::Tensor t;
  t.dtype = binding.dtype;
  t.shape = binding.min_shape;
  t.bytes.assign(static_cast<size_t>(t.numel()) * kiln::dtype_size(t.dtype), 0);
  if (t.dtype == kiln::DType::kFloat32) {
    float* values = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) values[i] = static_cast<float>(i % 8) * 0.25f - 1.0f;
  }
  return t;
}

void print_tensor(const std::string& name, const kiln::Tensor& t) {
  std::cout << name << " " << kiln::dtype_name(t.dtype) << kiln::shape_to_string(t.shape);
  if (t.dtype == kiln::DType::kFloat32) {
    const int64_t shown = std::min<int64_t>(t.numel(), 8);
    std::cout << ":";
    for (int64_t i = 0; i < shown; ++i)
      std::printf(" %.6g", static_cast<double>(t.data<float>()[i]));
    if (shown < t.numel()) std::cout << " ...";
  }
  std::cout << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::string output_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--output-dir" && i + 1 < argc) {
      output_dir = argv[++i];
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.empty()) {
    std::cerr << "usage: " << argv[0] << " ENGINE.kiln [INPUT.npy ...] [--output-dir DIR]\n";
    return 2;
  }
  try {
    // Verified before anything runs: a corrupt, newer-format or wrong-GPU file is a kiln::Error.
    const kiln::Engine engine = kiln::Engine::load_file(positional[0]);
    std::cout << "kiln runtime " << kiln::runtime_version() << ", engine format "
              << engine.format_version() << ", backend " << engine.backend() << "\n";

    const std::vector<kiln::BindingInfo>& bindings = engine.inputs();
    const size_t given = positional.size() - 1;
    if (given != 0 && given != bindings.size()) {
      std::cerr << "the engine has " << bindings.size() << " input(s), got " << given
                << " file(s)\n";
      return 2;
    }
    std::vector<kiln::Tensor> inputs;
    for (size_t i = 0; i < bindings.size(); ++i) {
      inputs.push_back(given ? example::read_npy(positional[i + 1], bindings[i].dtype)
                             : pattern_input(bindings[i]));
    }
    std::vector<kiln::NamedTensor> named;
    for (size_t i = 0; i < inputs.size(); ++i) named.push_back({bindings[i].name, inputs[i].ref()});

    // One context per thread; this program has one. execute() copies CUDA engines' inputs to the
    // GPU and the outputs back to host tensors.
    kiln::ExecutionContext context = engine.create_context();
    const std::vector<kiln::Tensor> outputs = context.execute(named);
    for (size_t o = 0; o < outputs.size(); ++o) {
      const std::string& name = engine.outputs()[o].name;
      print_tensor(name, outputs[o]);
      if (!output_dir.empty())
        example::write_npy(output_dir + "/" + std::to_string(o) + ".npy", outputs[o]);
    }
  } catch (const kiln::Error& e) {
    std::cerr << "kiln error (" << kiln::error_code_name(e.code()) << "): " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
