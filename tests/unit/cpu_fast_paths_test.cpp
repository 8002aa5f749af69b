// The CPU kernels' vectorised, threaded fast paths (simd_math.hpp: unary activations, Softmax,
// LogSoftmax, LayerNormalization, ReduceSum/Mean/Max over a contiguous block of axes) through the
// registered kernels, against the same kernels at KILN_CPU_SIMD=scalar (the reference loops), on
// edge shapes (rows of 1, vector tails, size-1 axes, reductions the fast path declines) with and
// without a thread pool, NaN and infinities included.
#include <gtest/gtest.h>

// GCC 13 misreads the stride loops below as freeing a shifted pointer (a false -Wfree-nonheap-object).
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "base/attributes.hpp"
#include "float_comparison.hpp"
#include "scoped_env.hpp"

namespace kiln::cpu {
namespace {

using testing::ScopedEnv;

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
  testing::expect_floats_close(run(op, attrs, inputs, out_shape, axes), want, tolerance, name + " (one thread)");
  ThreadPool pool(3);
  const IntraOpScope scope(&pool);
  testing::expect_floats_close(run(op, attrs, inputs, out_shape, axes), want, tolerance, name + " (pool of 3)");
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

// [N, C, H, W] -> [N, H, W, C] and back.
Tensor permuted(const Tensor& t, bool to_nhwc) {
  const Shape& s = t.shape;
  Tensor out{to_nhwc ? Shape{s[0], s[2], s[3], s[1]} : Shape{s[0], s[3], s[1], s[2]}, std::vector<float>(t.values.size())};
  const int64_t n = s[0];
  const int64_t c = to_nhwc ? s[1] : s[3], h = to_nhwc ? s[2] : s[1], w = to_nhwc ? s[3] : s[2];
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ic = 0; ic < c; ++ic)
      for (int64_t ih = 0; ih < h; ++ih)
        for (int64_t iw = 0; iw < w; ++iw) {
          const int64_t nchw = ((in * c + ic) * h + ih) * w + iw, nhwc = ((in * h + ih) * w + iw) * c + ic;
          out.values[static_cast<size_t>(to_nhwc ? nhwc : nchw)] = t.values[static_cast<size_t>(to_nhwc ? nchw : nhwc)];
        }
  return out;
}

TEST(CpuFastPaths, NhwcPoolsMatchTheNchwKernelsWithNanAndThreads) {
  std::mt19937 rng(6);
  struct Case {
    std::string op;
    std::vector<std::pair<std::string, Attribute>> attrs;
  };
  const std::vector<Case> cases{
      {"MaxPool", {{"kernel_shape", Attribute::of_ints({3, 3})}, {"strides", Attribute::of_ints({2, 2})},
                   {"pads", Attribute::of_ints({1, 1, 1, 1})}}},
      {"MaxPool", {{"kernel_shape", Attribute::of_ints({2, 3})}, {"dilations", Attribute::of_ints({2, 1})},
                   {"ceil_mode", Attribute::of_int(1)}, {"strides", Attribute::of_ints({2, 2})}}},
      {"AveragePool", {{"kernel_shape", Attribute::of_ints({3, 3})}, {"pads", Attribute::of_ints({1, 0, 2, 1})},
                       {"count_include_pad", Attribute::of_int(1)}}},
      {"AveragePool", {{"kernel_shape", Attribute::of_ints({2, 2})}, {"strides", Attribute::of_ints({2, 2})}}},
      {"GlobalAveragePool", {}},
      {"GlobalMaxPool", {}},
  };
  for (const Shape& shape : {Shape{2, 5, 9, 8}, Shape{1, 300, 6, 7}, Shape{3, 1, 1, 1}}) {
    Tensor nchw = random_tensor(shape, rng);
    nchw.values[1] = std::numeric_limits<float>::quiet_NaN();
    nchw.values[nchw.values.size() / 2] = -std::numeric_limits<float>::infinity();
    const Tensor nhwc = permuted(nchw, true);
    for (const Case& c : cases) {
      AttributeMap attrs;
      for (const auto& [name, value] : c.attrs) attrs.set(name, value);
      // The NCHW kernel's output shape, from a first run on a large enough buffer.
      const bool global = c.op.rfind("Global", 0) == 0;
      Shape y_nchw{shape[0], shape[1], 1, 1};
      if (!global) {
        const int64_t kh = c.attrs[0].second.ints[0], kw = c.attrs[0].second.ints[1];
        int64_t pad_h = 0, pad_w = 0, dil_h = 1, stride = 1;
        bool ceil = false;
        for (const auto& [name, value] : c.attrs) {
          if (name == "strides") stride = value.ints[0];  // the same along both axes here
          if (name == "pads") pad_h = value.ints[0] + value.ints[2], pad_w = value.ints[1] + value.ints[3];
          if (name == "dilations") dil_h = value.ints[0];
          if (name == "ceil_mode") ceil = true;
        }
        auto extent = [&](int64_t in, int64_t k, int64_t pad, int64_t dil) {
          const int64_t span = in + pad - ((k - 1) * dil + 1);
          return (ceil ? (span + stride - 1) / stride : span / stride) + 1;
        };
        if (shape[2] + pad_h < (kh - 1) * dil_h + 1 || shape[3] + pad_w < kw) continue;  // window too large
        y_nchw = Shape{shape[0], shape[1], extent(shape[2], kh, pad_h, dil_h), extent(shape[3], kw, pad_w, 1)};
      }
      const Shape y_nhwc{y_nchw[0], y_nchw[2], y_nchw[3], y_nchw[1]};
      const Tensor want_nchw{y_nchw, run(c.op, attrs, {nchw}, y_nchw)};
      const std::vector<float> want = permuted(want_nchw, true).values;
      AttributeMap nhwc_attrs = attrs;
      nhwc_attrs.set("kiln_layout", Attribute::of_string("NHWC"));
      const std::string name = c.op + shape_to_string(shape);
      testing::expect_floats_close(run(c.op, nhwc_attrs, {nhwc}, y_nhwc), want, 1e-6f, name + " (one thread)");
      ThreadPool pool(3);
      const IntraOpScope scope(&pool);
      testing::expect_floats_close(run(c.op, nhwc_attrs, {nhwc}, y_nhwc), want, 1e-6f, name + " (pool of 3)");
    }
  }
}

// Transposes whose output rows are short and strided in the input run in tiles: every element
// against the index arithmetic, for float32 and 16-bit elements, on one thread and split over a
// pool (blocks of rows and positions of the other axes).
TEST(CpuFastPaths, TransposesInTilesMoveEveryElement) {
  for (int pooled = 0; pooled < 2; ++pooled) {
    ThreadPool pool(3);
    std::optional<IntraOpScope> scope;
    if (pooled) scope.emplace(&pool);
    struct Case {
      Shape in;
      std::vector<int64_t> perm;
    };
    const std::vector<Case> cases{
        {{1, 3, 224, 224}, {0, 2, 3, 1}},  // NCHW -> NHWC (rows of 3)
        {{2, 17, 5, 3}, {0, 2, 3, 1}},
        {{2, 5, 3, 17}, {0, 3, 1, 2}},     // NHWC -> NCHW
        {{7, 33}, {1, 0}},
        {{4, 3, 2}, {2, 1, 0}},
        {{3, 1, 40, 5}, {3, 1, 2, 0}},
        {{4, 3, 100, 101}, {0, 2, 3, 1}},  // several blocks of rows at several positions
    };
    for (const Case& c : cases) {
      const size_t rank = c.in.size();
      Shape out_shape(rank);
      for (size_t i = 0; i < rank; ++i) out_shape[i] = c.in[static_cast<size_t>(c.perm[i])];
      const int64_t total = shape_numel(c.in);
      std::vector<float> x(static_cast<size_t>(total));
      std::vector<uint16_t> x16(static_cast<size_t>(total));
      for (int64_t i = 0; i < total; ++i) {
        x[static_cast<size_t>(i)] = static_cast<float>(i);
        x16[static_cast<size_t>(i)] = static_cast<uint16_t>(i * 7);
      }
      std::vector<float> y(static_cast<size_t>(total), -1.0f);
      std::vector<uint16_t> y16(static_cast<size_t>(total), 0);
      AttributeMap attrs;
      attrs.set("perm", Attribute::of_ints(c.perm));
      for (int half = 0; half < 2; ++half) {
        std::vector<TensorView> in{half ? TensorView{DType::kFloat16, c.in, x16.data()} : TensorView{DType::kFloat32, c.in, x.data()}};
        std::vector<TensorView> out{half ? TensorView{DType::kFloat16, out_shape, y16.data()}
                                         : TensorView{DType::kFloat32, out_shape, y.data()}};
        KernelContext ctx{"t", "Transpose", attrs, in, out};
        cpu_kernels().find("Transpose")->fn(ctx);
      }
      // Walk the output index and compare with the input element it names.
      std::vector<int64_t> index(rank, 0);
      std::vector<int64_t> in_strides(rank, 1);
      // (Counting down from rank, not rank - 1: no wrap-around for GCC 13 to see at rank 0.)
      for (size_t i = rank; i-- > 1;) in_strides[i - 1] = in_strides[i] * c.in[i];
      size_t errors = 0;
      for (int64_t o = 0; o < total && errors < 5; ++o) {
        int64_t source = 0;
        for (size_t i = 0; i < rank; ++i) source += index[i] * in_strides[static_cast<size_t>(c.perm[i])];
        if (y[static_cast<size_t>(o)] != static_cast<float>(source) ||
            y16[static_cast<size_t>(o)] != static_cast<uint16_t>(source * 7)) {
          ++errors;
          ADD_FAILURE() << shape_to_string(c.in) << (pooled ? " (pool of 3)" : "") << ": output element " << o
                        << " is " << y[static_cast<size_t>(o)] << ", expected input element " << source;
        }
        for (size_t i = rank; i-- > 0;) {
          if (++index[i] < out_shape[i]) break;
          index[i] = 0;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kiln::cpu
