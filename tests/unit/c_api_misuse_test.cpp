// The runtime's C API used wrongly (issue 11): released, NULL, foreign and wrong-kind handles are
// clear errors, never reads of freed memory; exceptions that are not kiln's come back as a status
// with a message naming the call; each promise kiln.h makes about `stream` holds; and 64 threads
// running one engine (a context each) get exactly the single-threaded results.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/error.hpp"
#include "format/engine_io.hpp"
#include "kiln/kiln.h"
#include "runtime/c_api_support.hpp"
#include "engine_model_builder.hpp"

namespace kiln {
namespace {

using format::TensorKind;

constexpr int64_t kWidth = 16;
constexpr int64_t kMaxBatch = 64;

// Every tensor of these engines is float32.
int32_t add_tensor(format::EngineModel& m, std::string name, Shape shape, TensorKind kind) {
  return testing::add_tensor(m, std::move(name), DType::kFloat32, std::move(shape), kind);
}

using testing::layer;

// y = relu((x + bias) * (x + bias) - 1), x of shape [batch, 16] with batch dynamic in [1, 64]: the
// shape plan and the arena change with the batch, so contexts that shared state would mix results.
std::vector<uint8_t> make_engine() {
  format::EngineModel m;
  const int32_t x = add_tensor(m, "x", {kDynamicDim, kWidth}, TensorKind::kInput);
  const int32_t bias = add_tensor(m, "bias", {kWidth}, TensorKind::kWeight);
  const int32_t one = add_tensor(m, "one", {1}, TensorKind::kWeight);
  const int32_t sum = add_tensor(m, "sum", {kDynamicDim, kWidth}, TensorKind::kActivation);
  const int32_t square = add_tensor(m, "square", {kDynamicDim, kWidth}, TensorKind::kActivation);
  const int32_t shifted = add_tensor(m, "shifted", {kDynamicDim, kWidth}, TensorKind::kActivation);
  const int32_t y = add_tensor(m, "y", {kDynamicDim, kWidth}, TensorKind::kOutput);
  static std::vector<uint8_t> blob = [] {
    std::vector<uint8_t> bytes(128);
    float values[kWidth + 1];
    for (int64_t i = 0; i < kWidth; ++i) values[i] = 0.25f * static_cast<float>(i) - 2.0f;
    values[kWidth] = 1.0f;
    std::memcpy(bytes.data(), values, sizeof values);
    return bytes;
  }();
  m.tensors[static_cast<size_t>(bias)].weight_offset = 0;
  m.tensors[static_cast<size_t>(bias)].weight_size = kWidth * 4;
  m.tensors[static_cast<size_t>(one)].weight_offset = kWidth * 4;
  m.tensors[static_cast<size_t>(one)].weight_size = 4;
  m.weights = std::span<const uint8_t>(blob.data(), blob.size());
  format::Binding in;
  in.name = "x";
  in.tensor = static_cast<uint32_t>(x);
  in.ranges = {{1, 8, kMaxBatch}, {kWidth, kWidth, kWidth}};
  m.inputs.push_back(in);
  format::Binding out;
  out.name = "y";
  out.tensor = static_cast<uint32_t>(y);
  m.outputs.push_back(out);
  m.layers.push_back(layer("add", "Add", {x, bias}, {sum}));
  m.layers.push_back(layer("square", "Mul", {sum, sum}, {square}));
  m.layers.push_back(layer("shift", "Sub", {square, one}, {shifted}));
  m.layers.push_back(layer("relu", "Relu", {shifted}, {y}));
  m.memory_plan.offsets.assign(m.tensors.size(), format::MemoryPlan::kNoOffset);
  m.memory_plan.first_use.assign(m.tensors.size(), -1);
  m.memory_plan.last_use.assign(m.tensors.size(), -1);
  for (const auto& [tensor, first, last] :
       {std::tuple{sum, 0, 1}, {square, 1, 2}, {shifted, 2, 3}}) {
    m.memory_plan.first_use[static_cast<size_t>(tensor)] = first;
    m.memory_plan.last_use[static_cast<size_t>(tensor)] = last;
  }
  return format::write_engine(m);
}

std::string last_error() {
  return kiln_last_error();
}

bool mentions(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class CApiMisuse : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = make_engine();
    ASSERT_EQ(kiln_engine_load_bytes(bytes_.data(), bytes_.size(), &engine_), KILN_OK)
        << kiln_last_error();
  }
  void TearDown() override { kiln_engine_release(engine_); }

