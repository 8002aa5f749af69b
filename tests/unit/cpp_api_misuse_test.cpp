// The runtime's C++ API used wrongly (issue 11's misuse matrix, C++ column): moved-from engines,
// contexts and buffers, null pointers, wrong streams, out-of-profile and zero-size dims, unaligned
// buffers and NaN/Inf values. Each cell is a kiln::Error naming the problem (or, for values, an
// exact pass-through), never a crash, and the objects still in use keep working after it.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "add_relu_engine.hpp"
#include "kiln/runtime.hpp"

namespace kiln {
namespace {

using testing::error_message;
using testing::expected_add_relu;
using testing::iota_values;
using testing::make_add_relu_engine;

Engine load_dynamic() {
  const auto bytes = make_add_relu_engine(/*dynamic=*/true);
  return Engine::load_bytes(bytes.data(), bytes.size());
}

void expect_error(const std::function<void()>& body, ErrorCode code, std::initializer_list<const char*> mentions) {
  ErrorCode got{};
  const std::string message = error_message(body, &got);
  ASSERT_FALSE(message.empty()) << "no error";
  EXPECT_EQ(got, code) << message;
  for (const char* needle : mentions) EXPECT_NE(message.find(needle), std::string::npos) << message;
}

// One good call: the engine or context still computes relu(x + bias) exactly.
void expect_still_works(ExecutionContext& context) {
  std::vector<float> x = iota_values(8, -2.0f);
  const NamedTensor in{"x", {DType::kFloat32, {2, 4}, x.data()}};
  const std::vector<Tensor> out = context.execute(std::span<const NamedTensor>(&in, 1));
  ASSERT_EQ(out.size(), 1u);
  const std::vector<float> got(out[0].data<float>(), out[0].data<float>() + 8);
  EXPECT_EQ(got, expected_add_relu(x));
}

TEST(CppApiMisuse, MovedFromEngineThrowsFromEveryCall) {
  Engine engine = load_dynamic();
  Engine moved = std::move(engine);
  const char* says = "moved from";
  expect_error([&] { (void)engine.inputs(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)engine.outputs(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)engine.backend(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)engine.format_version(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)engine.producer(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)engine.metadata_json(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)engine.num_layers(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)engine.device_index(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)engine.create_context(); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { EngineBuffer buffer(engine, 16); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { synchronize(engine); }, ErrorCode::kInvalidArgument, {says});
  EXPECT_EQ(peak_memory_bandwidth_gb_per_s(engine), 0.0) << "documented never to throw";
  // The engine it moved to works; assigning to the moved-from one revives it.
  ExecutionContext context = moved.create_context();
  expect_still_works(context);
  engine = moved;
  EXPECT_EQ(engine.inputs().size(), 1u);
}

TEST(CppApiMisuse, MovedFromContextThrowsFromEveryCall) {
  Engine engine = load_dynamic();
  ExecutionContext context = engine.create_context();
  ExecutionContext moved = std::move(context);
  std::vector<float> x(8), y(8);
  const std::vector<NamedTensor> in{{"x", {DType::kFloat32, {2, 4}, x.data()}}};
  const std::vector<NamedTensor> out{{"y", {DType::kFloat32, {2, 4}, y.data()}}};
  const char* says = "moved from";
  expect_error([&] { (void)context.execute(in); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { context.execute(in, out); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)context.output_shapes(in); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)context.profile(in, out, 2); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)context.engine(); }, ErrorCode::kInvalidArgument, {says});
#if KILN_WITH_CUDA
  expect_error([&] { context.set_cuda_graphs(false); }, ErrorCode::kInvalidArgument, {says});
  expect_error([&] { (void)context.cuda_graphs(); }, ErrorCode::kInvalidArgument, {says});
#endif
  expect_still_works(moved);
  context = engine.create_context();  // assignment revives it
  expect_still_works(context);
}

TEST(CppApiMisuse, BuffersMovedFromOrCopiedWithNullPointersAreErrors) {
  Engine engine = load_dynamic();
  EngineBuffer buffer(engine, 32);
  std::vector<uint8_t> host(32, 7);
  expect_error([&] { buffer.copy_from_host(nullptr, 8); }, ErrorCode::kInvalidArgument, {"null"});
  expect_error([&] { buffer.copy_to_host(nullptr, 8); }, ErrorCode::kInvalidArgument, {"null"});
  expect_error([&] { buffer.copy_from_host(host.data(), 33); }, ErrorCode::kInvalidArgument, {"33", "32"});
  EXPECT_NO_THROW(buffer.copy_from_host(nullptr, 0));  // nothing to copy
  EngineBuffer moved = std::move(buffer);
  EXPECT_EQ(buffer.data(), nullptr);
  EXPECT_EQ(buffer.size(), 0u);
  expect_error([&] { buffer.copy_from_host(host.data(), 8); }, ErrorCode::kInvalidArgument, {"8", "0"});
  expect_error([&] { buffer.copy_to_host(host.data(), 1); }, ErrorCode::kInvalidArgument, {"1", "0"});
  moved.copy_from_host(host.data(), 32);
  std::vector<uint8_t> back(32, 0);
  moved.copy_to_host(back.data(), 32);
  EXPECT_EQ(back, host);
  // Move-assigning over a live buffer releases it first; self-move keeps it.
  EngineBuffer other(engine, 8);
  other = std::move(moved);
  EXPECT_EQ(other.size(), 32u);
  EngineBuffer& alias = other;
  other = std::move(alias);
  EXPECT_EQ(other.size(), 32u);
}

TEST(CppApiMisuse, LoadingFromNothingOrFromAFolderIsAnError) {
  expect_error([] { (void)Engine::load_bytes(nullptr, 16); }, ErrorCode::kInvalidArgument, {"null"});
  ErrorCode code{};
  EXPECT_FALSE(error_message([] { (void)Engine::load_bytes(nullptr, 0); }, &code).empty());
  EXPECT_EQ(code, ErrorCode::kCorruptFile);
  const std::string missing = (std::filesystem::temp_directory_path() / "kiln_no_such_engine.kiln").string();
  expect_error([&] { (void)Engine::load_file(missing); }, ErrorCode::kNotFound, {"kiln_no_such_engine.kiln"});
  const std::string folder = std::filesystem::temp_directory_path().string();
  EXPECT_FALSE(error_message([&] { (void)Engine::load_file(folder); }).empty());
}

TEST(CppApiMisuse, RunsWithWrongStreamsShapesAndBuffersAreErrorsAndTheContextGoesOn) {
  Engine engine = load_dynamic();
  ExecutionContext context = engine.create_context();
  std::vector<float> x(64 * 4), y(64 * 4);
  int stream_token = 0;
  const std::vector<NamedTensor> in{{"x", {DType::kFloat32, {2, 4}, x.data()}}};
  const std::vector<NamedTensor> out{{"y", {DType::kFloat32, {2, 4}, y.data()}}};
  // A CUDA stream for a CPU engine.
  expect_error([&] { context.execute(in, out, &stream_token); }, ErrorCode::kInvalidArgument, {"stream", "cpu"});
  expect_still_works(context);
  // Out of the profile's batch range [1, 8], and a zero batch.
  const std::vector<NamedTensor> big{{"x", {DType::kFloat32, {9, 4}, x.data()}}};
  expect_error([&] { (void)context.execute(big); }, ErrorCode::kInvalidArgument, {"'x'", "9"});
  const std::vector<NamedTensor> empty{{"x", {DType::kFloat32, {0, 4}, x.data()}}};
  expect_error([&] { (void)context.execute(empty); }, ErrorCode::kInvalidArgument, {"'x'"});
  expect_error([&] { (void)context.output_shapes(big); }, ErrorCode::kInvalidArgument, {"'x'", "9"});
  expect_still_works(context);
  // Bound outputs: null, unaligned, the wrong shape for the input's batch.
  const std::vector<NamedTensor> null_out{{"y", {DType::kFloat32, {2, 4}, nullptr}}};
  expect_error([&] { context.execute(in, null_out); }, ErrorCode::kInvalidArgument, {"'y'", "null"});
  auto* unaligned = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(y.data()) + 1);
  const std::vector<NamedTensor> odd_out{{"y", {DType::kFloat32, {2, 4}, unaligned}}};
  expect_error([&] { context.execute(in, odd_out); }, ErrorCode::kInvalidArgument, {"'y'", "align"});
  const std::vector<NamedTensor> short_out{{"y", {DType::kFloat32, {1, 4}, y.data()}}};
  expect_error([&] { context.execute(in, short_out); }, ErrorCode::kInvalidArgument, {"'y'"});
  expect_error([&] { (void)context.profile(in, short_out, 3); }, ErrorCode::kInvalidArgument, {"'y'"});
  expect_still_works(context);
}

TEST(CppApiMisuse, NanAndInfinityPassThroughAsValues) {
  Engine engine = load_dynamic();
  ExecutionContext context = engine.create_context();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x{std::nanf(""), inf, -inf, 0.0f, 1.0f, std::nanf(""), -inf, inf};
  const NamedTensor in{"x", {DType::kFloat32, {2, 4}, x.data()}};
  const std::vector<Tensor> out = context.execute(std::span<const NamedTensor>(&in, 1));
  const float* y = out[0].data<float>();
  // relu(x + bias) with bias {-1, 0, 1, 2}: NaN stays NaN, +inf stays, -inf clamps to 0.
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], inf);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 2.0f);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_TRUE(std::isnan(y[5]));
  EXPECT_EQ(y[6], 0.0f);
  EXPECT_EQ(y[7], inf);
}

TEST(CppApiMisuse, ProfileWithNoIterationsStillMeasuresOnce) {
  Engine engine = load_dynamic();
  ExecutionContext context = engine.create_context();
  std::vector<float> x = iota_values(8, -1.0f), y(8);
  const std::vector<NamedTensor> in{{"x", {DType::kFloat32, {2, 4}, x.data()}}};
  const std::vector<NamedTensor> out{{"y", {DType::kFloat32, {2, 4}, y.data()}}};
  for (int iterations : {0, -5}) {
    const std::vector<LayerTiming> timings = context.profile(in, out, iterations);
    EXPECT_EQ(timings.size(), 2u) << iterations;
    EXPECT_EQ(y, expected_add_relu(x));
  }
}

}  // namespace
}  // namespace kiln
