// Tests of the neural-network op families on the CPU backend (conv, gemm, normalization, pooling,
// softmax, reduce, resize): kernels against naive double-precision references written here, infer
// functions with dynamic dims and unknown values, and error reporting.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "node_error_expectation.hpp"
#include "base/half.hpp"
#include "ops/op_registry.hpp"

namespace kiln::cpu {
namespace {

using Index = std::vector<int64_t>;

// ---- tensors and running ----------------------------------------------------------------------

HostTensor make_float(Shape shape, const std::vector<float>& values) {
  HostTensor t(DType::kFloat32, std::move(shape));
  EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

HostTensor make_int64(Shape shape, const std::vector<int64_t>& values) {
  HostTensor t(DType::kInt64, std::move(shape));
  EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
  std::copy(values.begin(), values.end(), t.data<int64_t>());
  return t;
}

HostTensor random_float(Shape shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  HostTensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

HostTensor to_half(const HostTensor& t) {
  HostTensor out(DType::kFloat16, t.shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    out.data<uint16_t>()[i] = float_to_half(t.data<float>()[i]);
  return out;
}

AttributeMap make_attrs(std::vector<std::pair<std::string, Attribute>> items) {
  AttributeMap attrs;
  for (auto& [name, value] : items) attrs.set(name, std::move(value));
  return attrs;
}

Attribute ints(std::vector<int64_t> v) {
  return Attribute::of_ints(std::move(v));
}
Attribute int_attr(int64_t v) {
  return Attribute::of_int(v);
}
Attribute float_attr(float v) {
  return Attribute::of_float(v);
}
Attribute str(std::string v) {
  return Attribute::of_string(std::move(v));
}

std::vector<HostTensor> run(const std::string& op, const AttributeMap& attrs,
                            std::vector<const HostTensor*> inputs, size_t num_outputs = 1) {
  return run_node_on_cpu("test_node", op, attrs, inputs, num_outputs);
}

HostTensor run1(const std::string& op, const AttributeMap& attrs,
                std::vector<const HostTensor*> inputs) {
  return run(op, attrs, std::move(inputs)).at(0);
}

void expect_close(const HostTensor& got, const Shape& shape, const std::vector<double>& want,
                  double tolerance, const std::string& what) {
  ASSERT_EQ(got.shape, shape) << what;
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.size()) << what;
  const TensorView view = view_of(got);
  for (size_t i = 0; i < want.size(); ++i) {
    const double value = read_as_double(view, static_cast<int64_t>(i));
    ASSERT_NEAR(value, want[i], tolerance * (1.0 + std::abs(want[i]))) << what << ": element " << i;
  }
}

// Calls fn(index) for every index of `shape` in row-major order.
void for_each_index(const Shape& shape, const std::function<void(const Index&)>& fn) {
  const int64_t total = shape_numel(shape);
  Index index(shape.size(), 0);
  for (int64_t flat = 0; flat < total; ++flat) {
    fn(index);
    for (size_t i = shape.size(); i-- > 0;) {
      if (++index[i] < shape[i]) break;
      index[i] = 0;
    }
  }
}

int64_t flat_index(const Shape& shape, const Index& index) {
  int64_t flat = 0;
  for (size_t i = 0; i < shape.size(); ++i) flat = flat * shape[i] + index[i];
  return flat;
}

double at(const HostTensor& t, const Index& index) {
  return read_as_double(view_of(t), flat_index(t.shape, index));
}

using unit_test::expect_node_error;

// ---- Conv -------------------------------------------------------------------------------------

struct ConvCase {
  Shape x;
  Shape w;
  int64_t group = 1;
  std::vector<int64_t> strides, dilations, pads;  // empty: attribute absent
  std::string auto_pad;                           // empty: attribute absent
  bool bias = true;
};

// Naive convolution with explicit begin pads; the output extents are given.
std::vector<double> reference_conv(const HostTensor& x, const HostTensor& w, const HostTensor* b,
                                   int64_t group, const Index& strides, const Index& dilations,
                                   const Index& pad_begin, const Shape& out_shape) {
  const size_t spatial = x.shape.size() - 2;
  const int64_t group_in = x.shape[1] / group;
  const int64_t group_out = w.shape[0] / group;
  const Shape kernel(w.shape.begin() + 2, w.shape.end());
  std::vector<double> out;
  for_each_index(out_shape, [&](const Index& o) {
    const int64_t n = o[0];
    const int64_t m = o[1];
    const int64_t g = m / group_out;
    double sum = b ? at(*b, {m}) : 0.0;
    for (int64_t c = 0; c < group_in; ++c) {
      for_each_index(kernel, [&](const Index& k) {
        Index xi{n, g * group_in + c};
        for (size_t s = 0; s < spatial; ++s) {
          const int64_t pos = o[2 + s] * strides[s] - pad_begin[s] + k[s] * dilations[s];
          if (pos < 0 || pos >= x.shape[2 + s]) return;
          xi.push_back(pos);
        }
        Index wi{m, c};
        wi.insert(wi.end(), k.begin(), k.end());
        sum += at(x, xi) * at(w, wi);
      });
    }
    out.push_back(sum);
  });
  return out;
}

void check_conv(const ConvCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const HostTensor x = random_float(c.x, rng);
  const HostTensor w = random_float(c.w, rng);
  const HostTensor b = random_float({c.w[0]}, rng);
  const size_t spatial = c.x.size() - 2;
  AttributeMap attrs;
  if (c.group != 1) attrs.set("group", int_attr(c.group));
  if (!c.strides.empty()) attrs.set("strides", ints(c.strides));
  if (!c.dilations.empty()) attrs.set("dilations", ints(c.dilations));
  if (!c.pads.empty()) attrs.set("pads", ints(c.pads));
  if (!c.auto_pad.empty()) attrs.set("auto_pad", str(c.auto_pad));

  const Index strides = c.strides.empty() ? Index(spatial, 1) : c.strides;
  const Index dilations = c.dilations.empty() ? Index(spatial, 1) : c.dilations;
  Index pad_begin(spatial, 0);
  Shape out_shape{c.x[0], c.w[0]};
  for (size_t s = 0; s < spatial; ++s) {
    const int64_t in = c.x[2 + s];
    const int64_t extent = (c.w[2 + s] - 1) * dilations[s] + 1;
    if (c.auto_pad == "SAME_UPPER" || c.auto_pad == "SAME_LOWER") {
      const int64_t out = (in + strides[s] - 1) / strides[s];
      const int64_t total = std::max<int64_t>(0, (out - 1) * strides[s] + extent - in);
      pad_begin[s] = c.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      out_shape.push_back(out);
    } else if (c.auto_pad == "VALID") {
      out_shape.push_back((in - extent) / strides[s] + 1);
    } else {
      const int64_t pb = c.pads.empty() ? 0 : c.pads[s];
      const int64_t pe = c.pads.empty() ? 0 : c.pads[s + spatial];
      pad_begin[s] = pb;
      out_shape.push_back((in + pb + pe - extent) / strides[s] + 1);
    }
  }
  std::vector<const HostTensor*> inputs{&x, &w};
  if (c.bias) inputs.push_back(&b);
  const HostTensor y = run1("Conv", attrs, inputs);
  const std::vector<double> want = reference_conv(x, w, c.bias ? &b : nullptr, c.group, strides,
                                                  dilations, pad_begin, out_shape);
  expect_close(y, out_shape, want, 1e-4,
               "Conv " + shape_to_string(c.x) + " * " + shape_to_string(c.w) + " " + c.auto_pad);
}

TEST(CpuNnConv, TwoDimensionalWithGroupsStridesDilationsPads) {
  check_conv({{2, 4, 7, 6}, {6, 2, 3, 2}, 2, {2, 1}, {1, 2}, {1, 0, 2, 1}, "", true}, 1);
  check_conv({{1, 3, 8, 8}, {5, 3, 3, 3}, 1, {}, {}, {1, 1, 1, 1}, "", false}, 2);
  check_conv({{2, 6, 9, 5}, {6, 2, 2, 3}, 3, {3, 2}, {2, 1}, {0, 1, 1, 0}, "", true}, 3);
}

TEST(CpuNnConv, OneAndThreeDimensional) {
  check_conv({{1, 3, 10}, {4, 3, 3}, 1, {2}, {2}, {2, 1}, "", true}, 4);
  check_conv({{2, 4, 12}, {2, 2, 4}, 2, {}, {}, {}, "", false}, 5);
  check_conv({{1, 2, 4, 5, 4}, {3, 2, 2, 3, 2}, 1, {1, 2, 1}, {}, {1, 1, 0, 0, 1, 1}, "", true}, 6);
}

TEST(CpuNnConv, AutoPadModes) {
  for (const char* mode : {"SAME_UPPER", "SAME_LOWER", "VALID"}) {
    check_conv({{1, 2, 9, 8}, {3, 2, 4, 3}, 1, {2, 3}, {}, {}, mode, true}, 7);
    check_conv({{1, 2, 11}, {2, 2, 3}, 1, {2}, {2}, {}, mode, false}, 8);
  }
}

TEST(CpuNnConv, DepthwiseAndPointwise) {
  check_conv({{2, 5, 7, 7}, {5, 1, 3, 3}, 5, {}, {}, {1, 1, 1, 1}, "", true}, 9);
  check_conv({{1, 4, 8, 6}, {8, 1, 3, 3}, 4, {2, 1}, {1, 2}, {1, 2, 1, 0}, "", false}, 10);
  check_conv({{1, 3, 9}, {3, 1, 5}, 3, {}, {}, {}, "SAME_LOWER", true}, 11);
  check_conv({{2, 6, 5, 4}, {4, 6, 1, 1}, 1, {}, {}, {}, "", true}, 12);
  check_conv({{1, 6, 5, 4}, {4, 3, 1, 1}, 2, {}, {}, {}, "", false}, 13);
}

TEST(CpuNnConv, KernelShapeAttributeMustMatchWeights) {
  std::mt19937 rng(14);
  const HostTensor x = random_float({1, 2, 5, 5}, rng);
  const HostTensor w = random_float({3, 2, 3, 3}, rng);
  const HostTensor y = run1("Conv", make_attrs({{"kernel_shape", ints({3, 3})}}), {&x, &w});
  EXPECT_EQ(y.shape, (Shape{1, 3, 3, 3}));
  expect_node_error(
      [&] {
        run1("Conv", make_attrs({{"kernel_shape", ints({2, 3})}}), {&x, &w});
      },
      ErrorCode::kInvalidArgument, "kernel_shape");
}

TEST(CpuNnConv, ResNetSizedConvolutionIsFast) {
  std::mt19937 rng(15);
  const HostTensor x = random_float({1, 64, 56, 56}, rng);
  const HostTensor w = random_float({64, 64, 3, 3}, rng);
  const AttributeMap attrs = make_attrs({{"pads", ints({1, 1, 1, 1})}});
  run1("Conv", attrs, {&x, &w});  // warm up BLAS threads
  const auto start = std::chrono::steady_clock::now();
  const HostTensor y = run1("Conv", attrs, {&x, &w});
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(y.shape, (Shape{1, 64, 56, 56}));
  // A few ms on an idle machine; the bound leaves room for a loaded shared CI box.
  EXPECT_LT(ms, 250.0);
  // Spot-check a handful of outputs against the naive loop.
  for (const Index& o : {Index{0, 0, 0, 0}, Index{0, 17, 30, 55}, Index{0, 63, 55, 1}}) {
    double sum = 0.0;
    for (int64_t c = 0; c < 64; ++c) {
      for (int64_t kh = 0; kh < 3; ++kh) {
        for (int64_t kw = 0; kw < 3; ++kw) {
          const int64_t ih = o[2] - 1 + kh;
          const int64_t iw = o[3] - 1 + kw;
          if (ih < 0 || ih >= 56 || iw < 0 || iw >= 56) continue;
          sum += at(x, {0, c, ih, iw}) * at(w, {o[1], c, kh, kw});
        }
      }
    }
    EXPECT_NEAR(at(y, o), sum, 1e-3);
  }
}

TEST(CpuNnConv, LargeImagesAreProcessedInBands) {
  // 16 channels * 3x3 taps * 260x258 outputs exceed one im2col band, so several bands run.
  std::mt19937 rng(16);
  const HostTensor x = random_float({1, 16, 260, 260}, rng);
  const HostTensor w = random_float({4, 16, 3, 3}, rng);
  const HostTensor b = random_float({4}, rng);
  const HostTensor y = run1(
      "Conv", make_attrs({{"pads", ints({1, 0, 1, 0})}, {"strides", ints({1, 1})}}), {&x, &w, &b});
  ASSERT_EQ(y.shape, (Shape{1, 4, 260, 258}));
  for (const Index& o :
       {Index{0, 0, 0, 0}, Index{0, 1, 129, 7}, Index{0, 2, 200, 257}, Index{0, 3, 259, 100}}) {
    double sum = at(b, {o[1]});
    for (int64_t c = 0; c < 16; ++c) {
      for (int64_t kh = 0; kh < 3; ++kh) {
        for (int64_t kw = 0; kw < 3; ++kw) {
          const int64_t ih = o[2] - 1 + kh;
          const int64_t iw = o[3] + kw;
          if (ih < 0 || ih >= 260) continue;
          sum += at(x, {0, c, ih, iw}) * at(w, {o[1], c, kh, kw});
        }
      }
    }
    EXPECT_NEAR(at(y, o), sum, 1e-4) << shape_to_string(o);
  }
}

// ---- Gemm / MatMul ----------------------------------------------------------------------------

TEST(CpuNnGemm, AllTransposeAlphaBetaAndBroadcastCombinations) {
  std::mt19937 rng(20);
  const int64_t m = 5, k = 7, n = 4;
  const std::vector<Shape> c_shapes = {{}, {n}, {m, 1}, {m, n}, {1, n}, {1}};
  for (int trans_a = 0; trans_a < 2; ++trans_a) {
    for (int trans_b = 0; trans_b < 2; ++trans_b) {
      for (int c_case = -1; c_case < static_cast<int>(c_shapes.size()); ++c_case) {
        const HostTensor a = random_float(trans_a ? Shape{k, m} : Shape{m, k}, rng);
        const HostTensor b = random_float(trans_b ? Shape{n, k} : Shape{k, n}, rng);
        const HostTensor c =
            random_float(c_case < 0 ? Shape{1} : c_shapes[static_cast<size_t>(c_case)], rng);
        const float alpha = c_case == 2 ? 1.0f : 0.75f;
        const float beta = c_case == 3 ? 1.0f : -1.5f;
        AttributeMap attrs =
            make_attrs({{"transA", int_attr(trans_a)}, {"transB", int_attr(trans_b)}});
        if (c_case != 2) attrs.set("alpha", float_attr(alpha));
        if (c_case != 3) attrs.set("beta", float_attr(beta));
        std::vector<const HostTensor*> inputs{&a, &b};
        if (c_case >= 0) inputs.push_back(&c);
        const HostTensor y = run1("Gemm", attrs, inputs);
        std::vector<double> want;
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double sum = 0.0;
            for (int64_t p = 0; p < k; ++p) {
              sum += at(a, trans_a ? Index{p, i} : Index{i, p}) *
                     at(b, trans_b ? Index{j, p} : Index{p, j});
            }
            double c_value = 0.0;
            if (c_case >= 0) {
              const Shape& cs = c.shape;
              Index ci;
              if (cs.size() == 2) ci = {cs[0] == 1 ? 0 : i, cs[1] == 1 ? 0 : j};
              if (cs.size() == 1) ci = {cs[0] == 1 ? 0 : j};
              c_value = at(c, ci);
            }
            want.push_back(alpha * sum + (c_case >= 0 ? beta * c_value : 0.0));
          }
        }
        expect_close(y, {m, n}, want, 1e-5,
                     "Gemm transA=" + std::to_string(trans_a) + " transB=" +
                         std::to_string(trans_b) + " C case " + std::to_string(c_case));
      }
    }
  }
}

// numpy matmul reference, written for the shapes the test uses.
std::vector<double> reference_matmul(const HostTensor& a, const HostTensor& b, Shape* out_shape) {
  Shape as = a.shape, bs = b.shape;
  const bool a_vector = as.size() == 1, b_vector = bs.size() == 1;
  if (a_vector) as.insert(as.begin(), 1);
  if (b_vector) bs.push_back(1);
  const size_t batch_rank = std::max(as.size(), bs.size()) - 2;
  while (as.size() < batch_rank + 2) as.insert(as.begin(), 1);
  while (bs.size() < batch_rank + 2) bs.insert(bs.begin(), 1);
  Shape batch(batch_rank);
  for (size_t i = 0; i < batch_rank; ++i) batch[i] = std::max(as[i], bs[i]);
  const int64_t m = as[batch_rank], k = as[batch_rank + 1], n = bs[batch_rank + 1];
  *out_shape = batch;
  if (!a_vector) out_shape->push_back(m);
  if (!b_vector) out_shape->push_back(n);
  std::vector<double> out;
  for_each_index(batch, [&](const Index& bi) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          Index ai, bj;
          for (size_t d = 0; d < batch_rank; ++d) {
            ai.push_back(as[d] == 1 ? 0 : bi[d]);
            bj.push_back(bs[d] == 1 ? 0 : bi[d]);
          }
          ai.push_back(i);
          ai.push_back(p);
          bj.push_back(p);
          bj.push_back(j);
          sum += a.data<float>()[flat_index(as, ai)] * b.data<float>()[flat_index(bs, bj)];
        }
        out.push_back(sum);
      }
    }
  });
  return out;
}

