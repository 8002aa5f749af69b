// TfIdfVectorizer (ops/tfidf_vectorizer.hpp) on the CPU backend: counts against hand-counted
// n-grams (strides, 1-grams counted once, rows, coordinates, modes and weights), shape inference
// with a dynamic batch, and the attribute errors, each naming the node. The official ONNX backend
// cases (test_tfidfvectorizer_*) run in tests/onnx_backend.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "node_error_expectation.hpp"
#include "ops/op_registry.hpp"

namespace kiln::cpu {
namespace {

using unit_test::expect_node_error;

template <typename T>
HostTensor tensor(DType dtype, Shape shape, const std::vector<T>& values) {
  HostTensor t(dtype, std::move(shape));
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), values.size() * sizeof(T));
  return t;
}

// The attributes every case needs; `extra` adds or replaces some.
AttributeMap tfidf_attrs(const std::string& mode, int64_t min_gram, int64_t max_gram,
                         int64_t max_skip, std::vector<int64_t> pool, std::vector<int64_t> counts,
                         std::vector<int64_t> indexes,
                         std::vector<std::pair<std::string, Attribute>> extra = {}) {
  AttributeMap attrs;
  attrs.set("mode", Attribute::of_string(mode));
  attrs.set("min_gram_length", Attribute::of_int(min_gram));
  attrs.set("max_gram_length", Attribute::of_int(max_gram));
  attrs.set("max_skip_count", Attribute::of_int(max_skip));
  attrs.set("pool_int64s", Attribute::of_ints(std::move(pool)));
  attrs.set("ngram_counts", Attribute::of_ints(std::move(counts)));
  attrs.set("ngram_indexes", Attribute::of_ints(std::move(indexes)));
  for (auto& [name, value] : extra) attrs.set(name, std::move(value));
  return attrs;
}

HostTensor run_node(const AttributeMap& attrs, const HostTensor& x) {
  const std::vector<const HostTensor*> inputs = {&x};
  return run_node_on_cpu("test_node", "TfIdfVectorizer", attrs, inputs, 1).at(0);
}

std::vector<float> run_tfidf(const AttributeMap& attrs, const HostTensor& x, Shape expected_shape) {
  const HostTensor y = run_node(attrs, x);
  EXPECT_EQ(y.dtype, DType::kFloat32);
  EXPECT_EQ(y.shape, expected_shape);
  return std::vector<float>(y.data<float>(), y.data<float>() + y.numel());
}

TEST(TfIdfVectorizer, CountsOneGramsOnceAndLongerNgramsAtEveryStride) {
  // 1-grams 1, 2; 2-grams (1, 2), (2, 2). X = 1 2 1 2 with one skip allowed:
  // 1-grams: two 1s, two 2s; stride 1 pairs (1,2) (2,1) (1,2); stride 2 pairs (1,1) (2,2).
  const AttributeMap attrs = tfidf_attrs("TF", 1, 2, 1, {1, 2, 1, 2, 2, 2}, {0, 2}, {0, 1, 2, 3});
  const HostTensor x = tensor<int64_t>(DType::kInt64, {4}, {1, 2, 1, 2});
  EXPECT_EQ(run_tfidf(attrs, x, {4}), (std::vector<float>{2, 2, 2, 1}));
  // Without skips the stride-2 pair (2, 2) is not there.
  EXPECT_EQ(run_tfidf(tfidf_attrs("TF", 1, 2, 0, {1, 2, 1, 2, 2, 2}, {0, 2}, {0, 1, 2, 3}), x, {4}),
            (std::vector<float>{2, 2, 2, 0}));
}

TEST(TfIdfVectorizer, MinGramLengthLeavesShorterNgramsOfThePoolUncounted) {
  const AttributeMap attrs = tfidf_attrs("TF", 2, 2, 0, {1, 1, 1}, {0, 1}, {0, 1});
  EXPECT_EQ(run_tfidf(attrs, tensor<int32_t>(DType::kInt32, {3}, {1, 1, 1}), {2}),
            (std::vector<float>{0, 2}));
}

TEST(TfIdfVectorizer, RowsAreCountedApartAtTheirNgramsCoordinates) {
  // 1-grams 5 -> coordinate 3 and 7 -> coordinate 0; coordinates 1 and 2 belong to no n-gram.
  const AttributeMap attrs = tfidf_attrs("TF", 1, 1, 0, {5, 7}, {0}, {3, 0});
  const HostTensor x = tensor<int32_t>(DType::kInt32, {2, 3}, {5, 5, 7, 7, 0, 0});
  EXPECT_EQ(run_tfidf(attrs, x, {2, 4}), (std::vector<float>{1, 0, 0, 2, 1, 0, 0, 0}));
}

