// kiln C++ API example: compile an ONNX model into an engine with the builder (libkiln), save it,
// load it with the runtime (libkiln_runtime) and run it from two threads, one ExecutionContext
// per thread, sharing the one immutable Engine.
//
// usage: kiln_cpp_example MODEL.onnx ENGINE.kiln
//
// Float32 inputs get a fixed pattern, other inputs zeros; dynamic dimensions take their minimum.
#include <kiln/builder.hpp>
#include <kiln/runtime.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

namespace {

// One tensor per engine input, at the smallest shape the engine accepts.
std::vector<kiln::Tensor> make_inputs(const kiln::Engine& engine) {
  std::vector<kiln::Tensor> tensors;
  for (const kiln::BindingInfo& binding : engine.inputs()) {
    kiln::Tensor t;
    t.dtype = binding.dtype;
    t.shape = binding.min_shape;
    t.bytes.assign(static_cast<size_t>(t.numel()) * kiln::dtype_size(t.dtype), 0);
    if (t.dtype == kiln::DType::kFloat32) {
      float* values = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) values[i] = static_cast<float>(i % 8) * 0.25f - 1.0f;
    }
    tensors.push_back(std::move(t));
  }
  return tensors;
}

std::vector<kiln::Tensor> run_once(const kiln::Engine& engine, std::vector<kiln::Tensor>& inputs) {
  std::vector<kiln::NamedTensor> named;
  for (size_t i = 0; i < inputs.size(); ++i) {
    named.push_back({engine.inputs()[i].name, inputs[i].ref()});
  }
  kiln::ExecutionContext context = engine.create_context();  // one per thread
  return context.execute(named);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " MODEL.onnx ENGINE.kiln\n";
    return 2;
  }
  try {
    // 1. Build (libkiln). fp32 on the CPU backend; dynamic dims get the default range.
    kiln::BuilderConfig config;
    config.metadata_json = R"({"example": "cpp_api"})";
    const std::vector<uint8_t> bytes = kiln::build_engine_from_onnx_file(argv[1], config);
    std::ofstream file(argv[2], std::ios::binary);
    file.write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    if (!file.flush()) {
      std::cerr << "cannot write " << argv[2] << "\n";
      return 1;
    }
    std::cout << "built " << argv[2] << " (" << bytes.size() << " bytes)\n";

    // 2. Load (libkiln_runtime only). The file is verified before anything runs.
    const kiln::Engine engine = kiln::Engine::load_file(argv[2]);
    std::cout << "engine: backend " << engine.backend() << ", format " << engine.format_version()
              << ", " << engine.num_layers() << " layers\n";
    for (const kiln::BindingInfo& b : engine.inputs()) {
      std::cout << "  input  " << b.name << " " << kiln::dtype_name(b.dtype)
                << kiln::shape_to_string(b.shape) << " min " << kiln::shape_to_string(b.min_shape)
                << " max " << kiln::shape_to_string(b.max_shape) << "\n";
    }

    // 3. Run from two threads; the Engine is shared, each thread has its own context.
    std::vector<kiln::Tensor> inputs = make_inputs(engine);
    std::vector<kiln::Tensor> results[2];
    std::thread workers[2];
    for (int w = 0; w < 2; ++w) {
      workers[w] = std::thread([&, w] {
        std::vector<kiln::Tensor> own_inputs = inputs;  // each thread binds its own buffers
        results[w] = run_once(engine, own_inputs);
      });
    }
    for (std::thread& worker : workers) worker.join();

    for (size_t o = 0; o < results[0].size(); ++o) {
      const kiln::Tensor& out = results[0][o];
      std::cout << "  output " << engine.outputs()[o].name << " " << kiln::dtype_name(out.dtype)
                << kiln::shape_to_string(out.shape);
      if (out.dtype == kiln::DType::kFloat32) {
        std::cout << ":";
        for (int64_t i = 0; i < out.numel() && i < 8; ++i)
          std::printf(" %.4f", out.data<float>()[i]);
      }
      std::cout << "\n";
    }
    const bool same = results[0].size() == results[1].size() && [&] {
      for (size_t o = 0; o < results[0].size(); ++o) {
        if (results[0][o].bytes != results[1][o].bytes) return false;
      }
      return true;
    }();
    std::cout << "both threads agree: " << (same ? "yes" : "NO") << "\n";

    // 4. Errors are kiln::Error with a code and a message naming the problem.
    try {
      engine.create_context().execute({});
    } catch (const kiln::Error& e) {
      std::cout << "execute without inputs: " << kiln::error_code_name(e.code()) << ": " << e.what()
                << "\n";
    }
    return same ? 0 : 1;
  } catch (const kiln::Error& e) {
    std::cerr << "kiln error (" << kiln::error_code_name(e.code()) << "): " << e.what() << "\n";
    return 1;
  }
}