TEST(CpuNnMatMul, VectorsMatricesBatchesAndBroadcast) {
  std::mt19937 rng(21);
  const std::vector<std::pair<Shape, Shape>> cases = {{{6}, {6}},
                                                      {{6}, {6, 3}},
                                                      {{4, 6}, {6}},
                                                      {{4, 6}, {6, 3}},
                                                      {{2, 4, 6}, {6, 3}},
                                                      {{6}, {2, 6, 3}},
                                                      {{2, 1, 4, 6}, {3, 6, 5}},
                                                      {{3, 4, 6}, {3, 6, 2}},
                                                      {{1, 4, 6}, {2, 3, 6, 2}},
                                                      {{2, 3, 4, 6}, {6}}};
  for (const auto& [sa, sb] : cases) {
    const HostTensor a = random_float(sa, rng);
    const HostTensor b = random_float(sb, rng);
    Shape out_shape;
    const std::vector<double> want = reference_matmul(a, b, &out_shape);
    expect_close(run1("MatMul", {}, {&a, &b}), out_shape, want, 1e-5,
                 "MatMul " + shape_to_string(sa) + " x " + shape_to_string(sb));
  }
  const HostTensor a = random_float({2, 3}, rng);
  const HostTensor b = random_float({4, 2}, rng);
  expect_node_error([&] { run1("MatMul", {}, {&a, &b}); }, ErrorCode::kInvalidArgument, "K");
}

