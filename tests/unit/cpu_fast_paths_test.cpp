// The CPU kernels' vectorised, threaded fast paths (simd_math.hpp: unary activations, Softmax,
// LogSoftmax, LayerNormalization, ReduceSum/Mean/Max over a contiguous block of axes) through the
// registered kernels, against the same kernels at KILN_CPU_SIMD=scalar (the reference loops), on
// edge shapes (rows of 1, vector tails, size-1 axes, reductions the fast path declines) with and
// without a thread pool, NaN and infinities included.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "base/attributes.hpp"

namespace kiln::cpu {
namespace {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) previous_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, previous_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string previous_;
  bool had_ = false;
};

struct Tensor {
  Shape shape;
  std::vector<float> values;
  TensorView view() { return TensorView{DType::kFloat32, shape, values.data()}; }
};

Tensor random_tensor(const Shape& shape, std::mt19937& rng, float spread = 3.0f) {
  std::uniform_real_distribution<float> dist(-spread, spread);
  Tensor t{shape, std::vector<float>(static_cast<size_t>(shape_numel(shape)))};
  for (float& v : t.values) v = dist(rng);
  return t;
}


// Runs the registered kernel of `op` on float32 inputs (int64 `axes` as input 1 when given).
std::vector<float> run(const std::string& op, const AttributeMap& attrs, std::vector<Tensor> inputs,
                       const Shape& out_shape, const std::vector<int64_t>* axes = nullptr) {
  std::vector<TensorView> in;
  for (Tensor& t : inputs) in.push_back(t.view());
  std::vector<int64_t> axes_copy = axes ? *axes : std::vector<int64_t>{};
  if (axes) {
    const Shape axes_shape{static_cast<int64_t>(axes_copy.size())};
    in.insert(in.begin() + 1, TensorView{DType::kInt64, axes_shape, axes_copy.data()});
  }
  std::vector<float> y(static_cast<size_t>(shape_numel(out_shape)), -7.0f);
  std::vector<TensorView> out{TensorView{DType::kFloat32, out_shape, y.data()}};
  KernelContext ctx{op, op, attrs, in, out};
  cpu_kernels().find(op)->fn(ctx);
  return y;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tolerance,
                  const std::string& name) {
  ASSERT_EQ(got.size(), want.size()) << name;
  size_t mismatches = 0;
  for (size_t i = 0; i < got.size() && mismatches < 5; ++i) {
    const bool ok = std::isnan(want[i]) ? std::isnan(got[i])
                    : std::isinf(want[i]) ? got[i] == want[i]
                                          : std::fabs(got[i] - want[i]) <= tolerance * (1.0f + std::fabs(want[i]));
    if (!ok) {
      ++mismatches;
      ADD_FAILURE() << name << ": element " << i << " is " << got[i] << ", reference " << want[i];
    }
  }
}

// The kernel's output with the fast paths, on one thread and under a pool of 3, against the
// reference loops.
void check(const std::string& name, const std::string& op, const AttributeMap& attrs,
           const std::vector<Tensor>& inputs, const Shape& out_shape, float tolerance,
           const std::vector<int64_t>* axes = nullptr) {
  std::vector<float> want;
  {
    const ScopedEnv scalar("KILN_CPU_SIMD", "scalar");
    want = run(op, attrs, inputs, out_shape, axes);
  }
  expect_close(run(op, attrs, inputs, out_shape, axes), want, tolerance, name + " (one thread)");
  ThreadPool pool(3);
  const IntraOpScope scope(&pool);
  expect_close(run(op, attrs, inputs, out_shape, axes), want, tolerance, name + " (pool of 3)");
}

TEST(CpuFastPaths, UnaryActivationsOverLargeAndTinyTensors) {
  std::mt19937 rng(1);
  for (const char* op : {"Sigmoid", "Tanh", "Erf", "Exp", "Gelu"}) {
    for (const Shape& shape : {Shape{}, Shape{0}, Shape{1}, Shape{17}, Shape{3, 70001}}) {
      Tensor x = random_tensor(shape, rng, 12.0f);
      if (x.values.size() > 20) {
        x.values[3] = std::numeric_limits<float>::quiet_NaN();
        x.values[4] = std::numeric_limits<float>::infinity();
        x.values[5] = -std::numeric_limits<float>::infinity();
      }
      check(std::string(op) + shape_to_string(shape), op, AttributeMap{}, {x}, shape, 1e-6f);
    }
  }
  AttributeMap tanh_form;
  tanh_form.set("approximate", Attribute::of_string("tanh"));
  Tensor x = random_tensor(Shape{2, 40000}, rng, 8.0f);
  check("Gelu tanh", "Gelu", tanh_form, {x}, x.shape, 1e-6f);
}

