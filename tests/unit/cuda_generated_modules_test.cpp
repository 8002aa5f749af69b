// Generated kernel modules on the GPU: a cubin compiled with NVRTC for the current GPU, loaded once
// with cudaLibraryLoadData and launched with cudaLaunchKernel on every GPU of that architecture
// with the same object; refused cubins and missing names give kiln::Error; an engine carrying a
// module loads it and runs. Compiled only with KILN_WITH_CUDA; skips (saying why) without a GPU.
#include <gtest/gtest.h>

#if KILN_WITH_CUDA

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "backends/cuda/generated_modules.hpp"
#include "codegen/nvrtc_compiler.hpp"
#include "fake_cubin.hpp"
#include "format/engine_io.hpp"
#include "kiln/runtime.hpp"
#include "nvrtc_test_support.hpp"

namespace kiln::cuda {
namespace {

int gpu_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

int sm_arch_of(int device) {
  cudaDeviceProp props{};
  EXPECT_EQ(cudaGetDeviceProperties(&props, device), cudaSuccess);
  return props.major * 10 + props.minor;
}

#define SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                  \
    if (gpu_count() == 0) GTEST_SKIP() << "no CUDA GPU here (cudaGetDeviceCount is 0)"; \
  } while (0)

constexpr const char* kModuleName = "test_module";
const std::string kSource =
    "extern \"C\" __global__ void axpb(float* x, float a, float b, int n) {\n"
    "  const int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < n) x[i] = a * x[i] + b;\n"
    "}\n"
    "extern \"C\" __global__ void twice(float* x, int n) {\n"
    "  const int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < n) x[i] *= 2.0f;\n"
    "}\n";

format::KernelModule compile_module(const std::string& name, int sm_arch) {
  const codegen::CompiledModule compiled = codegen::compile_cuda(name, kSource, sm_arch);
  return format::KernelModule{name, sm_arch, compiled.compiler, kSource, compiled.cubin};
}

// Runs axpb(x, a, b) on `device` through cudaLaunchKernel and returns x.
std::vector<float> run_axpb(cudaKernel_t kernel, int device, std::vector<float> x, float a,
                            float b) {
  EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
  const size_t bytes = x.size() * sizeof(float);
  void* buffer = nullptr;
  EXPECT_EQ(cudaMalloc(&buffer, bytes), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(buffer, x.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  int n = static_cast<int>(x.size());
  void* args[] = {&buffer, &a, &b, &n};
  EXPECT_EQ(cudaLaunchKernel(reinterpret_cast<const void*>(kernel), dim3((n + 127) / 128),
                             dim3(128), args, 0, nullptr),
            cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(x.data(), buffer, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(buffer);
  return x;
}

TEST(CudaGeneratedModules, OneObjectLaunchesOnEveryGpuOfItsArchitecture) {
  SKIP_WITHOUT_GPU();
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  const int arch = sm_arch_of(0);
  const format::KernelModule module = compile_module(kModuleName, arch);
  const GeneratedModules modules(std::span<const format::KernelModule>(&module, 1));
  EXPECT_EQ(modules.size(), 1u);
  const cudaKernel_t kernel = modules.kernel(kModuleName, "axpb");
  ASSERT_NE(kernel, nullptr);
  EXPECT_NE(modules.kernel(kModuleName, "twice"), kernel);
  std::vector<int> devices = {0};
  for (int d = 1; d < gpu_count() && devices.size() < 2; ++d) {
    if (sm_arch_of(d) == arch) devices.push_back(d);
  }
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i) - 7.0f;
  for (int device : devices) {
    SCOPED_TRACE("cuda:" + std::to_string(device));
    const std::vector<float> y = run_axpb(kernel, device, x, 3.0f, -1.5f);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], 3.0f * x[i] - 1.5f) << i;
  }
  if (devices.size() < 2) {
    std::printf("[   NOTE   ] one GPU of sm_%d here: the second-GPU launch did not run\n", arch);
  }
  cudaSetDevice(0);
}

TEST(CudaGeneratedModules, MissingModuleOrFunctionIsNotFoundListingWhatThereIs) {
  SKIP_WITHOUT_GPU();
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  const format::KernelModule module = compile_module(kModuleName, sm_arch_of(0));
  const GeneratedModules modules(std::span<const format::KernelModule>(&module, 1));
  try {
    modules.kernel(kModuleName, "thrice");
    FAIL() << "found a function the module does not have";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kNotFound) << message;
    for (const char* part : {"'test_module' has no function 'thrice'", "'axpb'", "'twice'"}) {
      EXPECT_NE(message.find(part), std::string::npos) << part << " not in: " << message;
    }
  }
  try {
    modules.kernel("other_module", "axpb");
    FAIL() << "found a module the engine does not have";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound) << e.what();
    EXPECT_NE(std::string(e.what()).find("'other_module'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("its modules: 'test_module'"), std::string::npos)
        << e.what();
  }
  const GeneratedModules none({});
  EXPECT_EQ(none.size(), 0u);
  EXPECT_THROW(none.kernel(kModuleName, "axpb"), Error);
}

TEST(CudaGeneratedModules, RefusedCubinsAreKilnErrorsNamingTheModule) {
  SKIP_WITHOUT_GPU();
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  const int arch = sm_arch_of(0);
  auto expect_refused = [&](const format::KernelModule& module,
                           std::initializer_list<ErrorCode> codes) {
    // A loadable module first: the refusal must name the bad one, not the first in the list.
    const format::KernelModule good = compile_module("good_module", sm_arch_of(0));
    const std::vector<format::KernelModule> both = {good, module};
    try {
      const GeneratedModules modules(both);
      ADD_FAILURE() << "the driver accepted " << module.name;
    } catch (const Error& e) {
      EXPECT_NE(std::find(codes.begin(), codes.end(), e.code()), codes.end())
          << error_code_name(e.code()) << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("'" + module.name + "'"), std::string::npos) << e.what();
    }
    // The context is still usable afterwards.
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  };
  // An ELF header without any section: no code at all.
  expect_refused({"header_only", arch, "", "", kiln::testing::fake_cubin(0, 64)},
                 {ErrorCode::kCorruptFile, ErrorCode::kIncompatible});
  // A real cubin whose ELF header claims another machine.
  format::KernelModule other_machine = compile_module("other_machine", arch);
  other_machine.cubin[18] = 62;  // EM_X86_64
  expect_refused(other_machine, {ErrorCode::kCorruptFile, ErrorCode::kIncompatible});
  // A real cubin for another major architecture: no code for this GPU.
  const int foreign_arch = arch / 10 == 8 ? 90 : 80;
  expect_refused(compile_module("foreign_arch", foreign_arch), {ErrorCode::kIncompatible});
}

// y = relu(x) where the Relu layer names a generated module: the executor loads the engine's
// modules at bind time and the layer still runs (its built-in kernel ignores the attribute).
std::vector<uint8_t> relu_engine_with_module(const format::KernelModule& module) {
  format::EngineModel m;
  m.target = format::Target{"cuda", module.sm_arch, ""};
  m.tensors = {{"x", DType::kFloat32, {2, 4}, format::TensorKind::kInput, 0, 0},
               {"y", DType::kFloat32, {2, 4}, format::TensorKind::kOutput, 0, 0}};
  m.inputs = {{"x", 0, {{2, 2, 2}, {4, 4, 4}}}};
  m.outputs = {{"y", 1, {}}};
  format::Layer relu{"relu0", "Relu", {0}, {1}, {}};
  relu.attrs.set(format::kKernelModuleAttribute, Attribute::of_string(module.name));
  m.layers = {relu};
  m.memory_plan.offsets.assign(2, format::MemoryPlan::kNoOffset);
  m.memory_plan.first_use = {0, 0};
  m.memory_plan.last_use = {0, 0};
  m.kernels = {module};
  return format::write_engine(m);
}

TEST(CudaGeneratedModules, EngineLoadsItsModulesAndRuns) {
  SKIP_WITHOUT_GPU();
  KILN_SKIP_OR_FAIL_WITHOUT_NVRTC();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  const std::vector<uint8_t> bytes =
      relu_engine_with_module(compile_module(kModuleName, sm_arch_of(0)));
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  EXPECT_EQ(engine.backend(), "cuda");
  EXPECT_EQ(engine.format_version(), "1.1");
  ExecutionContext context = engine.create_context();
  std::vector<float> x = {-2, -1, 0, 1, 2, 3, -4, 5};
  const std::vector<NamedTensor> inputs = {{"x", TensorRef{DType::kFloat32, {2, 4}, x.data()}}};
  for (int call = 0; call < 3; ++call) {  // eager, captured, replayed
    const std::vector<Tensor> out = context.execute(inputs);
    ASSERT_EQ(out.size(), 1u);
    std::vector<float> y(8);
    std::memcpy(y.data(), out[0].bytes.data(), sizeof(float) * y.size());
    EXPECT_EQ(y, (std::vector<float>{0, 0, 0, 1, 2, 3, 0, 5})) << "call " << call;
  }

  // The same engine with a module the driver refuses fails at load, naming the module.
  const format::KernelModule broken{"broken_module", sm_arch_of(0), "", "",
                                    kiln::testing::fake_cubin(0, 64)};
  const std::vector<uint8_t> broken_bytes = relu_engine_with_module(broken);
  try {
    Engine::load_bytes(broken_bytes.data(), broken_bytes.size());
    FAIL() << "an engine with an unloadable module loaded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("generated kernel module 'broken_module'"), std::string::npos)
        << message;
    EXPECT_NE(message.find("<bytes>"), std::string::npos) << message;  // the engine's source
  }
}

}  // namespace
}  // namespace kiln::cuda

#endif  // KILN_WITH_CUDA