// ---- normalization ----------------------------------------------------------------------------

TEST(CpuNnNormalization, BatchNormalizationInferenceMode) {
  std::mt19937 rng(30);
  const HostTensor x = random_float({2, 3, 4, 5}, rng);
  const HostTensor scale = random_float({3}, rng);
  const HostTensor bias = random_float({3}, rng);
  const HostTensor mean = random_float({3}, rng);
  const HostTensor var = random_float({3}, rng, 0.1f, 2.0f);
  const float epsilon = 1e-3f;
  const HostTensor y = run1("BatchNormalization", make_attrs({{"epsilon", float_attr(epsilon)}}),
                            {&x, &scale, &bias, &mean, &var});
  std::vector<double> want;
  for_each_index(x.shape, [&](const Index& i) {
    const Index c{i[1]};
    want.push_back((at(x, i) - at(mean, c)) / std::sqrt(at(var, c) + epsilon) * at(scale, c) +
                   at(bias, c));
  });
  expect_close(y, x.shape, want, 1e-5, "BatchNormalization");

  expect_node_error(
      [&] {
        run1("BatchNormalization", make_attrs({{"training_mode", int_attr(1)}}),
             {&x, &scale, &bias, &mean, &var});
      },
      ErrorCode::kUnsupported, "training_mode");
  expect_node_error(
      [&] {
        run("BatchNormalization", {}, {&x, &scale, &bias, &mean, &var}, 3);
      },
      ErrorCode::kUnsupported, "output");
  const HostTensor wrong = random_float({4}, rng);
  expect_node_error(
      [&] {
        run1("BatchNormalization", {}, {&x, &wrong, &bias, &mean, &var});
      },
      ErrorCode::kInvalidArgument, "scale");
}

TEST(CpuNnNormalization, LayerNormalizationOverTrailingAxesWithStatistics) {
  std::mt19937 rng(31);
  const HostTensor x = random_float({2, 3, 4}, rng, -2.0f, 3.0f);
  for (int64_t axis : {-1, 1, 0}) {
    const size_t first = static_cast<size_t>(axis < 0 ? axis + 3 : axis);
    const Shape normalized(x.shape.begin() + static_cast<int64_t>(first), x.shape.end());
    const HostTensor scale = random_float(normalized, rng);
    const HostTensor bias = random_float(normalized, rng);
    const float epsilon = 1e-4f;
    const auto outputs =
        run("LayerNormalization",
            make_attrs({{"axis", int_attr(axis)}, {"epsilon", float_attr(epsilon)}}),
            {&x, &scale, &bias}, 3);
    Shape stats_shape = x.shape;
    for (size_t i = first; i < 3; ++i) stats_shape[i] = 1;
    std::vector<double> want_y, want_mean, want_inv;
    for_each_index(stats_shape, [&](const Index& row) {
      std::vector<Index> members;
      for_each_index(normalized, [&](const Index& inner) {
        Index full(row.begin(), row.begin() + static_cast<int64_t>(first));
        full.insert(full.end(), inner.begin(), inner.end());
        members.push_back(full);
      });
      double mean = 0.0;
      for (const Index& i : members) mean += at(x, i);
      mean /= static_cast<double>(members.size());
      double var = 0.0;
      for (const Index& i : members) var += (at(x, i) - mean) * (at(x, i) - mean);
      var /= static_cast<double>(members.size());
      want_mean.push_back(mean);
      want_inv.push_back(1.0 / std::sqrt(var + epsilon));
    });
    for_each_index(x.shape, [&](const Index& i) {
      Index row = i;
      for (size_t d = first; d < 3; ++d) row[d] = 0;
      const int64_t r = flat_index(stats_shape, row);
      const Index inner(i.begin() + static_cast<int64_t>(first), i.end());
      want_y.push_back((at(x, i) - want_mean[static_cast<size_t>(r)]) *
                           want_inv[static_cast<size_t>(r)] * at(scale, inner) +
                       at(bias, inner));
    });
    const std::string what = "LayerNormalization axis " + std::to_string(axis);
    expect_close(outputs[0], x.shape, want_y, 1e-5, what);
    expect_close(outputs[1], stats_shape, want_mean, 1e-5, what + " Mean");
    expect_close(outputs[2], stats_shape, want_inv, 1e-5, what + " InvStdDev");
  }
  // Scale broadcast over the normalized shape, no bias.
  const HostTensor scale = make_float({1}, {2.0f});
  const HostTensor y =
      run1("LayerNormalization", make_attrs({{"axis", int_attr(1)}}), {&x, &scale});
  const HostTensor scale_full = make_float({3, 4}, std::vector<float>(12, 2.0f));
  const HostTensor y_full =
      run1("LayerNormalization", make_attrs({{"axis", int_attr(1)}}), {&x, &scale_full});
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y.data<float>()[i], y_full.data<float>()[i]);
  expect_node_error(
      [&] {
        run1("LayerNormalization", make_attrs({{"axis", int_attr(3)}}), {&x, &scale});
      },
      ErrorCode::kInvalidArgument, "axis");
}