  // Runs `context` on a [batch, 16] input; returns the output's values (empty on failure).
  static std::vector<float> run(kiln_context* context, const std::vector<float>& x) {
    const int64_t shape[2] = {static_cast<int64_t>(x.size()) / kWidth, kWidth};
    const kiln_tensor input{KILN_FLOAT32, 2, shape, const_cast<float*>(x.data())};
    const char* names[1] = {"x"};
    if (kiln_context_execute(context, 1, names, &input, nullptr) != KILN_OK) return {};
    kiln_tensor output{};
    if (kiln_context_output(context, "y", &output) != KILN_OK || output.ndim != 2) return {};
    const auto* data = static_cast<const float*>(output.data);
    return std::vector<float>(data, data + output.shape[0] * output.shape[1]);
  }

  std::vector<uint8_t> bytes_;
  kiln_engine* engine_ = nullptr;
};

std::vector<float> input_values(int64_t batch, int seed) {
  std::vector<float> x(static_cast<size_t>(batch * kWidth));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>((static_cast<int>(i) * 7 + seed * 13) % 29) * 0.125f - 1.5f;
  return x;
}

TEST_F(CApiMisuse, ReleasedEngineIsAnErrorInEveryCall) {
  kiln_engine* engine = nullptr;
  ASSERT_EQ(kiln_engine_load_bytes(bytes_.data(), bytes_.size(), &engine), KILN_OK);
  kiln_engine_release(engine);
  EXPECT_STREQ(kiln_last_error(), "");

  size_t count = 0;
  EXPECT_EQ(kiln_engine_num_bindings(engine, 1, &count), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "kiln_engine_num_bindings: engine is not a live kiln_engine"))
      << last_error();
  const char* text = nullptr;
  EXPECT_EQ(kiln_engine_binding(engine, 1, 0, &text, nullptr, nullptr, nullptr),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "kiln_engine_binding")) << last_error();
  EXPECT_EQ(kiln_engine_backend(engine, &text), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kiln_engine_metadata(engine, &text), KILN_ERROR_INVALID_ARGUMENT);
  kiln_context* context = nullptr;
  EXPECT_EQ(kiln_context_create(engine, &context), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(context, nullptr);
  EXPECT_TRUE(mentions(last_error(), "kiln_context_create: engine is not a live kiln_engine"))
      << last_error();

  // Released twice: the second release touches nothing and says so.
  kiln_engine_release(engine);
  EXPECT_TRUE(mentions(last_error(), "kiln_engine_release: not a live kiln_engine"))
      << last_error();
}

TEST_F(CApiMisuse, ReleasedContextIsAnErrorInEveryCall) {
  kiln_context* context = nullptr;
  ASSERT_EQ(kiln_context_create(engine_, &context), KILN_OK);
  ASSERT_FALSE(run(context, input_values(2, 0)).empty()) << kiln_last_error();
  kiln_context_release(context);

  EXPECT_TRUE(run(context, input_values(2, 0)).empty());
  EXPECT_TRUE(mentions(last_error(), "kiln_context_execute: context is not a live kiln_context"))
      << last_error();
  kiln_tensor output{};
  EXPECT_EQ(kiln_context_output(context, "y", &output), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "kiln_context_output")) << last_error();
  EXPECT_EQ(kiln_context_set_cuda_graphs(context, 0), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kiln_context_execute_bound(context, 0, nullptr, nullptr, 0, nullptr, nullptr, nullptr),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "kiln_context_execute_bound")) << last_error();

  kiln_context_release(context);
  EXPECT_TRUE(mentions(last_error(), "kiln_context_release: not a live kiln_context"))
      << last_error();
}

TEST_F(CApiMisuse, ForeignAndWrongKindHandlesAreErrorsWithoutBeingRead) {
  // Addresses kiln never returned: detected by address, never dereferenced.
  alignas(16) static const unsigned char garbage[256] = {0xde, 0xad, 0xbe, 0xef};
  auto* fake_engine = reinterpret_cast<const kiln_engine*>(garbage);
  auto* fake_context = reinterpret_cast<kiln_context*>(const_cast<unsigned char*>(garbage));
  size_t count = 0;
  EXPECT_EQ(kiln_engine_num_bindings(fake_engine, 1, &count), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "never returned by kiln")) << last_error();
  EXPECT_TRUE(run(fake_context, input_values(1, 0)).empty());
  EXPECT_TRUE(mentions(last_error(), "context is not a live kiln_context")) << last_error();
  kiln_engine_release(const_cast<kiln_engine*>(fake_engine));
  EXPECT_TRUE(mentions(last_error(), "kiln_engine_release: not a live kiln_engine"))
      << last_error();
  kiln_context_release(fake_context);
  EXPECT_TRUE(mentions(last_error(), "kiln_context_release: not a live kiln_context"))
      << last_error();

  // A context where an engine belongs, and the reverse.
  kiln_context* context = nullptr;
  ASSERT_EQ(kiln_context_create(engine_, &context), KILN_OK);
  EXPECT_EQ(kiln_engine_num_bindings(reinterpret_cast<const kiln_engine*>(context), 1, &count),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "engine is a kiln_context, not a kiln_engine"))
      << last_error();
  EXPECT_TRUE(run(reinterpret_cast<kiln_context*>(engine_), input_values(1, 0)).empty());
  EXPECT_TRUE(mentions(last_error(), "context is a kiln_engine, not a kiln_context"))
      << last_error();
  kiln_engine_release(
      reinterpret_cast<kiln_engine*>(context));  // the wrong release: nothing happens
  EXPECT_TRUE(mentions(last_error(), "not a live kiln_engine")) << last_error();
  EXPECT_FALSE(run(context, input_values(3, 1)).empty()) << kiln_last_error();  // still alive
  kiln_context_release(context);
  EXPECT_STREQ(kiln_last_error(), "");
}

