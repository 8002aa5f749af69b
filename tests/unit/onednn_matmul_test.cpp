// The CPU backend's oneDNN MatMul (src/backends/cpu/onednn_conv.hpp, try_run_matmul) against the
// reference kernel (KILN_CPU_MATMUL=reference): ranks of A, odd and single extents, the fused bias
// and Relu with NaN/Inf, B packed once per context, rebuilt on new shapes, under a thread pool;
// and the calls it must decline (B not an engine weight, batched B, no layer state).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/onednn_conv.hpp"
#include "base/attributes.hpp"
#include "base/error.hpp"
#include "float_comparison.hpp"

namespace kiln::cpu {
namespace {

struct MatmulCall {
  AttributeMap attrs;
  Shape a_shape, b_shape, y_shape;
  std::vector<float> a, b, bias;

  MatmulCall(Shape a_dims, int64_t n, bool with_bias, bool relu, std::mt19937& rng) : a_shape(std::move(a_dims)) {
    const int64_t k = a_shape.back();
    b_shape = Shape{k, n};
    y_shape = a_shape;
    y_shape.back() = n;
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    a.resize(static_cast<size_t>(shape_numel(a_shape)));
    b.resize(static_cast<size_t>(shape_numel(b_shape)));
    for (float& v : a) v = dist(rng);
    for (float& v : b) v = dist(rng);
    if (with_bias) {
      bias.resize(static_cast<size_t>(n));
      for (float& v : bias) v = dist(rng);
    }
    if (relu) attrs.set("kiln_activation", Attribute::of_string("Relu"));
  }

  std::vector<TensorView> inputs() {
    std::vector<TensorView> in{TensorView{DType::kFloat32, a_shape, a.data()},
                               TensorView{DType::kFloat32, b_shape, b.data()}};
    if (!bias.empty()) in.push_back(TensorView{DType::kFloat32, Shape{static_cast<int64_t>(bias.size())}, bias.data()});
    return in;
  }

  // The registered MatMul kernel with no layer state: the reference path.
  std::vector<float> run_reference() {
    std::vector<float> y(static_cast<size_t>(shape_numel(y_shape)), -7.0f);
    std::vector<TensorView> in = inputs();
    std::vector<TensorView> out{TensorView{DType::kFloat32, y_shape, y.data()}};
    KernelContext ctx{"matmul", "MatMul", attrs, in, out};
    cpu_kernels().find("MatMul")->fn(ctx);
    return y;
  }

  // oneDNN with the given state slot; `taken` says whether it ran the call.
  std::vector<float> run_onednn(std::unique_ptr<KernelState>& state, bool& taken, uint64_t constant_inputs = 0b110) {
    std::vector<float> y(static_cast<size_t>(shape_numel(y_shape)), -7.0f);
    std::vector<TensorView> in = inputs();
    std::vector<TensorView> out{TensorView{DType::kFloat32, y_shape, y.data()}};
    KernelContext ctx{"matmul", "MatMul", attrs, in, out, &state, constant_inputs};
    taken = onednn::try_run_matmul(ctx);
    return y;
  }