// ---- pooling ----------------------------------------------------------------------------------

struct PoolCase {
  Shape x;
  std::vector<int64_t> kernel, strides, dilations, pads;
  bool ceil_mode = false;
  bool include_pad = false;
};

// ORT-compatible semantics: windows that would start in the end padding (ceil_mode) are dropped;
// the average divides by the window points inside [-pad_begin, in + pad_end) with
// count_include_pad, else by those inside the input.
std::vector<double> reference_pool(const HostTensor& x, const PoolCase& c, bool max,
                                   Shape* out_shape) {
  const size_t spatial = c.kernel.size();
  const Index strides = c.strides.empty() ? Index(spatial, 1) : c.strides;
  const Index dilations = c.dilations.empty() ? Index(spatial, 1) : c.dilations;
  *out_shape = {c.x[0], c.x[1]};
  for (size_t s = 0; s < spatial; ++s) {
    const int64_t span =
        c.x[2 + s] + c.pads[s] + c.pads[s + spatial] - ((c.kernel[s] - 1) * dilations[s] + 1);
    int64_t out = (c.ceil_mode ? (span + strides[s] - 1) / strides[s] : span / strides[s]) + 1;
    if (c.ceil_mode && (out - 1) * strides[s] >= c.x[2 + s] + c.pads[s]) --out;
    out_shape->push_back(out);
  }
  std::vector<double> result;
  for_each_index(*out_shape, [&](const Index& o) {
    double best = -std::numeric_limits<double>::infinity();
    double sum = 0.0;
    int64_t count = 0;
    for_each_index(Shape(c.kernel.begin(), c.kernel.end()), [&](const Index& k) {
      Index xi{o[0], o[1]};
      bool inside = true, in_padded = true;
      for (size_t s = 0; s < spatial; ++s) {
        const int64_t pos = o[2 + s] * strides[s] - c.pads[s] + k[s] * dilations[s];
        inside &= pos >= 0 && pos < c.x[2 + s];
        in_padded &= pos >= -c.pads[s] && pos < c.x[2 + s] + c.pads[s + spatial];
        xi.push_back(pos);
      }
      if (c.include_pad ? in_padded : inside) ++count;
      if (!inside) return;
      best = std::max(best, at(x, xi));
      sum += at(x, xi);
    });
    result.push_back(max ? best : sum / static_cast<double>(count));
  });
  return result;
}

void check_pool(const PoolCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const HostTensor x = random_float(c.x, rng);
  for (bool max : {true, false}) {
    AttributeMap attrs = make_attrs({{"kernel_shape", ints(c.kernel)},
                                     {"pads", ints(c.pads)},
                                     {"ceil_mode", int_attr(c.ceil_mode)}});
    if (!c.strides.empty()) attrs.set("strides", ints(c.strides));
    if (!c.dilations.empty()) attrs.set("dilations", ints(c.dilations));
    if (!max) attrs.set("count_include_pad", int_attr(c.include_pad));
    Shape out_shape;
    const std::vector<double> want = reference_pool(x, c, max, &out_shape);
    expect_close(run1(max ? "MaxPool" : "AveragePool", attrs, {&x}), out_shape, want, 1e-5,
                 std::string(max ? "MaxPool " : "AveragePool ") + shape_to_string(c.x));
  }
}

TEST(CpuNnPooling, MaxAndAverageWithPadsStridesDilationsAndCeilMode) {
  check_pool({{2, 3, 7, 6}, {3, 2}, {2, 2}, {}, {1, 0, 1, 1}, false, false}, 40);
  check_pool({{2, 3, 7, 6}, {3, 2}, {2, 2}, {}, {1, 0, 1, 1}, false, true}, 41);
  check_pool({{1, 2, 8, 7}, {3, 3}, {2, 3}, {}, {1, 1, 1, 1}, true, true}, 42);
  check_pool({{1, 2, 8, 7}, {3, 3}, {2, 3}, {}, {1, 1, 1, 1}, true, false}, 43);
  check_pool({{1, 2, 9, 9}, {2, 3}, {1, 2}, {2, 2}, {1, 2, 0, 1}, true, true}, 44);
  check_pool({{1, 1, 5, 5}, {2, 2}, {2, 2}, {}, {0, 0, 0, 0}, true, true}, 45);
  check_pool({{2, 2, 11}, {3}, {2}, {2}, {1, 1}, true, true}, 46);
  check_pool({{1, 2, 5, 4, 6}, {2, 2, 3}, {2, 1, 2}, {}, {0, 1, 1, 1, 0, 0}, false, true}, 47);
}

TEST(CpuNnPooling, MatchesOnnxRuntimeOnCeilModeExample) {
  // Expected values come from ONNX Runtime 1.32 (AveragePool, 5x5 input 1..25, kernel 3x3,
  // strides 2, pads 1, ceil_mode=1).
  std::vector<float> values(25);
  for (int i = 0; i < 25; ++i) values[static_cast<size_t>(i)] = static_cast<float>(i + 1);
  const HostTensor x = make_float({1, 1, 5, 5}, values);
  AttributeMap attrs = make_attrs({{"kernel_shape", ints({3, 3})},
                                   {"strides", ints({2, 2})},
                                   {"pads", ints({1, 1, 1, 1})},
                                   {"ceil_mode", int_attr(1)},
                                   {"count_include_pad", int_attr(1)}});
  expect_close(
      run1("AveragePool", attrs, {&x}), {1, 1, 3, 3},
      {1.7777778, 3.6666667, 3.1111112, 7.6666665, 13.0, 9.666667, 8.444445, 13.666667, 9.777778},
      1e-6, "AveragePool include pad");
  attrs.set("count_include_pad", int_attr(0));
  expect_close(run1("AveragePool", attrs, {&x}), {1, 1, 3, 3},
               {4, 5.5, 7, 11.5, 13, 14.5, 19, 20.5, 22}, 1e-6, "AveragePool exclude pad");
}

TEST(CpuNnPooling, GlobalPoolsAndIndicesOutput) {
  std::mt19937 rng(48);
  const HostTensor x = random_float({2, 3, 4, 5}, rng);
  std::vector<double> want_avg, want_max;
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t c = 0; c < 3; ++c) {
      double sum = 0.0, best = -1e30;
      for_each_index({4, 5}, [&](const Index& s) {
        sum += at(x, {n, c, s[0], s[1]});
        best = std::max(best, at(x, {n, c, s[0], s[1]}));
      });
      want_avg.push_back(sum / 20.0);
      want_max.push_back(best);
    }
  }
  expect_close(run1("GlobalAveragePool", {}, {&x}), {2, 3, 1, 1}, want_avg, 1e-6, "GAP");
  expect_close(run1("GlobalMaxPool", {}, {&x}), {2, 3, 1, 1}, want_max, 1e-6, "GMP");
  expect_node_error(
      [&] {
        // The Indices output is computed for NCHW only (tests/unit/integer_linear_ops_test.cpp).
        run("MaxPool", make_attrs({{"kernel_shape", ints({2, 2})}, {"kiln_layout", str("NHWC")}}), {&x}, 2);
      },
      ErrorCode::kUnsupported, "Indices");
  expect_node_error(
      [&] {
        run1("MaxPool", make_attrs({{"kernel_shape", ints({2})}}), {&x});
      },
      ErrorCode::kInvalidArgument, "kernel_shape");
  expect_node_error(
      [&] {
        run1("AveragePool", make_attrs({{"kernel_shape", ints({2, 2})}, {"auto_pad", str("SAME")}}),
             {&x});
      },
      ErrorCode::kInvalidArgument, "auto_pad");
}

