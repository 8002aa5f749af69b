// Deploying with libtorch: load a TorchScript program that calls kiln engines and run it.
//
// usage: kiln_torch_example MODEL.ts INPUTS.pt [OUTPUTS.pt]
//
// INPUTS.pt holds the forward arguments as a list of tensors saved from Python with
// torch.save([x, ...], "inputs.pt"); OUTPUTS.pt receives the outputs (a tensor, or a list/tuple
// of tensors) for torch.load. The program never names kiln: linking libkiln_torch.so (see
// CMakeLists.txt) is what lets torch::jit::load resolve torch.classes.kiln.Engine.
// With KILN_EXAMPLE_REPEAT=N it also times N more forward calls and prints the median host time
// per call (benchmarks/bench_overhead.py uses it).
#include <torch/script.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

void print_tensor(const std::string& name, const at::Tensor& t) {
  std::cout << name << " " << t.scalar_type() << t.sizes() << ":";
  const at::Tensor flat = t.detach().to(at::kCPU).to(at::kDouble).reshape({-1});
  const int64_t shown = std::min<int64_t>(flat.numel(), 8);
  for (int64_t i = 0; i < shown; ++i) std::cout << " " << flat[i].item<double>();
  if (shown < flat.numel()) std::cout << " ...";
  std::cout << "\n";
}

// The runtime's version, through the op libkiln_torch.so registered
// (torch.ops.kiln.runtime_version).
std::string kiln_runtime_version() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("kiln::runtime_version", "")
                .typed<std::string()>();
  return op.call();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::cerr << "usage: " << argv[0] << " MODEL.ts INPUTS.pt [OUTPUTS.pt]\n";
    return 2;
  }
  try {
    // Resolves torch.classes.kiln.Engine, which libkiln_torch.so registered when it was loaded.
    torch::jit::Module module = torch::jit::load(argv[1]);
    module.eval();
    std::cout << "kiln runtime " << kiln_runtime_version() << "\n";

    const c10::IValue loaded = torch::jit::pickle_load(read_file(argv[2]));
    std::vector<c10::IValue> inputs;
    if (loaded.isTensor()) {
      inputs.push_back(loaded);
    } else {
      for (const c10::IValue& value : loaded.toListRef()) inputs.push_back(value);
    }

    c10::InferenceMode inference;
    const c10::IValue result = module.forward(inputs);
    std::vector<at::Tensor> outputs;
    if (result.isTensor()) {
      outputs.push_back(result.toTensor());
    } else if (result.isTuple()) {
      for (const c10::IValue& value : result.toTupleRef().elements())
        outputs.push_back(value.toTensor());
    } else {
      for (const c10::IValue& value : result.toListRef()) outputs.push_back(value.toTensor());
    }
    for (size_t o = 0; o < outputs.size(); ++o)
      print_tensor("output " + std::to_string(o), outputs[o]);

    if (const char* repeat = std::getenv("KILN_EXAMPLE_REPEAT")) {
      const int count = std::max(1, std::atoi(repeat));
      std::vector<double> micros;
      for (int i = 0; i < count; ++i) {
        const auto start = std::chrono::steady_clock::now();
        module.forward(inputs);
        micros.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(micros.begin(), micros.end());
      std::cout << "per call: " << micros[micros.size() / 2] << " us (median of " << count << ")\n";
    }

    if (argc == 4) {
      // A tuple of CPU tensors: what torch.load(..., weights_only=True) accepts.
      std::vector<c10::IValue> host;
      for (const at::Tensor& t : outputs) host.emplace_back(t.to(at::kCPU));
      const std::vector<char> bytes =
          torch::jit::pickle_save(c10::ivalue::Tuple::create(std::move(host)));
      std::ofstream file(argv[3], std::ios::binary);
      file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!file.flush()) throw std::runtime_error(std::string("cannot write ") + argv[3]);
    }
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
