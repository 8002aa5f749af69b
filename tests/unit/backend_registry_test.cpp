// The backend registry (src/backends/backend_registry.hpp) and the Backend interface of the
// built-in backends: lookup by name, the messages for targets this runtime cannot run, and
// supports() answered from the kernel registries.
#include "backends/backend_registry.hpp"
#include "backends/backend_library.hpp"
#include "backends/kernel_support.hpp"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "base/error.hpp"
#include "engine_model_builder.hpp"

namespace kiln::backends {
namespace {

using format::TensorKind;
using kiln::testing::add_tensor;
using kiln::testing::layer;

#if KILN_WITH_CUDA
constexpr bool kCudaBuild = true;
#else
constexpr bool kCudaBuild = false;
#endif

bool has_name(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Runs `call`, which must throw kiln::Error; returns it.
template <typename Call>
Error thrown_by(Call&& call) {
  try {
    call();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no kiln::Error was thrown";
  return Error(ErrorCode::kInternal, "none");
}

TEST(BackendRegistry, FindsTheBuiltInBackendsByName) {
  const Backend* cpu = find_backend("cpu");
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->name(), "cpu");
  EXPECT_EQ(&host_backend(), cpu);
  EXPECT_EQ(find_backend("no-such-backend"), nullptr);
  const std::vector<std::string> names = backend_names();
  EXPECT_EQ(names.front(), "cpu");
  EXPECT_EQ(has_name(names, "cuda"), kCudaBuild);
  EXPECT_EQ(find_backend("cuda") != nullptr, kCudaBuild);
}

TEST(BackendRegistry, AnUnknownTargetNamesTheBackendsThisRuntimeHas) {
  format::Target target;
  target.backend = "tpu";
  const Error e = thrown_by([&] { backend_for(target, "model.kiln"); });
  EXPECT_EQ(e.code(), ErrorCode::kIncompatible);
  const std::string message = e.what();
  EXPECT_NE(message.find("model.kiln: engine targets unknown backend 'tpu'; this runtime has backends: cpu"),
            std::string::npos)
      << message;
}

TEST(BackendRegistry, ACudaTargetWithoutTheCudaBackendSaysTheRuntimeWasBuiltWithoutCuda) {
  format::Target target;
  target.backend = "cuda";
  target.sm_arch = 90;
  target.device_name = "NVIDIA H100";
  if (kCudaBuild) {
    EXPECT_EQ(&backend_for(target, "model.kiln"), find_backend("cuda"));
    return;
  }
  const Error e = thrown_by([&] { backend_for(target, "model.kiln"); });
  EXPECT_EQ(e.code(), ErrorCode::kDeviceError);
  const std::string message = e.what();
  EXPECT_NE(message.find("model.kiln: engine targets cuda sm_90 (NVIDIA H100) but this kiln runtime was built "
                         "without CUDA (its backends: cpu"),
            std::string::npos)
      << message;
}

TEST(BackendRegistry, WhyAbsentSaysWhyABackendCannotBeUsed) {
  EXPECT_EQ(why_absent("cpu"), "");
  EXPECT_EQ(why_absent("no-such-backend"), "has no backend 'no-such-backend'");
  // In a CUDA build the library beside the runtime loads here (it needs no GPU to load).
  if (kCudaBuild) {
    EXPECT_EQ(why_absent("cuda"), "");
  } else {
    EXPECT_EQ(why_absent("cuda"), "was built without CUDA");
  }
}

// The loader of backend libraries, on libraries that are not one: each error names the file, says
// what went wrong, and what the backend needs.
TEST(BackendLibrary, AMissingLibraryIsAnErrorNamingItAndWhatTheBackendNeeds) {
  const LoadedBackend loaded =
      load_backend_library({"tpu", "libkiln_backend_tpu_absent.so", "kiln_backend_tpu_entry", "a TPU driver"});
  EXPECT_EQ(loaded.backend, nullptr);
  for (const char* part : {"libkiln_backend_tpu_absent.so", "cannot open shared object file",
                           "beside ", "libkiln_runtime.so", "it needs a TPU driver"}) {
    EXPECT_NE(loaded.error.find(part), std::string::npos) << part << " not in: " << loaded.error;
  }
}

TEST(BackendLibrary, ALibraryWithoutTheEntryPointIsAnErrorNamingTheEntryPoint) {
  // The runtime library itself: a real shared library without a backend entry point, already
  // loaded, so the dlopen/dlclose of the attempt runs no constructor and unloads nothing (a plugin
  // library here would register its creators and then be unloaded under the registry).
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<const void*>(&find_backend), &info), 0);
  const std::string runtime_path = info.dli_fname;
  const LoadedBackend loaded = load_backend_library({"tpu", runtime_path, "kiln_backend_tpu_entry", "x"});
  EXPECT_EQ(loaded.backend, nullptr);
  EXPECT_NE(loaded.error.find(runtime_path + " has no entry point kiln_backend_tpu_entry"), std::string::npos)
      << loaded.error;
}

TEST(BackendLibrary, TheCudaBackendLibraryLoadsAndRefusesAnotherName) {
  if (!kCudaBuild) GTEST_SKIP() << "built without CUDA: there is no libkiln_backend_cuda.so";
  const LoadedBackend loaded =
      load_backend_library({"cuda", "libkiln_backend_cuda.so", "kiln_backend_cuda_entry", "CUDA"});
  ASSERT_NE(loaded.backend, nullptr) << loaded.error;
  EXPECT_EQ(loaded.backend, find_backend("cuda"));  // one library, one backend, however it is reached
  const LoadedBackend renamed =
      load_backend_library({"other", "libkiln_backend_cuda.so", "kiln_backend_cuda_entry", "CUDA"});
  EXPECT_EQ(renamed.backend, nullptr);
  EXPECT_NE(renamed.error.find("holds a backend named 'cuda', not 'other'"), std::string::npos) << renamed.error;
}

// A backend that runs nothing, to register beside the built-in ones.
class NullBackend final : public Backend {
 public:
  const std::string& name() const override { return name_; }
  void check_device(const std::string&, const DeviceSpec&) const override {}
  std::string why_unsupported(const format::EngineModel&, const format::Layer&) const override {
    return "a test backend runs nothing";
  }
  void check_loadable(const EnginePlan&) const override {}
  std::shared_ptr<const BoundEngine> bind(const EnginePlan&, const DeviceSpec&) const override { return nullptr; }
  std::unique_ptr<BackendContext> create_context(const EnginePlan&, std::shared_ptr<const BoundEngine>) const override {
    return nullptr;
  }
  void* allocate(int, size_t) const override { return nullptr; }
  void release(int, void*) const noexcept override {}
  void copy_from_host(int, void*, const void*, size_t) const override {}
  void copy_to_host(int, void*, const void*, size_t) const override {}
  void synchronize(int, void*) const override {}
  PointerPlace locate(const void*) const override { return {}; }
  double peak_memory_bandwidth_gb_per_s(int) const override { return 0.0; }