TEST(CpuNnPooling, SameAutoPadKeepsCeilOfInputOverStride) {
  std::mt19937 rng(49);
  const HostTensor x = random_float({1, 1, 7, 7}, rng);
  for (const char* mode : {"SAME_UPPER", "SAME_LOWER"}) {
    const AttributeMap attrs = make_attrs(
        {{"kernel_shape", ints({2, 2})}, {"strides", ints({2, 2})}, {"auto_pad", str(mode)}});
    // 7 / 2 -> 4 windows; total pad 1, at the end (upper) or the start (lower).
    const bool upper = std::string(mode) == "SAME_UPPER";
    PoolCase c{{1, 1, 7, 7}, {2, 2}, {2, 2}, {}, upper ? Index{0, 0, 1, 1} : Index{1, 1, 0, 0}};
    Shape out_shape;
    const std::vector<double> want = reference_pool(x, c, true, &out_shape);
    expect_close(run1("MaxPool", attrs, {&x}), out_shape, want, 1e-6, mode);
  }
}

// ---- softmax ----------------------------------------------------------------------------------

TEST(CpuNnSoftmax, SoftmaxAndLogSoftmaxAlongEachAxis) {
  std::mt19937 rng(50);
  const HostTensor x = random_float({3, 4, 5}, rng, -30.0f, 30.0f);
  for (int64_t axis : {0, 1, 2, -1, -3}) {
    const size_t a = static_cast<size_t>(axis < 0 ? axis + 3 : axis);
    std::vector<double> want_soft, want_log;
    for_each_index(x.shape, [&](const Index& i) {
      double max_value = -1e300;
      for (int64_t j = 0; j < x.shape[a]; ++j) {
        Index k = i;
        k[a] = j;
        max_value = std::max(max_value, at(x, k));
      }
      double sum = 0.0;
      for (int64_t j = 0; j < x.shape[a]; ++j) {
        Index k = i;
        k[a] = j;
        sum += std::exp(at(x, k) - max_value);
      }
      want_soft.push_back(std::exp(at(x, i) - max_value) / sum);
      want_log.push_back(at(x, i) - max_value - std::log(sum));
    });
    const AttributeMap attrs = make_attrs({{"axis", int_attr(axis)}});
    expect_close(run1("Softmax", attrs, {&x}), x.shape, want_soft, 1e-5,
                 "Softmax axis " + std::to_string(axis));
    expect_close(run1("LogSoftmax", attrs, {&x}), x.shape, want_log, 1e-5,
                 "LogSoftmax axis " + std::to_string(axis));
  }
  // Large logits stay finite thanks to the max subtraction.
  const HostTensor big = make_float({2}, {1000.0f, 1000.0f});
  expect_close(run1("Softmax", {}, {&big}), {2}, {0.5, 0.5}, 1e-7, "Softmax large");
  expect_node_error(
      [&] {
        run1("Softmax", make_attrs({{"axis", int_attr(3)}}), {&x});
      },
      ErrorCode::kInvalidArgument, "axis");
}

TEST(CpuNnSoftmax, NaNPropagatesThroughSoftmaxMaxPoolAndReduceMax) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const HostTensor x = make_float({1, 1, 2, 2}, {1.0f, nan, 3.0f, 4.0f});
  const HostTensor soft = run1("Softmax", {}, {&x});
  EXPECT_TRUE(std::isnan(soft.data<float>()[0]));
  EXPECT_FALSE(std::isnan(soft.data<float>()[2]));
  const HostTensor pooled = run1("MaxPool", make_attrs({{"kernel_shape", ints({2, 1})}}), {&x});
  ASSERT_EQ(pooled.shape, (Shape{1, 1, 1, 2}));
  EXPECT_EQ(pooled.data<float>()[0], 3.0f);
  EXPECT_TRUE(std::isnan(pooled.data<float>()[1]));
  const HostTensor reduced = run1("ReduceMax", {}, {&x});
  EXPECT_TRUE(std::isnan(reduced.data<float>()[0]));
}

// ---- reduce -----------------------------------------------------------------------------------

struct ReduceRef {
  const char* op;
  double init;
  std::function<double(double, double)> step;
  std::function<double(double, int64_t)> finish;
};

const std::vector<ReduceRef>& reduce_refs() {
  static const std::vector<ReduceRef> refs = {
      {"ReduceSum", 0.0, [](double a, double v) { return a + v; },
       [](double a, int64_t) { return a; }},
      {"ReduceMean", 0.0, [](double a, double v) { return a + v; },
       [](double a, int64_t n) { return a / static_cast<double>(n); }},
      {"ReduceMax", -1e300, [](double a, double v) { return std::max(a, v); },
       [](double a, int64_t) { return a; }},
      {"ReduceMin", 1e300, [](double a, double v) { return std::min(a, v); },
       [](double a, int64_t) { return a; }},
      {"ReduceProd", 1.0, [](double a, double v) { return a * v; },
       [](double a, int64_t) { return a; }},
      {"ReduceL1", 0.0, [](double a, double v) { return a + std::abs(v); },
       [](double a, int64_t) { return a; }},
      {"ReduceL2", 0.0, [](double a, double v) { return a + v * v; },
       [](double a, int64_t) { return std::sqrt(a); }},
      {"ReduceSumSquare", 0.0, [](double a, double v) { return a + v * v; },
       [](double a, int64_t) { return a; }},
      {"ReduceLogSum", 0.0, [](double a, double v) { return a + v; },
       [](double a, int64_t) { return std::log(a); }},
      {"ReduceLogSumExp", 0.0, [](double a, double v) { return a + std::exp(v); },
       [](double a, int64_t) { return std::log(a); }},
  };
  return refs;
}

std::vector<double> reference_reduce(const ReduceRef& ref, const HostTensor& x,
                                     const std::vector<bool>& mask, bool keepdims,
                                     Shape* out_shape) {
  Shape kept;
  out_shape->clear();
  for (size_t i = 0; i < x.shape.size(); ++i) {
    kept.push_back(mask[i] ? 1 : x.shape[i]);
    if (!mask[i] || keepdims) out_shape->push_back(mask[i] ? 1 : x.shape[i]);
  }
  std::vector<double> acc(static_cast<size_t>(shape_numel(kept)), ref.init);
  for_each_index(x.shape, [&](const Index& i) {
    Index o = i;
    for (size_t d = 0; d < i.size(); ++d) {
      if (mask[d]) o[d] = 0;
    }
    double& a = acc[static_cast<size_t>(flat_index(kept, o))];
    a = ref.step(a, at(x, i));
  });
  const int64_t count = x.numel() / std::max<int64_t>(1, shape_numel(kept));
  for (double& a : acc) a = ref.finish(a, count);
  return acc;
}

TEST(CpuNnReduce, EveryOpWithKeepdimsNegativeAxesAndEmptyAxes) {
  std::mt19937 rng(60);
  const HostTensor x = random_float({3, 4, 5}, rng, 0.5f, 1.5f);  // positive: LogSum, Prod stable
  struct AxesCase {
    std::vector<int64_t> axes;
    bool given;  // false: input absent
    bool noop;
    std::vector<bool> mask;
  };
  const std::vector<AxesCase> cases = {
      {{1}, true, false, {false, true, false}},     {{-1, 0}, true, false, {true, false, true}},
      {{0, 1, 2}, true, false, {true, true, true}}, {{}, true, false, {true, true, true}},
      {{}, false, false, {true, true, true}},       {{}, true, true, {false, false, false}},
      {{}, false, true, {false, false, false}},
  };
  for (const ReduceRef& ref : reduce_refs()) {
    for (const AxesCase& c : cases) {
      for (bool keepdims : {true, false}) {
        const HostTensor axes = make_int64({static_cast<int64_t>(c.axes.size())}, c.axes);
        AttributeMap attrs = make_attrs({{"keepdims", int_attr(keepdims)}});
        if (c.noop) attrs.set("noop_with_empty_axes", int_attr(1));
        std::vector<const HostTensor*> inputs{&x};
        if (c.given) inputs.push_back(&axes);
        Shape out_shape;
        const std::vector<double> want = reference_reduce(ref, x, c.mask, keepdims, &out_shape);
        expect_close(run1(ref.op, attrs, inputs), out_shape, want, 1e-5,
                     std::string(ref.op) + " axes " + shape_to_string(c.axes) +
                         (c.given ? "" : " (absent)") + " keepdims " + std::to_string(keepdims) +
                         " noop " + std::to_string(c.noop));
      }
    }
  }
}

