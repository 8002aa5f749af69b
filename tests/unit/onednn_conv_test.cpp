// The CPU backend's oneDNN convolution (src/backends/cpu/onednn_conv.cpp) against its reference
// kernel, over groups, depthwise, strides, pads, dilations, 1-D/2-D/3-D, NHWC, bias, the fused
// residual and Relu, and NaN/Inf inputs (Relu(NaN) must stay NaN, which oneDNN's own relu does
// not do); plus what the prepared layer state keeps between calls and the KILN_CPU_CONV switch.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/onednn_conv.hpp"
#include "base/attributes.hpp"
#include "base/error.hpp"
#include "float_comparison.hpp"

namespace kiln::cpu {
namespace {

struct ConvCase {
  std::string name;
  Shape x;  // NCHW order (NCW / NCDHW for 1-D / 3-D)
  int64_t out_channels = 8;
  int64_t group = 1;
  std::vector<int64_t> kernel{3, 3};
  std::vector<int64_t> strides{1, 1};
  std::vector<int64_t> pads{1, 1, 1, 1};
  std::vector<int64_t> dilations{1, 1};
  bool bias = true;
  bool residual = false;
  bool relu = false;
  bool nhwc = false;
};

int64_t out_extent(int64_t in, int64_t k, int64_t s, int64_t pb, int64_t pe, int64_t d) {
  return (in + pb + pe - ((k - 1) * d + 1)) / s + 1;
}

std::vector<float> random_values(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// [N, C, H, W] <-> [N, H, W, C] for the NHWC cases (W: [M, C/g, kH, kW] -> [M, kH, kW, C/g]).
Shape to_nhwc(const Shape& s) { return Shape{s[0], s[2], s[3], s[1]}; }

std::vector<float> permute_to_nhwc(const std::vector<float>& v, const Shape& s) {
  std::vector<float> out(v.size());
  for (int64_t n = 0; n < s[0]; ++n)
    for (int64_t c = 0; c < s[1]; ++c)
      for (int64_t h = 0; h < s[2]; ++h)
        for (int64_t w = 0; w < s[3]; ++w)
          out[((n * s[2] + h) * s[3] + w) * s[1] + c] = v[((n * s[1] + c) * s[2] + h) * s[3] + w];
  return out;
}

// One Conv call's tensors and attributes, runnable through either path.
struct ConvCall {
  AttributeMap attrs;
  std::vector<float> x, w, b, residual;
  Shape x_shape, w_shape, y_shape;

  ConvCall(const ConvCase& c, std::mt19937& rng) {
    const size_t spatial = c.x.size() - 2;
    w_shape = Shape{c.out_channels, c.x[1] / c.group};
    w_shape.insert(w_shape.end(), c.kernel.begin(), c.kernel.end());
    y_shape = Shape{c.x[0], c.out_channels};
    for (size_t i = 0; i < spatial; ++i) {
      y_shape.push_back(out_extent(c.x[2 + i], c.kernel[i], c.strides[i], c.pads[i],
                                   c.pads[spatial + i], c.dilations[i]));
    }
    x_shape = c.x;
    x = random_values(static_cast<size_t>(shape_numel(x_shape)), rng);
    w = random_values(static_cast<size_t>(shape_numel(w_shape)), rng);
    if (c.bias) b = random_values(static_cast<size_t>(c.out_channels), rng);
    if (c.residual) residual = random_values(static_cast<size_t>(shape_numel(y_shape)), rng);
    if (c.nhwc) {
      x = permute_to_nhwc(x, x_shape);
      w = permute_to_nhwc(w, w_shape);
      if (c.residual) residual = permute_to_nhwc(residual, y_shape);
      x_shape = to_nhwc(x_shape);
      w_shape = to_nhwc(w_shape);
      y_shape = to_nhwc(y_shape);
      attrs.set("kiln_layout", Attribute::of_string("NHWC"));
    }
    if (c.group != 1) attrs.set("group", Attribute::of_int(c.group));
    attrs.set("kernel_shape", Attribute::of_ints(c.kernel));
    attrs.set("strides", Attribute::of_ints(c.strides));
    attrs.set("pads", Attribute::of_ints(c.pads));
    attrs.set("dilations", Attribute::of_ints(c.dilations));
    if (c.relu) attrs.set("kiln_activation", Attribute::of_string("Relu"));
  }

  std::vector<TensorView> inputs() {
    std::vector<TensorView> in{TensorView{DType::kFloat32, x_shape, x.data()},
                               TensorView{DType::kFloat32, w_shape, w.data()}, TensorView{},
                               TensorView{}};
    if (!b.empty()) in[2] = TensorView{DType::kFloat32, Shape{static_cast<int64_t>(b.size())}, b.data()};
    if (!residual.empty()) in[3] = TensorView{DType::kFloat32, y_shape, residual.data()};
    return in;
  }

  // The registered Conv kernel with no layer state: the reference path.
  std::vector<float> run_reference() {
    std::vector<float> y(static_cast<size_t>(shape_numel(y_shape)), -7.0f);
    std::vector<TensorView> in = inputs();
    std::vector<TensorView> out{TensorView{DType::kFloat32, y_shape, y.data()}};
    KernelContext ctx{"conv", "Conv", attrs, in, out};
    cpu_kernels().find("Conv")->fn(ctx);
    return y;
  }

  // oneDNN with the given state slot; fails the test when oneDNN declines the call.
  std::vector<float> run_onednn(std::unique_ptr<KernelState>& state, uint64_t constant_inputs = 0b110) {
    std::vector<float> y(static_cast<size_t>(shape_numel(y_shape)), -7.0f);
    std::vector<TensorView> in = inputs();
    std::vector<TensorView> out{TensorView{DType::kFloat32, y_shape, y.data()}};
    KernelContext ctx{"conv", "Conv", attrs, in, out, &state, constant_inputs};
    EXPECT_TRUE(onednn::try_run_conv(ctx)) << "oneDNN declined the call";
    return y;
  }
};

void expect_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& name) {
  testing::expect_floats_close(got, want, 1e-4f, name);
}

std::vector<ConvCase> cases() {
  std::vector<ConvCase> v;
  v.push_back({.name = "3x3", .x = {1, 16, 9, 9}, .out_channels = 32});
  v.push_back({.name = "3x3_relu_no_bias", .x = {1, 16, 8, 8}, .out_channels = 16, .bias = false, .relu = true});
  v.push_back({.name = "3x3_s2_residual_relu", .x = {2, 8, 11, 10}, .out_channels = 16, .strides = {2, 2},
               .residual = true, .relu = true});
  v.push_back({.name = "stem_7x7_s2", .x = {1, 3, 32, 32}, .out_channels = 16, .kernel = {7, 7},
               .strides = {2, 2}, .pads = {3, 3, 3, 3}, .relu = true});
  v.push_back({.name = "pointwise", .x = {1, 32, 7, 7}, .out_channels = 64, .kernel = {1, 1},
               .pads = {0, 0, 0, 0}});
  v.push_back({.name = "pointwise_s2", .x = {1, 16, 8, 8}, .out_channels = 32, .kernel = {1, 1},
               .strides = {2, 2}, .pads = {0, 0, 0, 0}});
  v.push_back({.name = "depthwise", .x = {1, 32, 10, 10}, .out_channels = 32, .group = 32, .relu = true});
  v.push_back({.name = "depthwise_s2_multiplier2", .x = {1, 8, 9, 9}, .out_channels = 16, .group = 8,
               .strides = {2, 2}});
  v.push_back({.name = "depthwise_5x5_residual", .x = {1, 24, 12, 12}, .out_channels = 24, .group = 24,
               .kernel = {5, 5}, .pads = {2, 2, 2, 2}, .residual = true});
  v.push_back({.name = "grouped", .x = {1, 16, 8, 8}, .out_channels = 24, .group = 4, .relu = true});
  v.push_back({.name = "dilated", .x = {1, 8, 12, 12}, .out_channels = 8, .pads = {2, 2, 2, 2},
               .dilations = {2, 2}});
  v.push_back({.name = "asymmetric_pads_rect_kernel", .x = {1, 6, 9, 7}, .out_channels = 10,
               .kernel = {2, 3}, .strides = {1, 2}, .pads = {0, 1, 1, 0}});
  v.push_back({.name = "conv1d", .x = {2, 8, 20}, .out_channels = 12, .kernel = {3}, .strides = {2},
               .pads = {1, 1}, .dilations = {1}, .relu = true});
  v.push_back({.name = "conv3d", .x = {1, 4, 5, 6, 7}, .out_channels = 8, .kernel = {3, 3, 3},
               .strides = {1, 2, 1}, .pads = {1, 1, 1, 1, 1, 1}, .dilations = {1, 1, 1}, .residual = true});
  v.push_back({.name = "nhwc_residual_relu", .x = {1, 16, 8, 8}, .out_channels = 16, .residual = true,
               .relu = true, .nhwc = true});
  v.push_back({.name = "nhwc_depthwise", .x = {1, 16, 8, 8}, .out_channels = 16, .group = 16, .nhwc = true});
  // Winograd's cases (3x3, stride 1, 64+ channels, 196+ output pixels), with the direct convolution
  // for calls whose tensors are not all finite.
  v.push_back({.name = "winograd", .x = {1, 64, 16, 16}, .out_channels = 64});
  v.push_back({.name = "winograd_nhwc_residual_relu", .x = {2, 64, 10, 12}, .out_channels = 96, .residual = true,
               .relu = true, .nhwc = true});
  return v;
}

// Sets an environment variable for the scope; the previous value comes back after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) previous_ = old, had_ = true;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() { had_ ? ::setenv(name_, previous_.c_str(), 1) : ::unsetenv(name_); }