TEST(TfIdfVectorizer, ModesWeighTheCounts) {
  const HostTensor x = tensor<int64_t>(DType::kInt64, {3}, {1, 1, 2});
  const auto weights =
      std::pair<std::string, Attribute>{"weights", Attribute::of_floats({0.5f, 2.0f, 4.0f})};
  EXPECT_EQ(run_tfidf(tfidf_attrs("TF", 1, 1, 0, {1, 2, 3}, {0}, {0, 1, 2}, {weights}), x, {3}),
            (std::vector<float>{2, 1, 0}));
  EXPECT_EQ(run_tfidf(tfidf_attrs("IDF", 1, 1, 0, {1, 2, 3}, {0}, {0, 1, 2}, {weights}), x, {3}),
            (std::vector<float>{0.5f, 2, 0}));
  EXPECT_EQ(run_tfidf(tfidf_attrs("TFIDF", 1, 1, 0, {1, 2, 3}, {0}, {0, 1, 2}, {weights}), x, {3}),
            (std::vector<float>{1, 2, 0}));
  // Without weights, IDF marks the n-grams found.
  EXPECT_EQ(run_tfidf(tfidf_attrs("IDF", 1, 1, 0, {1, 2, 3}, {0}, {0, 1, 2}), x, {3}),
            (std::vector<float>{1, 1, 0}));
}

TEST(TfIdfVectorizer, EmptyRowsGiveZeros) {
  const AttributeMap attrs = tfidf_attrs("TF", 1, 2, 2, {1, 1, 2}, {0, 1}, {0, 1});
  EXPECT_EQ(run_tfidf(attrs, tensor<int64_t>(DType::kInt64, {2, 0}, {}), {2, 2}),
            (std::vector<float>{0, 0, 0, 0}));
}

TEST(TfIdfVectorizer, InfersFloat32WithTheBatchDimension) {
  const ops::OpDef* def = ops::find_op("TfIdfVectorizer");
  ASSERT_NE(def, nullptr);
  const AttributeMap attrs = tfidf_attrs("TF", 1, 1, 0, {4, 5, 6}, {0}, {0, 6, 2});
  const std::vector<ops::ValueInfo> inputs = {{DType::kInt32, {kDynamicDim, 9}}};
  std::vector<ops::ValueInfo> outputs(1);
  ops::infer_node(*def, "test_node", attrs, inputs, outputs);
  EXPECT_EQ(outputs[0].dtype, DType::kFloat32);
  EXPECT_EQ(outputs[0].shape, (Shape{kDynamicDim, 7}));
}