TEST(CpuNnReduce, IntegerSumMaxMinKeepExactValues) {
  const int64_t big = int64_t{1} << 53;
  const HostTensor x = make_int64({2, 3}, {big, 1, -7, 4, big + 1, 2});
  const HostTensor axes = make_int64({1}, {1});
  const AttributeMap attrs = make_attrs({{"keepdims", int_attr(0)}});
  const HostTensor sum = run1("ReduceSum", attrs, {&x, &axes});
  ASSERT_EQ(sum.dtype, DType::kInt64);
  ASSERT_EQ(sum.shape, (Shape{2}));
  EXPECT_EQ(sum.data<int64_t>()[0], big - 6);
  EXPECT_EQ(sum.data<int64_t>()[1], big + 7);
  const HostTensor max = run1("ReduceMax", attrs, {&x, &axes});
  EXPECT_EQ(max.data<int64_t>()[0], big);
  EXPECT_EQ(max.data<int64_t>()[1], big + 1);
  const HostTensor min = run1("ReduceMin", attrs, {&x});
  ASSERT_EQ(min.shape, (Shape{}));
  EXPECT_EQ(min.data<int64_t>()[0], -7);
  expect_node_error([&] { run1("ReduceMean", attrs, {&x}); }, ErrorCode::kUnsupported, "int64");
  const HostTensor bad_axes = make_int64({2}, {1, -1});
  expect_node_error(
      [&] {
        run1("ReduceSum", attrs, {&x, &bad_axes});
      },
      ErrorCode::kInvalidArgument, "more than once");
  const HostTensor far_axes = make_int64({1}, {2});
  expect_node_error(
      [&] {
        run1("ReduceSum", attrs, {&x, &far_axes});
      },
      ErrorCode::kInvalidArgument, "out of range");
}

// ---- resize -----------------------------------------------------------------------------------

HostTensor iota(Shape shape) {
  HostTensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i + 1);
  return t;
}

struct ResizeCase {
  const char* name;
  Shape x;
  std::vector<float> scales;  // empty: sizes given
  std::vector<int64_t> sizes;
  std::vector<std::pair<std::string, Attribute>> attrs;
  Shape y;
  std::vector<double> want;
};

// Every expected array below comes from ONNX Runtime 1.32 (opset 19 Resize) on inputs holding
// 1, 2, 3, ... in row-major order.
const std::vector<ResizeCase>& resize_cases() {
  static const std::vector<ResizeCase> cases = {
      {"nearest asymmetric floor",
       {1, 1, 2, 2},
       {1, 1, 2, 3},
       {},
       {{"mode", str("nearest")},
        {"coordinate_transformation_mode", str("asymmetric")},
        {"nearest_mode", str("floor")}},
       {1, 1, 4, 6},
       {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4}},
      {"nearest half_pixel round_prefer_ceil sizes",
       {1, 1, 2, 3},
       {},
       {1, 1, 3, 5},
       {{"mode", str("nearest")}, {"nearest_mode", str("round_prefer_ceil")}},
       {1, 1, 3, 5},
       {1, 1, 2, 3, 3, 4, 4, 5, 6, 6, 4, 4, 5, 6, 6}},
      {"nearest align_corners downsample",
       {1, 1, 5, 5},
       {1, 1, 0.6f, 0.6f},
       {},
       {{"coordinate_transformation_mode", str("align_corners")}},
       {1, 1, 3, 3},
       {1, 3, 5, 11, 13, 15, 21, 23, 25}},
      {"linear half_pixel",
       {1, 1, 2, 2},
       {1, 1, 2, 2},
       {},
       {{"mode", str("linear")}},
       {1, 1, 4, 4},
       {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4}},
      {"linear align_corners sizes",
       {1, 1, 2, 3},
       {},
       {1, 1, 3, 4},
       {{"mode", str("linear")}, {"coordinate_transformation_mode", str("align_corners")}},
       {1, 1, 3, 4},
       {1, 1.66666675, 2.33333349, 3, 2.5, 3.16666675, 3.83333349, 4.5, 4, 4.66666698, 5.33333302,
        6}},
      {"linear pytorch_half_pixel to length 1",
       {1, 1, 2, 4},
       {},
       {1, 1, 1, 3},
       {{"mode", str("linear")}, {"coordinate_transformation_mode", str("pytorch_half_pixel")}},
       {1, 1, 1, 3},
       {1.16666675, 2.5, 3.83333325}},
      {"linear asymmetric 1-D",
       {1, 1, 4},
       {1, 1, 1.5f},
       {},
       {{"mode", str("linear")}, {"coordinate_transformation_mode", str("asymmetric")}},
       {1, 1, 6},
       {1, 1.66666675, 2.33333325, 3, 3.66666675, 4}},
      {"linear half_pixel_symmetric with axes",
       {1, 1, 2, 3},
       {},
       {3, 5},
       {{"mode", str("linear")},
        {"coordinate_transformation_mode", str("half_pixel_symmetric")},
        {"axes", ints({2, 3})}},
       {1, 1, 3, 5},
       {1, 1.4000001, 2, 2.5999999, 3, 2.5, 2.9000001, 3.5, 4.0999999, 4.5, 4, 4.4000001, 5,
        5.5999999, 6}},
      {"trilinear",
       {1, 1, 2, 2, 2},
       {1, 1, 2, 2, 2},
       {},
       {{"mode", str("linear")}},
       {1, 1, 4, 4, 4},
       {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4,
        2, 2.25, 2.75, 3, 2.5, 2.75, 3.25, 3.5, 3.5, 3.75, 4.25, 4.5, 4, 4.25, 4.75, 5,
        4, 4.25, 4.75, 5, 4.5, 4.75, 5.25, 5.5, 5.5, 5.75, 6.25, 6.5, 6, 6.25, 6.75, 7,
        5, 5.25, 5.75, 6, 5.5, 5.75, 6.25, 6.5, 6.5, 6.75, 7.25, 7.5, 7, 7.25, 7.75, 8}},
      {"nearest keep_aspect_ratio not_larger",
       {1, 1, 2, 3},
       {},
       {4, 4},
       {{"axes", ints({2, 3})}, {"keep_aspect_ratio_policy", str("not_larger")}},
       {1, 1, 3, 4},
       {1, 2, 2, 3, 4, 5, 5, 6, 4, 5, 5, 6}},
      {"linear keep_aspect_ratio not_smaller",
       {1, 1, 2, 3},
       {},
       {4, 4},
       {{"mode", str("linear")},
        {"axes", ints({2, 3})},
        {"keep_aspect_ratio_policy", str("not_smaller")}},
       {1, 1, 4, 6},
       {1,    1.25, 1.75, 2.25, 2.75, 3,    1.75, 2,    2.5,  3,    3.5,  3.75,
        3.25, 3.5,  4,    4.5,  5,    5.25, 4,    4.25, 4.75, 5.25, 5.75, 6}},
      {"nearest tie round_prefer_floor",
       {1, 1, 1, 4},
       {1, 1, 1, 0.5f},
       {},
       {{"nearest_mode", str("round_prefer_floor")}},
       {1, 1, 1, 2},
       {1, 3}},
      {"nearest tie round_prefer_ceil",
       {1, 1, 1, 4},
       {1, 1, 1, 0.5f},
       {},
       {{"nearest_mode", str("round_prefer_ceil")}},
       {1, 1, 1, 2},
       {2, 4}},
      {"nearest ceil mixed scales",
       {1, 1, 3, 3},
       {1, 1, 1.7f, 0.7f},
       {},
       {{"nearest_mode", str("ceil")}},
       {1, 1, 5, 2},
       {2, 3, 5, 6, 5, 6, 8, 9, 8, 9}},
      {"linear 2-D fractional scales",
       {2, 3},
       {1.5f, 0.67f},
       {},
       {{"mode", str("linear")}},
       {3, 2},
       {1.24626863, 2.73880601, 2.74626875, 4.23880577, 4.24626875, 5.73880577}},
  };
  return cases;
}