 private:
  const char* name_;
  std::string previous_;
  bool had_ = false;
};

class OnednnConv : public ::testing::Test {
 protected:
  void SetUp() override {
#if KILN_WITH_ONEDNN
    // Built with oneDNN: its library must load (a silent fallback would skip the whole suite).
    ASSERT_TRUE(onednn::available()) << onednn::describe();
#else
    if (!onednn::available()) GTEST_SKIP() << "kiln was built without oneDNN";
#endif
  }
};

TEST_F(OnednnConv, MatchesTheReferenceOverShapes) {
  std::mt19937 rng(14);
  for (const ConvCase& c : cases()) {
    ConvCall call(c, rng);
    std::unique_ptr<KernelState> state;
    expect_same(call.run_onednn(state), call.run_reference(), c.name);
    // The second call reuses the primitive and the reordered weights.
    expect_same(call.run_onednn(state), call.run_reference(), c.name + " (second call)");
  }
}

TEST_F(OnednnConv, NanAndInfPropagateAsInTheReference) {
  std::mt19937 rng(11);
  for (ConvCase c : cases()) {
    c.relu = true;  // Relu(NaN) stays NaN; Relu(-Inf) is 0
    ConvCall call(c, rng);
    call.x[0] = std::numeric_limits<float>::quiet_NaN();
    call.x[call.x.size() / 2] = std::numeric_limits<float>::infinity();
    call.x[call.x.size() - 2] = -std::numeric_limits<float>::infinity();
    if (!call.residual.empty()) call.residual[1] = std::numeric_limits<float>::quiet_NaN();
    std::unique_ptr<KernelState> state;
    const std::vector<float> got = call.run_onednn(state);
    const std::vector<float> want = call.run_reference();
    size_t nans = 0;
    for (float v : want) nans += std::isnan(v) ? 1 : 0;
    EXPECT_GT(nans, 0u) << c.name << ": the case should produce NaN";
    expect_same(got, want, c.name + " with NaN/Inf");
  }
}

// The CPU target's other fused activations (passes/cpu_activation_fusion.hpp), applied after the
// primitive by kiln's vector loops: against the reference's scalar formulas, NaN and Inf included.
TEST_F(OnednnConv, FusedActivationsMatchTheReference) {
  std::mt19937 rng(12);
  const std::vector<std::pair<std::string, std::vector<std::pair<std::string, float>>>> activations{
      {"Clip", {{"kiln_clip_min", 0.0f}, {"kiln_clip_max", 6.0f}}},
      {"Clip", {{"kiln_clip_max", 0.5f}}},
      {"Sigmoid", {}},
      {"Tanh", {}},
      {"HardSwish", {}},
      {"Silu", {}}};
  for (const ConvCase& c : cases()) {
    if (c.name != "3x3_s2_residual_relu" && c.name != "pointwise" && c.name != "depthwise" &&
        c.name != "nhwc_depthwise" && c.name != "conv1d") {
      continue;
    }
    for (const auto& [activation, bounds] : activations) {
      ConvCase fused = c;
      fused.relu = false;
      ConvCall call(fused, rng);
      for (float& v : call.x) v *= 4.0f;  // past Clip's bounds and into Sigmoid's tails
      call.attrs.set("kiln_activation", Attribute::of_string(activation));
      for (const auto& [name, value] : bounds) call.attrs.set(name, Attribute::of_float(value));
      call.x[1] = std::numeric_limits<float>::quiet_NaN();
      call.x[call.x.size() / 3] = std::numeric_limits<float>::infinity();
      std::unique_ptr<KernelState> state;
      expect_same(call.run_onednn(state), call.run_reference(), c.name + " + " + activation);
    }
  }
}

// Winograd runs where it applies (its rounding differs from the direct kernel's somewhere), a call
// with a NaN or an infinity in X or the residual runs the direct convolution (Winograd's transforms
// would spread them over whole output tiles), and the next finite call is Winograd's again.
TEST_F(OnednnConv, WinogradWhereItAppliesDirectForNonFiniteInputs) {
  std::mt19937 rng(17);
  for (const std::string name : {"winograd", "winograd_nhwc_residual_relu"}) {
    ConvCase c;
    for (const ConvCase& candidate : cases())
      if (candidate.name == name) c = candidate;
    ConvCall call(c, rng);
    std::vector<float> direct;
    {
      const ScopedEnv off("KILN_CPU_WINOGRAD", "off");
      std::unique_ptr<KernelState> state;
      direct = call.run_onednn(state);
    }
    std::unique_ptr<KernelState> state;
    const std::vector<float> winograd = call.run_onednn(state);
    expect_same(winograd, call.run_reference(), name);
    EXPECT_NE(winograd, direct) << name << ": every element as the direct kernel's, so Winograd did not run";

    ConvCall poisoned = call;
    poisoned.x[5] = std::numeric_limits<float>::quiet_NaN();
    poisoned.x[poisoned.x.size() - 7] = -std::numeric_limits<float>::infinity();
    expect_same(poisoned.run_onednn(state), poisoned.run_reference(), name + " with NaN/Inf in X");
    if (!call.residual.empty()) {
      ConvCall residual = call;
      residual.residual[3] = std::numeric_limits<float>::infinity();
      expect_same(residual.run_onednn(state), residual.run_reference(), name + " with Inf in the residual");
    }
    EXPECT_EQ(call.run_onednn(state), winograd) << name << ": finite again, Winograd again";
  }
}

// A context runs some calls on its threads and some on one (ThreadCountChoice): the layer keeps a
// primitive per thread count, sharing the packed weights, and each gives the reference's result.
// (Named so that CI's ThreadSanitizer stage, which runs the tests named for threads, leaves it out:
// TSan does not see libgomp's synchronisation, so it reports oneDNN's OpenMP workers touching
// buffers the caller allocated before the parallel region as races.)
TEST_F(OnednnConv, AlternatesBetweenOneAndSeveralOpenMpWorkers) {
  std::mt19937 rng(19);
  for (const std::string name : {"3x3_s2_residual_relu", "winograd", "nhwc_depthwise"}) {
    ConvCase c;
    for (const ConvCase& candidate : cases())
      if (candidate.name == name) c = candidate;
    ConvCall call(c, rng);
    const std::vector<float> want = call.run_reference();
    std::unique_ptr<KernelState> state;
    ThreadPool pool(2);
    for (int round = 0; round < 3; ++round) {
      expect_same(call.run_onednn(state), want, name + " on one thread");
      const IntraOpScope scope(&pool);
      expect_same(call.run_onednn(state), want, name + " on two threads");
    }
  }
}

// Loading the library hands the pools oneDNN's OpenMP team, so a call's convolutions and the
// kernels between them run on the same threads (intra_op_threads.hpp says why).
TEST_F(OnednnConv, LoadingTheLibraryInstallsItsOpenMpTeamForThePools) {
#if KILN_ONEDNN_OPENMP_TEAM && !defined(__SANITIZE_THREAD__)
  ASSERT_NE(shared_team(), nullptr) << onednn::describe();
  ThreadPool pool(2);
  std::vector<std::atomic<int>> runs(64);
  std::mutex mutex;
  std::set<std::thread::id> threads;
  pool.parallel_for(runs.size(), [&](size_t i) {
    runs[i].fetch_add(1);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::lock_guard lock(mutex);
    threads.insert(std::this_thread::get_id());
  });
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(runs[i].load(), 1) << "task " << i;
  EXPECT_EQ(threads.size(), 2u);
  EXPECT_THROW(pool.parallel_for(8,
                                 [](size_t i) {
                                   if (i == 5) throw std::runtime_error("task 5");
                                 }),
               std::runtime_error);
#else
  EXPECT_EQ(shared_team(), nullptr) << "no OpenMP team in this build, yet one is installed";
#endif
}

TEST_F(OnednnConv, WeightsThatAreNotEngineWeightsAreReadOnEveryCall) {
  std::mt19937 rng(3);
  ConvCase c{.name = "changing_weights", .x = {1, 16, 8, 8}, .out_channels = 16};
  ConvCall call(c, rng);
  std::unique_ptr<KernelState> state;
  call.run_onednn(state, /*constant_inputs=*/0);
  for (float& v : call.w) v = -v;
  expect_same(call.run_onednn(state, 0), call.run_reference(), "weights changed between calls");
}

TEST_F(OnednnConv, RebuildsWhenTheShapesChange) {
  std::mt19937 rng(5);
  ConvCall small({.name = "small", .x = {1, 8, 6, 6}, .out_channels = 8}, rng);
  ConvCall large({.name = "large", .x = {2, 8, 10, 9}, .out_channels = 8}, rng);
  large.w = small.w;
  large.b = small.b;
  std::unique_ptr<KernelState> state;
  expect_same(small.run_onednn(state), small.run_reference(), "small");
  expect_same(large.run_onednn(state), large.run_reference(), "large after small");
}

TEST_F(OnednnConv, RejectsWhatTheReferenceRejects) {
  std::mt19937 rng(7);
  ConvCall call({.name = "bad_bias", .x = {1, 8, 6, 6}, .out_channels = 8}, rng);
  call.b.resize(5);
  std::unique_ptr<KernelState> state;
  std::vector<float> y(static_cast<size_t>(shape_numel(call.y_shape)));
  std::vector<TensorView> in = call.inputs();
  std::vector<TensorView> out{TensorView{DType::kFloat32, call.y_shape, y.data()}};
  KernelContext ctx{"conv", "Conv", call.attrs, in, out, &state, 0};
  try {
    onednn::try_run_conv(ctx);
    FAIL() << "a bias of 5 elements for 8 channels was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("B must have 8 elements"), std::string::npos) << error.what();
  }
}

TEST_F(OnednnConv, DeclinesCallsWithoutALayerState) {
  std::mt19937 rng(9);
  ConvCall call({.name = "stateless", .x = {1, 8, 6, 6}, .out_channels = 8}, rng);
  std::vector<float> y(static_cast<size_t>(shape_numel(call.y_shape)), -7.0f);
  std::vector<TensorView> in = call.inputs();
  std::vector<TensorView> out{TensorView{DType::kFloat32, call.y_shape, y.data()}};
  KernelContext ctx{"conv", "Conv", call.attrs, in, out};
  EXPECT_FALSE(onednn::try_run_conv(ctx));
  EXPECT_EQ(y[0], -7.0f) << "a declined call must leave the output alone";
}

// oneDNN's OpenMP thread count is this thread's; a call under a context's pool of 3 uses 3 and gives
// the caller's setting back. The OpenMP runtime is libdnnl's, found through the oneDNN library's
// dependencies (the runtime loads it RTLD_LOCAL).
TEST_F(OnednnConv, GivesTheCallersOpenMpThreadCountBack) {
  void* library = dlopen("libkiln_cpu_onednn.so", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(library, nullptr) << "the oneDNN library is loaded once available() said so";
  const auto get = reinterpret_cast<int (*)()>(dlsym(library, "omp_get_max_threads"));
  const auto set = reinterpret_cast<void (*)(int)>(dlsym(library, "omp_set_num_threads"));
  ASSERT_NE(get, nullptr);
  ASSERT_NE(set, nullptr);
  set(5);
  std::mt19937 rng(3);
  ConvCall call({.name = "threads", .x = {1, 8, 12, 12}, .out_channels = 8}, rng);
  std::unique_ptr<KernelState> state;
  {
    ThreadPool pool(3);
    const IntraOpScope scope(&pool);
    expect_same(call.run_onednn(state), call.run_reference(), "under a pool of 3");
  }
  EXPECT_EQ(get(), 5);
  dlclose(library);
}

TEST_F(OnednnConv, DescribesTheIsaItDispatchesTo) {
  const std::string text = onednn::describe();
  EXPECT_EQ(text.rfind("oneDNN ", 0), 0u) << text;
  EXPECT_NE(text.find(", ISA "), std::string::npos) << text;
}

TEST(CpuConvChoice, ReadsKilnCpuConv) {
  const char* saved = std::getenv("KILN_CPU_CONV");
  const std::string saved_value = saved ? saved : "";
  ::unsetenv("KILN_CPU_CONV");
  EXPECT_EQ(onednn::requested_conv_choice(), onednn::ConvChoice::kAuto);
  ::setenv("KILN_CPU_CONV", "reference", 1);
  EXPECT_EQ(onednn::requested_conv_choice(), onednn::ConvChoice::kReference);
  ::setenv("KILN_CPU_CONV", "onednn", 1);
  EXPECT_EQ(onednn::requested_conv_choice(), onednn::ConvChoice::kOnednn);
  ::setenv("KILN_CPU_CONV", "fast", 1);
  try {
    onednn::requested_conv_choice();
    ADD_FAILURE() << "KILN_CPU_CONV=fast was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("KILN_CPU_CONV"), std::string::npos) << error.what();
  }
  if (saved) {
    ::setenv("KILN_CPU_CONV", saved_value.c_str(), 1);
  } else {
    ::unsetenv("KILN_CPU_CONV");
  }
}

}  // namespace
}  // namespace kiln::cpu