TEST(TfIdfVectorizer, RefusesWhatItCannotRunNamingTheNodeAndTheAttribute) {
  const HostTensor x = tensor<int64_t>(DType::kInt64, {3}, {1, 2, 3});
  const auto run_with = [&](const AttributeMap& attrs, const HostTensor& input) {
    return [&attrs, &input] { run_node(attrs, input); };
  };
  const std::vector<int64_t> pool = {1, 2, 3};
  expect_node_error(run_with(tfidf_attrs("BM25", 1, 1, 0, pool, {0}, {0, 1, 2}), x),
                    ErrorCode::kInvalidArgument,
                    "attribute 'mode' must be TF, IDF or TFIDF, got 'BM25'");
  expect_node_error(run_with(tfidf_attrs("TF", 2, 1, 0, pool, {0}, {0, 1, 2}), x),
                    ErrorCode::kInvalidArgument,
                    "min_gram_length (2) must be in [1, max_gram_length = 1]");
  expect_node_error(run_with(tfidf_attrs("TF", 1, 1, -1, pool, {0}, {0, 1, 2}), x),
                    ErrorCode::kInvalidArgument, "max_skip_count must be >= 0, got -1");
  expect_node_error(run_with(tfidf_attrs("TF", 1, 1, 0, pool, {0}, {0, 1}), x),
                    ErrorCode::kInvalidArgument,
                    "attribute 'ngram_indexes' must give one output coordinate per n-gram of the "
                    "pool (3), got 2");
  expect_node_error(run_with(tfidf_attrs("TF", 1, 1, 0, pool, {0}, {0, -1, 2}), x),
                    ErrorCode::kInvalidArgument, "ngram_indexes[1] = -1 is negative");
  expect_node_error(
      run_with(tfidf_attrs("TF", 1, 2, 0, pool, {0, 2}, {0, 1}), x), ErrorCode::kInvalidArgument,
      "the 2-grams (pool items 2 to 3, from ngram_counts) are 1 items, not a multiple of 2");
  expect_node_error(run_with(tfidf_attrs("TF", 1, 1, 0, pool, {1}, {0, 1}), x),
                    ErrorCode::kInvalidArgument, "attribute 'ngram_counts' must start at 0");
  expect_node_error(run_with(tfidf_attrs("TF", 1, 2, 0, pool, {0, 4}, {0, 1, 2, 3}), x),
                    ErrorCode::kInvalidArgument,
                    "must be non-decreasing and within the pool's 3 items");
  expect_node_error(run_with(tfidf_attrs("TF", 1, 1, 0, {}, {0}, {}), x),
                    ErrorCode::kInvalidArgument, "attribute 'pool_int64s' holds no n-gram");
  expect_node_error(run_with(tfidf_attrs("TF", 1, 1, 0, {1, 2, 1}, {0}, {0, 1, 2}), x),
                    ErrorCode::kInvalidArgument, "n-grams 0 and 2 of the pool are the same tokens");
  expect_node_error(run_with(tfidf_attrs("TF", 1, 1, 0, pool, {0}, {0, 1, 2},
                                         {{"weights", Attribute::of_floats({1, 2})}}),
                             x),
                    ErrorCode::kInvalidArgument,
                    "attribute 'weights' must give one weight per n-gram of the pool (3), got 2");
  expect_node_error(
      run_with(
          tfidf_attrs("TF", 1, 1, 0, {}, {0}, {}, {{"pool_strings", Attribute::of_strings({"a"})}}),
          x),
      ErrorCode::kInvalidArgument, "exactly one of attributes 'pool_int64s' and 'pool_strings'");
  AttributeMap strings_only = tfidf_attrs("TF", 1, 1, 0, {}, {0}, {0});
  strings_only.erase("pool_int64s");
  expect_node_error(
      run_with(strings_only, x), ErrorCode::kInvalidArgument,
      "exactly one of attributes 'pool_int64s' and 'pool_strings' must be given, got neither");
  strings_only.set("pool_strings", Attribute::of_strings({"a"}));
  expect_node_error(run_with(strings_only, x), ErrorCode::kUnsupported,
                    "attribute 'pool_strings' (string n-grams) needs string tensors");
  AttributeMap no_mode = tfidf_attrs("TF", 1, 1, 0, pool, {0}, {0, 1, 2});
  no_mode.erase("mode");
  expect_node_error(run_with(no_mode, x), ErrorCode::kInvalidArgument,
                    "missing required attribute 'mode'");

  // Where ONNX's specification and ONNX Runtime disagree, kiln refuses.
  expect_node_error(run_with(tfidf_attrs("TFIDF", 1, 1, 0, pool, {0}, {2, 1, 0},
                                         {{"weights", Attribute::of_floats({1, 2, 3})}}),
                             x),
                    ErrorCode::kUnsupported,
                    "weights[0] = 1 scales n-gram 0 of the pool in ONNX's specification");
  expect_node_error(run_with(tfidf_attrs("IDF", 1, 1, 0, pool, {0}, {0, 0, 1}), x),
                    ErrorCode::kUnsupported,
                    "n-grams 0 and 1 of the pool share output coordinate 0 in IDF mode");
  // ... but a permutation with weights that agree, and shared coordinates in TF mode, run.
  EXPECT_EQ(run_tfidf(tfidf_attrs("TFIDF", 1, 1, 0, pool, {0}, {2, 1, 0},
                                  {{"weights", Attribute::of_floats({3, 2, 3})}}),
                      x, {3}),
            (std::vector<float>{3, 2, 3}));
  EXPECT_EQ(run_tfidf(tfidf_attrs("TF", 1, 1, 0, pool, {0}, {0, 0, 1}), x, {2}),
            (std::vector<float>{2, 1}));

  // Inputs: integer tokens of rank 1 or 2.
  const AttributeMap good = tfidf_attrs("TF", 1, 1, 0, pool, {0}, {0, 1, 2});
  const HostTensor floats = tensor<float>(DType::kFloat32, {3}, {1, 2, 3});
  expect_node_error(run_with(good, floats), ErrorCode::kUnsupported,
                    "input 0 (X) has dtype float32; supported: int32, int64");
  const HostTensor rank3 = tensor<int64_t>(DType::kInt64, {1, 1, 3}, {1, 2, 3});
  expect_node_error(run_with(good, rank3), ErrorCode::kInvalidArgument,
                    "input 0 (X) must be [C] or [N, C], got");
}

}  // namespace
}  // namespace kiln::cpu