TEST(CpuNnResize, MatchesOnnxRuntimeExamples) {
  for (const ResizeCase& c : resize_cases()) {
    const HostTensor x = iota(c.x);
    const HostTensor empty_roi(DType::kFloat32, {0});
    const HostTensor scales = make_float({static_cast<int64_t>(c.scales.size())}, c.scales);
    const HostTensor sizes = make_int64({static_cast<int64_t>(c.sizes.size())}, c.sizes);
    std::vector<const HostTensor*> inputs;
    if (c.scales.empty()) {
      inputs = {&x, nullptr, nullptr, &sizes};
    } else {
      // An empty roi tensor counts as "not given".
      inputs = {&x, &empty_roi, &scales};
    }
    expect_close(run1("Resize", make_attrs(c.attrs), inputs), c.y, c.want, 2e-6, c.name);
  }
}

TEST(CpuNnResize, EmptyScalesTensorMeansSizesAreUsed) {
  const HostTensor x = iota({1, 1, 2, 2});
  const HostTensor empty_scales(DType::kFloat32, {0});
  const HostTensor sizes = make_int64({4}, {1, 1, 4, 4});
  const HostTensor y =
      run1("Resize", make_attrs({{"mode", str("linear")}}), {&x, nullptr, &empty_scales, &sizes});
  expect_close(y, {1, 1, 4, 4},
               {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4},
               1e-6, "Resize sizes after empty scales");
}

TEST(CpuNnResize, UnsupportedModesAreReported) {
  const HostTensor x = iota({1, 1, 2, 2});
  const HostTensor scales = make_float({4}, {1, 1, 2, 2});
  // tf_crop_and_resize needs sizes (spec and reference disagree on the output size with scales).
  const HostTensor roi = make_float({8}, {0, 0, 0, 0, 1, 1, 1, 1});
  expect_node_error(
      [&] {
        run1("Resize", make_attrs({{"coordinate_transformation_mode", str("tf_crop_and_resize")}}),
             {&x, &roi, &scales});
      },
      ErrorCode::kUnsupported, "tf_crop_and_resize");
  // antialias applies to linear and cubic; the default mode is nearest.
  expect_node_error(
      [&] {
        run1("Resize", make_attrs({{"antialias", int_attr(1)}}), {&x, nullptr, &scales});
      },
      ErrorCode::kUnsupported, "antialias");
  expect_node_error(
      [&] {
        run1("Resize", make_attrs({{"mode", str("bicubic")}}), {&x, nullptr, &scales});
      },
      ErrorCode::kInvalidArgument, "mode");
  expect_node_error([&] { run1("Resize", {}, {&x}); }, ErrorCode::kInvalidArgument, "sizes");
  const HostTensor short_scales = make_float({2}, {2, 2});
  expect_node_error(
      [&] {
        run1("Resize", {}, {&x, nullptr, &short_scales});
      },
      ErrorCode::kInvalidArgument, "scales");
}

// ---- inference with dynamic dims and unknown values ------------------------------------------

std::vector<ops::ValueInfo> infer(const std::string& op, const AttributeMap& attrs,
                                  std::vector<ops::ValueInfo> inputs, size_t num_outputs = 1) {
  const ops::OpDef* def = ops::find_op(op);
  EXPECT_NE(def, nullptr) << op;
  std::vector<ops::ValueInfo> outputs(num_outputs);
  ops::infer_node(*def, "test_node", attrs, inputs, outputs);
  return outputs;
}

ops::ValueInfo info(Shape shape, DType dtype = DType::kFloat32, const HostTensor* value = nullptr) {
  return ops::ValueInfo{dtype, std::move(shape), value, true};
}

ops::ValueInfo absent() {
  return ops::ValueInfo{DType::kFloat32, {}, nullptr, false};
}

constexpr int64_t kDyn = kDynamicDim;

TEST(CpuNnInfer, ConvGemmMatMulPropagateDynamicDims) {
  const AttributeMap conv_attrs =
      make_attrs({{"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}});
  auto out = infer("Conv", conv_attrs, {info({kDyn, 3, kDyn, 32}), info({8, 3, 3, 3})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 8, kDyn, 16}));
  out = infer("Conv", make_attrs({{"auto_pad", str("SAME_UPPER")}}),
              {info({1, 3, 10, kDyn}), info({8, kDyn, 3, 3}), info({8})});
  EXPECT_EQ(out[0].shape, (Shape{1, 8, 10, kDyn}));
  out = infer("Gemm", make_attrs({{"transA", int_attr(1)}}),
              {info({kDyn, 5}), info({kDyn, 7}), info({7})});
  EXPECT_EQ(out[0].shape, (Shape{5, 7}));
  out = infer("MatMul", {}, {info({kDyn, 1, 4, 6}), info({3, kDyn, 2})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 3, 4, 2}));
  out = infer("MatMul", {}, {info({kDyn}), info({kDyn, kDyn, 5})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 5}));
  out = infer("MatMul", {}, {info({4, 6}, DType::kFloat16), info({6}, DType::kFloat16)});
  EXPECT_EQ(out[0].shape, (Shape{4}));
  EXPECT_EQ(out[0].dtype, DType::kFloat16);
}

TEST(CpuNnInfer, PoolNormalizationSoftmaxPropagateDynamicDims) {
  auto out = infer(
      "MaxPool",
      make_attrs(
          {{"kernel_shape", ints({3, 3})}, {"strides", ints({2, 2})}, {"ceil_mode", int_attr(1)}}),
      {info({kDyn, 16, 9, kDyn})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 16, 4, kDyn}));
  out = infer("GlobalAveragePool", {}, {info({kDyn, 16, kDyn, kDyn, kDyn})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 16, 1, 1, 1}));
  out = infer("LayerNormalization", make_attrs({{"axis", int_attr(-2)}}),
              {info({kDyn, kDyn, 64}, DType::kBFloat16), info({64}, DType::kBFloat16)}, 3);
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn, 64}));
  EXPECT_EQ(out[0].dtype, DType::kBFloat16);
  EXPECT_EQ(out[1].shape, (Shape{kDyn, 1, 1}));
  EXPECT_EQ(out[2].dtype, DType::kFloat32);
  out = infer("BatchNormalization", {},
              {info({kDyn, 3, kDyn}), info({3}), info({3}), info({3}), info({kDyn})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 3, kDyn}));
  out = infer("LogSoftmax", make_attrs({{"axis", int_attr(0)}}), {info({kDyn, 7})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 7}));
}