  std::vector<float> run_onednn(std::unique_ptr<KernelState>& state) {
    bool taken = false;
    std::vector<float> y = run_onednn(state, taken);
    EXPECT_TRUE(taken) << "oneDNN declined the call";
    return y;
  }
};

void expect_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& name) {
  testing::expect_floats_close(got, want, 1e-4f, name);
}

class OnednnMatmul : public ::testing::Test {
 protected:
  void SetUp() override {
#if KILN_WITH_ONEDNN
    ASSERT_TRUE(onednn::available()) << onednn::describe();
#else
    if (!onednn::available()) GTEST_SKIP() << "kiln was built without oneDNN";
#endif
  }
};

struct Case {
  std::string name;
  Shape a;
  int64_t n;
  bool bias;
  bool relu;
};

TEST_F(OnednnMatmul, MatchesTheReferenceOverShapes) {
  std::mt19937 rng(21);
  const std::vector<Case> cases{
      {"2d", {16, 32}, 24, false, false},
      {"2d_bias_relu", {7, 33}, 17, true, true},
      {"one_row", {1, 64}, 100, true, false},
      {"one_column", {9, 5}, 1, true, true},
      {"k_one", {4, 1}, 8, false, false},
      {"3d_tokens", {2, 13, 48}, 40, true, false},
      {"4d", {2, 3, 5, 16}, 12, true, true},
  };
  for (const Case& c : cases) {
    MatmulCall call(c.a, c.n, c.bias, c.relu, rng);
    std::unique_ptr<KernelState> state;
    expect_same(call.run_onednn(state), call.run_reference(), c.name);
    expect_same(call.run_onednn(state), call.run_reference(), c.name + " (second call, packed B reused)");
  }
}

TEST_F(OnednnMatmul, ReluKeepsNanAndInfinitiesAsTheReference) {
  std::mt19937 rng(4);
  MatmulCall call({6, 8}, 10, true, true, rng);
  call.a[0] = std::numeric_limits<float>::quiet_NaN();
  call.a[9] = std::numeric_limits<float>::infinity();
  call.a[17] = -std::numeric_limits<float>::infinity();
  std::unique_ptr<KernelState> state;
  const std::vector<float> want = call.run_reference();
  size_t nans = 0;
  for (float v : want) nans += std::isnan(v) ? 1 : 0;
  EXPECT_GT(nans, 0u);
  expect_same(call.run_onednn(state), want, "NaN/Inf");
}

TEST_F(OnednnMatmul, RebuildsWhenTheShapesChangeAndUnderAPool) {
  std::mt19937 rng(8);
  MatmulCall small({3, 16}, 8, true, false, rng);
  MatmulCall large({40, 16}, 8, true, false, rng);
  large.b = small.b;
  large.bias = small.bias;
  std::unique_ptr<KernelState> state;
  expect_same(small.run_onednn(state), small.run_reference(), "small");
  expect_same(large.run_onednn(state), large.run_reference(), "large after small");
  ThreadPool pool(2);
  const IntraOpScope scope(&pool);
  expect_same(large.run_onednn(state), large.run_reference(), "large under a pool of 2");
}

TEST_F(OnednnMatmul, DeclinesWhatItDoesNotPrepack) {
  std::mt19937 rng(2);
  MatmulCall call({4, 8}, 6, false, false, rng);
  std::unique_ptr<KernelState> state;
  bool taken = true;
  const std::vector<float> y = call.run_onednn(state, taken, /*constant_inputs=*/0);
  EXPECT_FALSE(taken) << "B is not an engine weight";
  EXPECT_EQ(y[0], -7.0f) << "a declined call must leave the output alone";

  MatmulCall batched({2, 4, 8}, 6, false, false, rng);
  batched.b_shape = Shape{2, 8, 6};
  batched.b.resize(96);
  batched.run_onednn(state, taken);
  EXPECT_FALSE(taken) << "batched B";

  std::vector<float> out(24, -7.0f);
  std::vector<TensorView> in = call.inputs();
  std::vector<TensorView> outs{TensorView{DType::kFloat32, call.y_shape, out.data()}};
  KernelContext stateless{"matmul", "MatMul", call.attrs, in, outs, nullptr, 0b10};
  EXPECT_FALSE(onednn::try_run_matmul(stateless));
}

TEST(CpuMatmulChoice, ReadsKilnCpuMatmul) {
  const char* saved = std::getenv("KILN_CPU_MATMUL");
  const std::string saved_value = saved ? saved : "";
  ::unsetenv("KILN_CPU_MATMUL");
  EXPECT_EQ(onednn::requested_matmul_choice(), onednn::ConvChoice::kAuto);
  ::setenv("KILN_CPU_MATMUL", "reference", 1);
  EXPECT_EQ(onednn::requested_matmul_choice(), onednn::ConvChoice::kReference);
  ::setenv("KILN_CPU_MATMUL", "blas", 1);
  try {
    onednn::requested_matmul_choice();
    ADD_FAILURE() << "KILN_CPU_MATMUL=blas was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("KILN_CPU_MATMUL"), std::string::npos) << error.what();
  }
  if (saved) {
    ::setenv("KILN_CPU_MATMUL", saved_value.c_str(), 1);
  } else {
    ::unsetenv("KILN_CPU_MATMUL");
  }
}

}  // namespace
}  // namespace kiln::cpu