TEST_F(CApiMisuse, NullHandlesNameTheCall) {
  size_t count = 0;
  EXPECT_EQ(kiln_engine_num_bindings(nullptr, 1, &count), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "kiln_engine_num_bindings: engine must not be NULL"))
      << last_error();
  kiln_context* context = nullptr;
  EXPECT_EQ(kiln_context_create(nullptr, &context), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kiln_context_execute(nullptr, 0, nullptr, nullptr, nullptr),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "kiln_context_execute: context must not be NULL"))
      << last_error();
  kiln_engine_release(nullptr);  // documented as ignored
  kiln_context_release(nullptr);
  EXPECT_STREQ(kiln_last_error(), "");
}

TEST_F(CApiMisuse, MoreInputsThanTheEngineHasIsAnError) {
  kiln_context* context = nullptr;
  ASSERT_EQ(kiln_context_create(engine_, &context), KILN_OK);
  const int64_t shape[2] = {1, kWidth};
  std::vector<float> x = input_values(1, 0);
  const kiln_tensor inputs[2] = {{KILN_FLOAT32, 2, shape, x.data()},
                                 {KILN_FLOAT32, 2, shape, x.data()}};
  const char* names[2] = {"x", "x"};
  EXPECT_EQ(kiln_context_execute(context, 2, names, inputs, nullptr), KILN_ERROR_INVALID_ARGUMENT);
  // A count no caller can have arrays for: refused before anything is sized by it.
  EXPECT_EQ(kiln_context_execute(context, SIZE_MAX, names, inputs, nullptr),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "the engine has 1 input(s): input 'x' is bound twice")) << last_error();
  const char* surplus[2] = {"x", "surplus"};
  EXPECT_EQ(kiln_context_execute(context, 2, surplus, inputs, nullptr), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "unknown input 'surplus'")) << last_error();
  kiln_context_release(context);
}

// kiln.h: kiln_context_execute's `stream` must be NULL; kiln_context_execute_bound's must be NULL
// for a CPU engine. Both are KILN_ERROR_INVALID_ARGUMENT that say what to do instead.
TEST_F(CApiMisuse, StreamArgumentsAreCheckedAsTheHeaderSays) {
  kiln_context* context = nullptr;
  ASSERT_EQ(kiln_context_create(engine_, &context), KILN_OK);
  std::vector<float> x = input_values(2, 0);
  std::vector<float> y(x.size());
  const int64_t shape[2] = {2, kWidth};
  const kiln_tensor input{KILN_FLOAT32, 2, shape, x.data()};
  const kiln_tensor output{KILN_FLOAT32, 2, shape, y.data()};
  const char* in_names[1] = {"x"};
  const char* out_names[1] = {"y"};
  int stream_stand_in = 0;
  EXPECT_EQ(kiln_context_execute(context, 1, in_names, &input, &stream_stand_in),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "kiln_context_execute: stream must be NULL")) << last_error();
  EXPECT_TRUE(mentions(last_error(), "kiln_context_execute_bound")) << last_error();
  EXPECT_EQ(kiln_context_execute(context, 1, in_names, &input, nullptr), KILN_OK)
      << kiln_last_error();

  EXPECT_EQ(kiln_context_execute_bound(context, 1, in_names, &input, 1, out_names, &output,
                                       &stream_stand_in),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "cpu backend")) << last_error();
  EXPECT_EQ(
      kiln_context_execute_bound(context, 1, in_names, &input, 1, out_names, &output, nullptr),
      KILN_OK)
      << kiln_last_error();
  EXPECT_EQ(y, run(context, x));
  // kiln.h: no effect on CPU engines, and not an error.
  EXPECT_EQ(kiln_context_set_cuda_graphs(context, 1), KILN_OK);
  kiln_context_release(context);
}