TEST(CpuFastPaths, SoftmaxAndLogSoftmaxRows) {
  std::mt19937 rng(2);
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    for (const Shape& shape : {Shape{1, 1}, Shape{3, 15}, Shape{2, 4, 17}, Shape{300, 128}, Shape{5, 0}}) {
      Tensor x = random_tensor(shape, rng, 20.0f);
      check(std::string(op) + shape_to_string(shape), op, AttributeMap{}, {x}, shape, 2e-6f);
    }
    Tensor special = random_tensor(Shape{4, 20}, rng);
    special.values[3] = std::numeric_limits<float>::quiet_NaN();                  // row 0: all NaN
    special.values[25] = std::numeric_limits<float>::infinity();                  // row 1: NaN (inf - inf)
    for (int i = 40; i < 60; ++i) special.values[i] = -std::numeric_limits<float>::infinity();  // row 2
    special.values[61] = -std::numeric_limits<float>::infinity();                 // row 3: one zero
    check(std::string(op) + " special values", op, AttributeMap{}, {special}, special.shape, 2e-6f);
    AttributeMap middle_axis;  // not the last axis: the reference loop
    middle_axis.set("axis", Attribute::of_int(1));
    Tensor x = random_tensor(Shape{2, 5, 3}, rng);
    check(std::string(op) + " axis 1", op, middle_axis, {x}, x.shape, 2e-6f);
  }
}

TEST(CpuFastPaths, LayerNormalizationRows) {
  std::mt19937 rng(3);
  for (const Shape& shape : {Shape{1, 1}, Shape{3, 7}, Shape{2, 5, 33}, Shape{130, 768}}) {
    Tensor x = random_tensor(shape, rng);
    const Shape normalized{shape.back()};
    Tensor scale = random_tensor(normalized, rng);
    Tensor bias = random_tensor(normalized, rng);
    check("LayerNorm" + shape_to_string(shape), "LayerNormalization", AttributeMap{}, {x, scale, bias}, shape, 1e-5f);
    check("LayerNorm no bias" + shape_to_string(shape), "LayerNormalization", AttributeMap{}, {x, scale}, shape, 1e-5f);
  }
  AttributeMap two_axes;
  two_axes.set("axis", Attribute::of_int(-2));
  Tensor x = random_tensor(Shape{4, 3, 10}, rng);
  Tensor scale = random_tensor(Shape{10}, rng);  // broadcast over the normalized [3, 10]
  check("LayerNorm axis -2", "LayerNormalization", two_axes, {x, scale}, x.shape, 1e-5f);
  x.values[7] = std::numeric_limits<float>::quiet_NaN();
  check("LayerNorm NaN", "LayerNormalization", two_axes, {x, scale}, x.shape, 1e-5f);
}

TEST(CpuFastPaths, ReductionsOverContiguousAndOtherAxes) {
  std::mt19937 rng(4);
  struct Case {
    Shape x;
    std::vector<int64_t> axes;
    Shape y;  // keepdims = 1
  };
  const std::vector<Case> cases{
      {{2, 64, 7, 7}, {2, 3}, {2, 64, 1, 1}},      // NCHW global pooling: rows
      {{2, 7, 7, 600}, {1, 2}, {2, 1, 1, 600}},    // NHWC global pooling: columns, strips of 512
      {{1, 1, 5, 1, 3}, {2, 3}, {1, 1, 1, 1, 3}},  // size-1 axes around the block
      {{3, 4, 5}, {0}, {1, 4, 5}},                 // leading block
      {{3, 4, 5}, {0, 2}, {1, 4, 1}},              // not one block: the reference loop
      {{6, 9}, {0, 1}, {1, 1}},                    // everything
      {{40000, 3}, {0}, {1, 3}},                   // long columns
  };
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax"}) {
    for (const Case& c : cases) {
      Tensor x = random_tensor(c.x, rng);
      check(std::string(op) + shape_to_string(c.x), op, AttributeMap{}, {x}, c.y, 1e-6f, &c.axes);
    }
    Tensor special = random_tensor(Shape{3, 40}, rng);
    special.values[5] = std::numeric_limits<float>::quiet_NaN();
    special.values[45] = std::numeric_limits<float>::infinity();
    const std::vector<int64_t> last{1};
    check(std::string(op) + " NaN/Inf", op, AttributeMap{}, {special}, Shape{3, 1}, 1e-6f, &last);
  }
}

}  // namespace
}  // namespace kiln::cpu