TEST(CpuNnInfer, ReduceWithUnknownOrKnownAxes) {
  const AttributeMap keep = make_attrs({});
  const AttributeMap drop = make_attrs({{"keepdims", int_attr(0)}});
  // Unknown axes values: rank known, dims unknown (except 1s, which stay 1 with keepdims).
  auto out = infer("ReduceMean", keep, {info({2, 1, kDyn}), info({2}, DType::kInt64)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 1, kDyn}));
  out = infer("ReduceSum", drop, {info({2, 3, 4}), info({2}, DType::kInt64)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn}));
  EXPECT_THROW(infer("ReduceSum", drop, {info({2, 3, 4}), info({kDyn}, DType::kInt64)}), Error);
  // Known axes with dynamic data dims.
  const HostTensor axes = make_int64({2}, {-1, 0});
  out = infer("ReduceMax", drop, {info({kDyn, 5, kDyn}), info({2}, DType::kInt64, &axes)});
  EXPECT_EQ(out[0].shape, (Shape{5}));
  out = infer("ReduceMax", keep,
              {info({kDyn, 5, kDyn}, DType::kInt64), info({2}, DType::kInt64, &axes)});
  EXPECT_EQ(out[0].shape, (Shape{1, 5, 1}));
  EXPECT_EQ(out[0].dtype, DType::kInt64);
  // Absent / empty axes.
  out = infer("ReduceL2", drop, {info({kDyn, 5})});
  EXPECT_EQ(out[0].shape, (Shape{}));
  const HostTensor no_axes = make_int64({0}, {});
  out = infer("ReduceProd", make_attrs({{"noop_with_empty_axes", int_attr(1)}}),
              {info({kDyn, 5}), info({0}, DType::kInt64, &no_axes)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 5}));
}

TEST(CpuNnInfer, ResizeWithUnknownOrKnownScalesAndSizes) {
  const HostTensor scales = make_float({4}, {1, 1, 2, 0.5f});
  auto out =
      infer("Resize", {}, {info({kDyn, 3, 8, 8}), absent(), info({4}, DType::kFloat32, &scales)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 3, 16, 4}));
  out = infer("Resize", {}, {info({1, 3, 8, 8}), absent(), info({4})});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, kDyn, kDyn, kDyn}));
  out = infer("Resize", make_attrs({{"axes", ints({2, 3})}}),
              {info({1, 3, 8, 8}), info({0}), info({0}), info({2}, DType::kInt64)});
  EXPECT_EQ(out[0].shape, (Shape{1, 3, kDyn, kDyn}));
  const HostTensor sizes = make_int64({2}, {5, 7});
  out = infer("Resize", make_attrs({{"axes", ints({-2, -1})}}),
              {info({kDyn, 3, kDyn, 8}), absent(), absent(), info({2}, DType::kInt64, &sizes)});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 3, 5, 7}));
  out = infer("Resize",
              make_attrs({{"axes", ints({2, 3})}, {"keep_aspect_ratio_policy", str("not_larger")}}),
              {info({1, 3, kDyn, 8}), absent(), absent(), info({2}, DType::kInt64, &sizes)});
  EXPECT_EQ(out[0].shape, (Shape{1, 3, kDyn, kDyn}));
}

// ---- errors -----------------------------------------------------------------------------------

TEST(CpuNnErrors, BadAttributesRanksAndDtypesNameTheNode) {
  std::mt19937 rng(70);
  const HostTensor x = random_float({1, 2, 5, 5}, rng);
  const HostTensor w = random_float({3, 2, 3, 3}, rng);
  expect_node_error(
      [&] {
        run1("Conv", make_attrs({{"strides", ints({1, 1, 1})}}), {&x, &w});
      },
      ErrorCode::kInvalidArgument, "strides");
  expect_node_error(
      [&] {
        run1("Conv", make_attrs({{"dilations", ints({0, 1})}}), {&x, &w});
      },
      ErrorCode::kInvalidArgument, "dilations");
  expect_node_error(
      [&] {
        run1("Conv", make_attrs({{"strides", str("2")}}), {&x, &w});
      },
      ErrorCode::kInvalidArgument, "strides");
  expect_node_error(
      [&] {
        run1("Conv", make_attrs({{"group", int_attr(2)}}), {&x, &w});
      },
      ErrorCode::kInvalidArgument, "group");
  const HostTensor x2 = random_float({2, 5}, rng);
  expect_node_error([&] { run1("Conv", {}, {&x2, &w}); }, ErrorCode::kInvalidArgument, "rank");
  const HostTensor tiny = random_float({1, 2, 2, 2}, rng);
  expect_node_error([&] { run1("Conv", {}, {&tiny, &w}); }, ErrorCode::kInvalidArgument, "smaller");
  const HostTensor xi = make_int64({1, 1, 2, 2}, {1, 2, 3, 4});
  expect_node_error([&] { run1("Softmax", {}, {&xi}); }, ErrorCode::kUnsupported, "int64");
  expect_node_error(
      [&] {
        run1("MaxPool", make_attrs({{"kernel_shape", ints({1, 1})}}), {&xi});
      },
      ErrorCode::kUnsupported, "int64");
  const HostTensor a = random_float({2, 3, 4}, rng);
  expect_node_error([&] { run1("Gemm", {}, {&a, &a}); }, ErrorCode::kInvalidArgument, "matrix");
  const HostTensor ga = random_float({2, 3}, rng), gb = random_float({3, 4}, rng);
  const HostTensor gc = random_float({3, 4}, rng);
  expect_node_error([&] { run1("Gemm", {}, {&ga, &gb, &gc}); }, ErrorCode::kInvalidArgument, "C");
  expect_node_error(
      [&] {
        run1("ReduceSum", make_attrs({{"keepdims", int_attr(2)}}), {&a});
      },
      ErrorCode::kInvalidArgument, "keepdims");
}

// ---- float16 ----------------------------------------------------------------------------------

TEST(CpuNnFloat16, HalfInputsMatchFloat32WithinHalfPrecision) {
  std::mt19937 rng(80);
  const HostTensor x = random_float({1, 4, 6, 6}, rng);
  const HostTensor w = random_float({4, 2, 3, 3}, rng);
  const HostTensor b = random_float({4}, rng);
  const AttributeMap attrs = make_attrs({{"group", int_attr(2)}, {"pads", ints({1, 1, 1, 1})}});
  // Reference on the half-rounded inputs, so only the output rounding differs.
  const HostTensor xh = to_half(x), wh = to_half(w), bh = to_half(b);
  HostTensor xr(DType::kFloat32, x.shape), wr(DType::kFloat32, w.shape),
      br(DType::kFloat32, b.shape);
  for (int64_t i = 0; i < x.numel(); ++i)
    xr.data<float>()[i] = half_to_float(xh.data<uint16_t>()[i]);
  for (int64_t i = 0; i < w.numel(); ++i)
    wr.data<float>()[i] = half_to_float(wh.data<uint16_t>()[i]);
  for (int64_t i = 0; i < b.numel(); ++i)
    br.data<float>()[i] = half_to_float(bh.data<uint16_t>()[i]);
  const HostTensor y32 = run1("Conv", attrs, {&xr, &wr, &br});
  const HostTensor y16 = run1("Conv", attrs, {&xh, &wh, &bh});
  ASSERT_EQ(y16.dtype, DType::kFloat16);
  std::vector<double> want(y32.data<float>(), y32.data<float>() + y32.numel());
  expect_close(y16, y32.shape, want, 1e-3, "Conv float16");

  const HostTensor s = random_float({3, 7}, rng, -4.0f, 4.0f);
  const HostTensor sh = to_half(s);
  HostTensor sr(DType::kFloat32, s.shape);
  for (int64_t i = 0; i < s.numel(); ++i)
    sr.data<float>()[i] = half_to_float(sh.data<uint16_t>()[i]);
  const HostTensor soft32 = run1("Softmax", {}, {&sr});
  const HostTensor soft16 = run1("Softmax", {}, {&sh});
  std::vector<double> want_soft(soft32.data<float>(), soft32.data<float>() + soft32.numel());
  expect_close(soft16, s.shape, want_soft, 1e-3, "Softmax float16");
  const HostTensor mean16 = run1("ReduceMean", {}, {&sh});
  ASSERT_EQ(mean16.dtype, DType::kFloat16);
  const HostTensor mean32 = run1("ReduceMean", {}, {&sr});
  expect_close(mean16, {1, 1}, {mean32.data<float>()[0]}, 1e-3, "ReduceMean float16");
}

}  // namespace
}  // namespace kiln::cpu