// kiln.h: kiln_context_set_threads takes 0 to 1024 and leaves the setting alone otherwise;
// kiln_context_threads reads it back (the default resolved for 0).
TEST_F(CApiMisuse, ContextThreadsAreCheckedAndReadBack) {
  kiln_context* context = nullptr;
  ASSERT_EQ(kiln_context_create(engine_, &context), KILN_OK);
  int threads = 0;
  ASSERT_EQ(kiln_context_threads(context, &threads), KILN_OK) << kiln_last_error();
  EXPECT_GE(threads, 1);
  ASSERT_EQ(kiln_context_set_threads(context, 3), KILN_OK) << kiln_last_error();
  EXPECT_EQ(kiln_context_set_threads(context, -1), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(mentions(last_error(), "got -1")) << last_error();
  EXPECT_EQ(kiln_context_set_threads(context, 1025), KILN_ERROR_INVALID_ARGUMENT);
  ASSERT_EQ(kiln_context_threads(context, &threads), KILN_OK);
  EXPECT_EQ(threads, 3);
  EXPECT_EQ(kiln_context_threads(context, nullptr), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_FALSE(run(context, input_values(2, 0)).empty()) << kiln_last_error();
  kiln_context_release(context);
  EXPECT_EQ(kiln_context_set_threads(context, 1), KILN_ERROR_INVALID_ARGUMENT);
}

TEST(CApiGuard, ExceptionsOtherThanKilnsNameTheCallAndKeepTheirText) {
  using capi::guarded;
  EXPECT_EQ(guarded("kiln_example", [] { throw std::length_error("vector::_M_default_append"); }),
            KILN_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(
      last_error(),
      "kiln_example: a size too large to allocate (std::length_error: vector::_M_default_append)");
  EXPECT_EQ(guarded("kiln_example", [] { throw std::bad_alloc(); }), KILN_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(last_error(), "kiln_example: out of memory (std::bad_alloc)");
  EXPECT_EQ(guarded("kiln_example", [] { throw std::runtime_error("boom"); }), KILN_ERROR_INTERNAL);
  EXPECT_EQ(last_error(), "kiln_example: internal error: boom");
  EXPECT_EQ(guarded("kiln_example", [] { throw 42; }), KILN_ERROR_INTERNAL);
  EXPECT_EQ(last_error(), "kiln_example: internal error: unknown exception");
  EXPECT_EQ(guarded("kiln_example", [] { fail(ErrorCode::kNotFound, "no such thing"); }),
            KILN_ERROR_NOT_FOUND);
  EXPECT_TRUE(mentions(last_error(), "no such thing")) << last_error();
  EXPECT_EQ(guarded("kiln_example", [] {}), KILN_OK);
  EXPECT_STREQ(kiln_last_error(), "");
}

// kiln.h: an engine may be shared by threads, each with its own context. 64 threads x 200 calls,
// each thread cycling through batch sizes, every result identical to the single-threaded run.
TEST_F(CApiMisuse, SixtyFourThreadsOnOneEngineGetTheSingleThreadedResults) {
  constexpr int kThreads = 64, kCalls = 200, kInputs = 8;
  std::vector<std::vector<float>> inputs, expected;
  {
    kiln_context* context = nullptr;
    ASSERT_EQ(kiln_context_create(engine_, &context), KILN_OK);
    for (int i = 0; i < kInputs; ++i) {
      inputs.push_back(input_values(1 + (i * 9) % kMaxBatch, i));
      expected.push_back(run(context, inputs.back()));
      ASSERT_FALSE(expected.back().empty()) << kiln_last_error();
    }
    kiln_context_release(context);
  }
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      kiln_context* context = nullptr;
      if (kiln_context_create(engine_, &context) != KILN_OK) {
        ++failures;
        return;
      }
      for (int call = 0; call < kCalls; ++call) {
        const int i = (t + call) % kInputs;
        const std::vector<float> got = run(context, inputs[static_cast<size_t>(i)]);
        if (got.empty()) {
          ++failures;
        } else if (std::memcmp(got.data(), expected[static_cast<size_t>(i)].data(),
                               got.size() * 4) != 0 ||
                   got.size() != expected[static_cast<size_t>(i)].size()) {
          ++mismatches;
        }
      }
      kiln_context_release(context);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

// Handles created and released on some threads while others look theirs up: the registry of live
// handles stays consistent (each thread's own handles always valid, released ones always refused).
TEST_F(CApiMisuse, HandlesCreatedAndReleasedConcurrentlyStayValidated) {
  constexpr int kThreads = 16, kRounds = 100;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < kRounds; ++round) {
        kiln_context* context = nullptr;
        if (kiln_context_create(engine_, &context) != KILN_OK) {
          ++wrong;
          continue;
        }
        if (kiln_context_set_cuda_graphs(context, 0) != KILN_OK) ++wrong;
        kiln_context_release(context);
        if (std::strlen(kiln_last_error()) != 0) ++wrong;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace kiln