  explicit NullBackend(std::string name) : name_(std::move(name)) {}

 private:
  std::string name_;
};

TEST(BackendRegistry, RegistersABackendOnceUnderItsName) {
  static const NullBackend extra("registry-test-null");
  register_backend(extra);
  EXPECT_EQ(find_backend("registry-test-null"), &extra);
  EXPECT_TRUE(has_name(backend_names(), "registry-test-null"));
  static const NullBackend second("registry-test-null");
  const Error twice = thrown_by([&] { register_backend(second); });
  EXPECT_EQ(twice.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(find_backend("registry-test-null"), &extra);
  static const NullBackend cpu_again("cpu");
  EXPECT_EQ(thrown_by([&] { register_backend(cpu_again); }).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(find_backend("cpu"), &host_backend());
}

// One layer `op` reading and writing `dtype` tensors (with an int64 second output when
// `with_indices`).
format::EngineModel one_layer_model(const std::string& op, DType dtype, bool with_indices = false) {
  format::EngineModel m;
  const int32_t x = add_tensor(m, "x", dtype, {2, 3}, TensorKind::kInput);
  std::vector<int32_t> outputs{add_tensor(m, "y", dtype, {2, 3}, TensorKind::kOutput)};
  if (with_indices) outputs.push_back(add_tensor(m, "indices", DType::kInt64, {2, 3}, TensorKind::kOutput));
  m.layers.push_back(layer("node", op, {x}, outputs));
  return m;
}

TEST(BackendSupports, TheCpuBackendSupportsTheOpsOfItsKernelRegistry) {
  const Backend& cpu = *find_backend("cpu");
  const format::EngineModel relu = one_layer_model("Relu", DType::kFloat32);
  EXPECT_TRUE(cpu.supports(relu, relu.layers[0]));
  const format::EngineModel unsigned_relu = one_layer_model("Relu", DType::kUInt32);
  EXPECT_TRUE(cpu.supports(unsigned_relu, unsigned_relu.layers[0]));
  const format::EngineModel unknown = one_layer_model("NoSuchOp", DType::kFloat32);
  EXPECT_FALSE(cpu.supports(unknown, unknown.layers[0]));
  EXPECT_EQ(cpu.why_unsupported(unknown, unknown.layers[0]), "the cpu backend has no kernel for op 'NoSuchOp'");
}

TEST(BackendSupports, APluginLayerIsAnsweredByThePluginRegistry) {
  const Backend& cpu = *find_backend("cpu");
  format::EngineModel plugin = one_layer_model("Plugin", DType::kFloat32);
  plugin.layers[0].attrs.set("kiln_plugin_namespace", Attribute::of_string("nobody"));
  plugin.layers[0].attrs.set("kiln_plugin_name", Attribute::of_string("NoSuchPlugin"));
  plugin.layers[0].attrs.set("kiln_plugin_version", Attribute::of_int(1));
  const std::string reason = cpu.why_unsupported(plugin, plugin.layers[0]);
  EXPECT_NE(reason.find("NoSuchPlugin"), std::string::npos) << reason;
}

TEST(KernelSupport, NamesTheTensorItsDtypeAndWhatTheKernelTakes) {
  const format::EngineModel model = one_layer_model("Softmax", DType::kFloat64);
  const KernelSupport support{.inputs = {{{0}, kNnFloatDTypes}}};
  EXPECT_EQ(check_kernel_support(support, model, model.layers[0], "cuda"),
            "input 0 'x' is float64; the cuda kernel takes float32, float16, bfloat16");
  const KernelSupport no_float64{.every_tensor = DTypeSet::all().without({DType::kFloat64})};
  EXPECT_NE(check_kernel_support(no_float64, model, model.layers[0], "gpu").find("input 0 'x' is float64"),
            std::string::npos);
  EXPECT_EQ(check_kernel_support(KernelSupport{}, model, model.layers[0], "cpu"), "");
}

TEST(BackendSupports, TheCudaBackendRefusesWhatItsLoadRefuses) {
  const Backend* cuda = find_backend("cuda");
  if (!cuda) GTEST_SKIP() << "this kiln has no CUDA backend";
  const format::EngineModel relu = one_layer_model("Relu", DType::kFloat32);
  EXPECT_TRUE(cuda->supports(relu, relu.layers[0]));
  // No CUDA kernel takes uint32 tensors, or float64 Softmax; MaxPool's Indices output is CPU-only.
  const format::EngineModel unsigned_relu = one_layer_model("Relu", DType::kUInt32);
  EXPECT_FALSE(cuda->supports(unsigned_relu, unsigned_relu.layers[0]));
  const format::EngineModel double_softmax = one_layer_model("Softmax", DType::kFloat64);
  EXPECT_FALSE(cuda->supports(double_softmax, double_softmax.layers[0]));
  const format::EngineModel max_pool_indices = one_layer_model("MaxPool", DType::kFloat32, true);
  EXPECT_FALSE(cuda->supports(max_pool_indices, max_pool_indices.layers[0]));
  const format::EngineModel unknown = one_layer_model("NoSuchOp", DType::kFloat32);
  EXPECT_FALSE(cuda->supports(unknown, unknown.layers[0]));
  EXPECT_EQ(cuda->why_unsupported(double_softmax, double_softmax.layers[0]),
            "input 0 'x' is float64; the cuda kernel takes float32, float16, bfloat16");
  EXPECT_NE(cuda->why_unsupported(unsigned_relu, unsigned_relu.layers[0]).find("input 0 'x' is uint32"),
            std::string::npos);
}

// What the CUDA kernels compute in, as the backend-ops conformance test found it: no float64
// CumSum/ArgMax/ArgMin/TopK, no float16/bfloat16 Range, FusedAttention in float16/bfloat16 only,
// generated FusedGroup kernels in float32/float16/bfloat16/bool, ScatterND reductions on 4- and
// 8-byte arithmetic types (a copy without one takes any dtype).
TEST(BackendSupports, TheCudaRegistrationsClaimOnlyWhatTheKernelsCompute) {
  const Backend* cuda = find_backend("cuda");
  if (!cuda) GTEST_SKIP() << "this kiln has no CUDA backend";
  const auto supports = [&](const format::EngineModel& m) { return cuda->supports(m, m.layers[0]); };
  for (const char* op : {"CumSum", "ArgMax", "ArgMin", "TopK"}) {
    EXPECT_TRUE(supports(one_layer_model(op, DType::kInt64))) << op;
    EXPECT_FALSE(supports(one_layer_model(op, DType::kFloat64))) << op;
  }
  EXPECT_TRUE(supports(one_layer_model("Range", DType::kFloat64)));
  EXPECT_FALSE(supports(one_layer_model("Range", DType::kBFloat16)));
  EXPECT_TRUE(supports(one_layer_model("FusedAttention", DType::kFloat16)));
  EXPECT_FALSE(supports(one_layer_model("FusedAttention", DType::kFloat32)));
  EXPECT_TRUE(supports(one_layer_model("FusedGroup", DType::kBFloat16)));
  EXPECT_FALSE(supports(one_layer_model("FusedGroup", DType::kInt32)));
  format::EngineModel scatter = one_layer_model("ScatterND", DType::kFloat16);
  EXPECT_TRUE(supports(scatter));
  scatter.layers[0].attrs.set("reduction", Attribute::of_string("add"));
  EXPECT_EQ(cuda->why_unsupported(scatter, scatter.layers[0]),
            "its reduction 'add' on float16 data (the cuda kernel reduces float32, float64, int32 and int64)");
  scatter.tensors[0].dtype = DType::kFloat32;
  EXPECT_TRUE(supports(scatter));
}

}  // namespace
}  // namespace kiln::backends
