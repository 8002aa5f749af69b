// Runtime tests on hand-made engines: execution, shape/dtype/name validation, dynamic dims,
// shape values computed at run time, caller-provided outputs, the C API and threads.
#include <gtest/gtest.h>

#include <cstring>
#include <sys/mman.h>
#include <unistd.h>
#include <functional>
#include <thread>

#include "format/engine_io.hpp"
#include "kiln/kiln.h"
#include "kiln/runtime.hpp"
#include "add_relu_engine.hpp"
#include "engine_model_builder.hpp"
#include "scoped_env.hpp"

namespace kiln {
namespace {

using format::TensorKind;
using testing::add_tensor;
using testing::layer;

using testing::binding;
using testing::error_message;
using testing::expected_add_relu;
using testing::iota_values;
using testing::make_add_relu_engine;

TEST(Runtime, ExecutesStaticEngine) {
  const auto bytes = make_add_relu_engine(false);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ASSERT_EQ(engine.inputs().size(), 1u);
  EXPECT_EQ(engine.inputs()[0].name, "x");
  EXPECT_EQ(engine.backend(), "cpu");
  ExecutionContext ctx = engine.create_context();
  std::vector<float> x = iota_values(8, -2.0f);
  NamedTensor in{"x", {DType::kFloat32, {2, 4}, x.data()}};
  std::vector<Tensor> out = ctx.execute(std::span<const NamedTensor>(&in, 1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].shape, (Shape{2, 4}));
  const auto expected = expected_add_relu(x);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_FLOAT_EQ(out[0].data<float>()[i], expected[i]);
}

TEST(Runtime, DynamicBatchReplansAndChecksRange) {
  const auto bytes = make_add_relu_engine(true);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  EXPECT_EQ(engine.inputs()[0].shape, (Shape{kDynamicDim, 4}));
  ExecutionContext ctx = engine.create_context();
  for (int64_t batch : {1, 8, 3, 3}) {
    std::vector<float> x = iota_values(static_cast<size_t>(batch * 4), -3.0f);
    NamedTensor in{"x", {DType::kFloat32, {batch, 4}, x.data()}};
    auto out = ctx.execute(std::span<const NamedTensor>(&in, 1));
    EXPECT_EQ(out[0].shape, (Shape{batch, 4}));
    const auto expected = expected_add_relu(x);
    for (size_t i = 0; i < expected.size(); ++i) EXPECT_FLOAT_EQ(out[0].data<float>()[i], expected[i]);
  }
  std::vector<float> big(9 * 4);
  NamedTensor in{"x", {DType::kFloat32, {9, 4}, big.data()}};
  ErrorCode code{};
  const std::string message = error_message([&] { ctx.execute(std::span<const NamedTensor>(&in, 1)); }, &code);
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EXPECT_NE(message.find("'x'"), std::string::npos) << message;
  EXPECT_NE(message.find("[1, 8]"), std::string::npos) << message;
}

TEST(Runtime, RejectsBadInputsWithNamedErrors) {
  const auto bytes = make_add_relu_engine(false);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  std::vector<float> x(8);
  std::vector<int64_t> xi(8);
  struct Case {
    std::vector<NamedTensor> inputs;
    std::vector<std::string> must_mention;
  };
  const std::vector<Case> cases = {
      {{{"y", {DType::kFloat32, {2, 4}, x.data()}}}, {"unknown input 'y'", "'x'"}},
      {{{"x", {DType::kFloat32, {2, 5}, x.data()}}}, {"'x'", "[2, 4]", "[2, 5]"}},
      {{{"x", {DType::kFloat32, {8}, x.data()}}}, {"'x'", "rank 2"}},
      {{{"x", {DType::kInt64, {2, 4}, xi.data()}}}, {"'x'", "float32", "int64"}},
      {{}, {"missing input 'x'"}},
      {{{"x", {DType::kFloat32, {2, 4}, x.data()}}, {"x", {DType::kFloat32, {2, 4}, x.data()}}}, {"'x'", "twice"}},
      {{{"x", {DType::kFloat32, {2, 4}, nullptr}}}, {"'x'", "null"}},
  };
  for (const Case& c : cases) {
    ErrorCode code{};
    const std::string message = error_message([&] { ctx.execute(c.inputs); }, &code);
    EXPECT_EQ(code, ErrorCode::kInvalidArgument) << message;
    for (const std::string& needle : c.must_mention) EXPECT_NE(message.find(needle), std::string::npos) << message;
  }
  // The context still works after errors.
  NamedTensor good{"x", {DType::kFloat32, {2, 4}, x.data()}};
  EXPECT_NO_THROW(ctx.execute(std::span<const NamedTensor>(&good, 1)));
}

TEST(Runtime, WritesIntoCallerProvidedOutputs) {
  const auto bytes = make_add_relu_engine(false);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  std::vector<float> x = iota_values(8, -1.0f);
  std::vector<float> y(8, -99.0f);
  std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {2, 4}, x.data()}}};
  std::vector<NamedTensor> out = {{"y", {DType::kFloat32, {2, 4}, y.data()}}};
  ctx.execute(in, out);
  EXPECT_EQ(y, expected_add_relu(x));
  std::vector<NamedTensor> wrong = {{"y", {DType::kFloat32, {4, 2}, y.data()}}};
  const std::string message = error_message([&] { ctx.execute(in, wrong); });
  EXPECT_NE(message.find("output 'y'"), std::string::npos) << message;
}

TEST(Runtime, RejectsCorruptAndForeignEngines) {
  auto bytes = make_add_relu_engine(false);
  ErrorCode code{};
  std::string message = error_message([&] { Engine::load_bytes(bytes.data(), bytes.size() / 2); }, &code);
  EXPECT_EQ(code, ErrorCode::kCorruptFile) << message;
  const std::string text = "definitely not an engine";
  message = error_message([&] { Engine::load_bytes(text.data(), text.size()); }, &code);
  EXPECT_EQ(code, ErrorCode::kCorruptFile) << message;
  message = error_message([&] { Engine::load_file("/nonexistent/model.kiln"); }, &code);
  EXPECT_NE(message.find("/nonexistent/model.kiln"), std::string::npos) << message;
}

TEST(Runtime, RejectsEnginesWithOpsItLacks) {
  format::EngineModel m;
  const int32_t x = add_tensor(m, "x", DType::kFloat32, {2}, TensorKind::kInput);
  const int32_t y = add_tensor(m, "y", DType::kFloat32, {2}, TensorKind::kOutput);
  m.inputs.push_back(binding(m, x));
  m.outputs.push_back(binding(m, y));
  m.layers.push_back(layer("mystery", "FutureOp", {x}, {y}));
  const auto bytes = testing::write_unplanned_engine(m);
  ErrorCode code{};
  const std::string message = error_message([&] { Engine::load_bytes(bytes.data(), bytes.size()); }, &code);
  EXPECT_EQ(code, ErrorCode::kUnsupported);
  EXPECT_NE(message.find("mystery"), std::string::npos) << message;
  EXPECT_NE(message.find("FutureOp"), std::string::npos) << message;
}

TEST(Runtime, ComputesShapeValuesAtRunTime) {
  // y = Reshape(x, Concat(Shape(x)[0:1], [-1])): flattens a dynamic-batch input, the target shape
  // being computed on the host from the input's shape at run time.
  format::EngineModel m;
  const int32_t x = add_tensor(m, "x", DType::kFloat32, {kDynamicDim, 2, 3}, TensorKind::kInput);
  const int32_t shape = add_tensor(m, "shape", DType::kInt64, {3}, TensorKind::kActivation);
  const int32_t tail = add_tensor(m, "tail", DType::kInt64, {1}, TensorKind::kWeight);
  const int32_t starts = add_tensor(m, "starts", DType::kInt64, {1}, TensorKind::kWeight);
  const int32_t ends = add_tensor(m, "ends", DType::kInt64, {1}, TensorKind::kWeight);
  const int32_t batch = add_tensor(m, "batch", DType::kInt64, {1}, TensorKind::kActivation);
  const int32_t target = add_tensor(m, "target", DType::kInt64, {2}, TensorKind::kActivation);
  const int32_t y = add_tensor(m, "y", DType::kFloat32, {kDynamicDim, kDynamicDim}, TensorKind::kOutput);
  static std::vector<uint8_t> blob(192);
  const int64_t minus_one = -1, zero = 0, one = 1;
  std::memcpy(blob.data(), &minus_one, 8);
  std::memcpy(blob.data() + 64, &zero, 8);
  std::memcpy(blob.data() + 128, &one, 8);
  m.tensors[static_cast<size_t>(tail)].weight_offset = 0;
  m.tensors[static_cast<size_t>(starts)].weight_offset = 64;
  m.tensors[static_cast<size_t>(ends)].weight_offset = 128;
  for (int32_t w : {tail, starts, ends}) m.tensors[static_cast<size_t>(w)].weight_size = 8;
  m.weights = std::span<const uint8_t>(blob.data(), blob.size());
  m.inputs.push_back(binding(m, x, {{1, 1, 16}, {2, 2, 2}, {3, 3, 3}}));
  m.outputs.push_back(binding(m, y));
  m.layers.push_back(layer("shape_of_x", "Shape", {x}, {shape}));
  m.layers.push_back(layer("batch_dim", "Slice", {shape, starts, ends}, {batch}));
  format::Layer concat = layer("target_shape", "Concat", {batch, tail}, {target});
  concat.attrs.set("axis", Attribute::of_int(0));
  m.layers.push_back(concat);
  m.layers.push_back(layer("flatten", "Reshape", {x, target}, {y}));
  const auto bytes = testing::write_unplanned_engine(m);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  for (int64_t n : {4, 1, 4}) {
    std::vector<float> data = iota_values(static_cast<size_t>(n * 6), 0.0f);
    NamedTensor in{"x", {DType::kFloat32, {n, 2, 3}, data.data()}};
    auto out = ctx.execute(std::span<const NamedTensor>(&in, 1));
    ASSERT_EQ(out[0].shape, (Shape{n, 6}));
    for (size_t i = 0; i < data.size(); ++i) EXPECT_EQ(out[0].data<float>()[i], data[i]);
  }
}

TEST(Runtime, ContextsRunConcurrentlyOnOneEngine) {
  const auto bytes = make_add_relu_engine(true);
  const Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      ExecutionContext ctx = engine.create_context();
      for (int iter = 0; iter < 200; ++iter) {
        const int64_t batch = 1 + (iter + t) % 8;
        std::vector<float> x = iota_values(static_cast<size_t>(batch * 4), static_cast<float>(t - iter % 5));
        NamedTensor in{"x", {DType::kFloat32, {batch, 4}, x.data()}};
        auto out = ctx.execute(std::span<const NamedTensor>(&in, 1));
        const auto expected = expected_add_relu(x);
        if (std::memcmp(out[0].data<float>(), expected.data(), expected.size() * 4) != 0) ++failures[static_cast<size_t>(t)];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

TEST(Runtime, EngineBuffersHoldBoundInputsAndOutputs) {
  const auto bytes = make_add_relu_engine(false);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  const std::vector<float> x = iota_values(8, -2.0f);
  EngineBuffer in(engine, 32), out(engine, 32);
  in.copy_from_host(x.data(), 32);
  std::vector<NamedTensor> inputs = {{"x", {DType::kFloat32, {2, 4}, in.data()}}};
  std::vector<NamedTensor> outputs = {{"y", {DType::kFloat32, {2, 4}, out.data()}}};
  ctx.execute(inputs, outputs);
  synchronize(engine);
  std::vector<float> y(8);
  out.copy_to_host(y.data(), 32);
  EXPECT_EQ(y, expected_add_relu(x));
  ErrorCode code{};
  error_message([&] { out.copy_to_host(y.data(), 64); }, &code);
  EXPECT_EQ(code, ErrorCode::kInvalidArgument);
  EngineBuffer moved = std::move(out);
  EXPECT_EQ(moved.size(), 32u);
  EXPECT_EQ(out.data(), nullptr);
}

TEST(Runtime, ReshapeBetweenActivationsIsAViewAndIsNotLaunched) {
  // y = Relu(Reshape(Neg(x), [3, 2])): the Reshape shares Neg's output and launches nothing.
  format::EngineModel m;
  const int32_t x = add_tensor(m, "x", DType::kFloat32, {2, 3}, TensorKind::kInput);
  const int32_t negated = add_tensor(m, "negated", DType::kFloat32, {2, 3}, TensorKind::kActivation);
  const int32_t shape = add_tensor(m, "shape", DType::kInt64, {2}, TensorKind::kWeight);
  const int32_t reshaped = add_tensor(m, "reshaped", DType::kFloat32, {3, 2}, TensorKind::kActivation);
  const int32_t y = add_tensor(m, "y", DType::kFloat32, {3, 2}, TensorKind::kOutput);
  static std::vector<uint8_t> blob(64);
  const int64_t dims[2] = {3, 2};
  std::memcpy(blob.data(), dims, sizeof dims);
  m.tensors[static_cast<size_t>(shape)].weight_size = sizeof dims;
  m.weights = std::span<const uint8_t>(blob.data(), blob.size());
  m.inputs.push_back(binding(m, x));
  m.outputs.push_back(binding(m, y));
  m.layers.push_back(layer("neg", "Neg", {x}, {negated}));
  m.layers.push_back(layer("view", "Reshape", {negated, shape}, {reshaped}));
  m.layers.push_back(layer("relu", "Relu", {reshaped}, {y}));
  const auto bytes = testing::write_unplanned_engine(m);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  const std::vector<float> xs = {1.0f, -2.0f, 3.0f, -4.0f, 5.0f, -6.0f};
  std::vector<float> ys(6);
  std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {2, 3}, const_cast<float*>(xs.data())}}};
  std::vector<NamedTensor> out = {{"y", {DType::kFloat32, {3, 2}, ys.data()}}};
  ctx.execute(in, out);
  EXPECT_EQ(ys, (std::vector<float>{0.0f, 2.0f, 0.0f, 4.0f, 0.0f, 6.0f}));
  std::vector<std::string> timed;
  for (const LayerTiming& t : ctx.profile(in, out, 2)) timed.push_back(t.name);
  EXPECT_EQ(timed, (std::vector<std::string>{"neg", "relu"}));
}

TEST(Runtime, OuterSlabsTakenByGatherOrSliceAreViewsAtAnOffsetWhenAligned) {
  // negated = Neg(x) of [3, 4, 16] floats (256 bytes per outer index): Gather(negated, 1) on axis 0
  // and Slice(negated, [2:3]) on axis 0 select contiguous, aligned slabs and launch nothing; a
  // Gather on axis 1 (not a slab) and a Gather of [3, 3] floats (an unaligned offset) still run.
  format::EngineModel m;
  const int32_t x = add_tensor(m, "x", DType::kFloat32, {3, 4, 16}, TensorKind::kInput);
  const int32_t small = add_tensor(m, "small", DType::kFloat32, {3, 3}, TensorKind::kInput);
  const int32_t negated = add_tensor(m, "negated", DType::kFloat32, {3, 4, 16}, TensorKind::kActivation);
  const int32_t small_neg = add_tensor(m, "small_neg", DType::kFloat32, {3, 3}, TensorKind::kActivation);
  std::vector<int64_t> words;
  auto weight = [&](const std::string& name, Shape shape, std::vector<int64_t> values) {
    const int32_t t = add_tensor(m, name, DType::kInt64, std::move(shape), TensorKind::kWeight);
    m.tensors[static_cast<size_t>(t)].weight_offset = words.size() * sizeof(int64_t);
    m.tensors[static_cast<size_t>(t)].weight_size = values.size() * sizeof(int64_t);
    words.insert(words.end(), values.begin(), values.end());
    words.resize((words.size() + 7) / 8 * 8);  // 64-byte aligned offsets
    return t;
  };
  const int32_t one = weight("one", {}, {1});
  const int32_t starts = weight("starts", {1}, {2});
  const int32_t ends = weight("ends", {1}, {3});
  const int32_t axes = weight("axes", {1}, {0});
  const int32_t picked = add_tensor(m, "picked", DType::kFloat32, {4, 16}, TensorKind::kActivation);
  const int32_t sliced = add_tensor(m, "sliced", DType::kFloat32, {1, 4, 16}, TensorKind::kActivation);
  const int32_t inner = add_tensor(m, "inner", DType::kFloat32, {3, 16}, TensorKind::kActivation);
  const int32_t small_picked = add_tensor(m, "small_picked", DType::kFloat32, {3}, TensorKind::kActivation);
  const int32_t y0 = add_tensor(m, "y0", DType::kFloat32, {4, 16}, TensorKind::kOutput);
  const int32_t y1 = add_tensor(m, "y1", DType::kFloat32, {1, 4, 16}, TensorKind::kOutput);
  const int32_t y2 = add_tensor(m, "y2", DType::kFloat32, {3, 16}, TensorKind::kOutput);
  const int32_t y3 = add_tensor(m, "y3", DType::kFloat32, {3}, TensorKind::kOutput);
  static std::vector<int64_t> blob;
  blob = words;
  m.weights = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(blob.data()), blob.size() * sizeof(int64_t));
  m.inputs.push_back(binding(m, x));
  m.inputs.push_back(binding(m, small));
  for (int32_t out : {y0, y1, y2, y3}) m.outputs.push_back(binding(m, out));
  AttributeMap axis1;
  axis1.set("axis", Attribute::of_int(1));
  m.layers.push_back(layer("neg", "Neg", {x}, {negated}));
  m.layers.push_back(layer("small_neg", "Neg", {small}, {small_neg}));
  m.layers.push_back(layer("gather_slab", "Gather", {negated, one}, {picked}));
  m.layers.push_back(layer("slice_slab", "Slice", {negated, starts, ends, axes}, {sliced}));
  format::Layer gather_inner = layer("gather_inner", "Gather", {negated, one}, {inner});
  gather_inner.attrs = axis1;
  m.layers.push_back(gather_inner);
  m.layers.push_back(layer("gather_unaligned", "Gather", {small_neg, one}, {small_picked}));
  m.layers.push_back(layer("relu0", "Relu", {picked}, {y0}));
  m.layers.push_back(layer("relu1", "Relu", {sliced}, {y1}));
  m.layers.push_back(layer("relu2", "Relu", {inner}, {y2}));
  m.layers.push_back(layer("relu3", "Relu", {small_picked}, {y3}));
  const auto bytes = testing::write_unplanned_engine(m);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  std::vector<float> xs(3 * 4 * 16), ss(9);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = (i % 3 == 0 ? -1.0f : 1.0f) * static_cast<float>(i);
  for (size_t i = 0; i < ss.size(); ++i) ss[i] = -static_cast<float>(i);
  std::vector<float> o0(64), o1(64), o2(48), o3(3);
  std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {3, 4, 16}, xs.data()}},
                                 {"small", {DType::kFloat32, {3, 3}, ss.data()}}};
  std::vector<NamedTensor> out = {{"y0", {DType::kFloat32, {4, 16}, o0.data()}},
                                  {"y1", {DType::kFloat32, {1, 4, 16}, o1.data()}},
                                  {"y2", {DType::kFloat32, {3, 16}, o2.data()}},
                                  {"y3", {DType::kFloat32, {3}, o3.data()}}};
  ctx.execute(in, out);
  auto relu_neg = [&](size_t i) { return std::max(0.0f, -xs[i]); };
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(o0[i], relu_neg(64 + i)) << i;
    EXPECT_EQ(o1[i], relu_neg(128 + i)) << i;
  }
  for (size_t a = 0; a < 3; ++a) {
    for (size_t c = 0; c < 16; ++c) EXPECT_EQ(o2[a * 16 + c], relu_neg(a * 64 + 16 + c)) << a << "," << c;
  }
  EXPECT_EQ(o3, (std::vector<float>{3.0f, 4.0f, 5.0f}));
  std::vector<std::string> timed;
  for (const LayerTiming& t : ctx.profile(in, out, 2)) timed.push_back(t.name);
  EXPECT_EQ(timed, (std::vector<std::string>{"neg", "small_neg", "gather_inner", "gather_unaligned", "relu0", "relu1",
                                             "relu2", "relu3"}));
}

// r = Neg(x); c = Conv(x, 2I, residual r) = 2x - x = x; y = Relu(c). With `read_again`, also
// z = Sub(c, r) = 2x, which reads the residual after the convolution.
std::vector<uint8_t> conv_residual_engine(bool read_again) {
  format::EngineModel m;
  const Shape shape{1, 16, 32, 32};  // 64 KiB of floats per activation
  const int32_t x = add_tensor(m, "x", DType::kFloat32, shape, TensorKind::kInput);
  const int32_t w = add_tensor(m, "w", DType::kFloat32, {16, 16, 1, 1}, TensorKind::kWeight);
  const int32_t r = add_tensor(m, "r", DType::kFloat32, shape, TensorKind::kActivation);
  const int32_t c = add_tensor(m, "c", DType::kFloat32, shape, TensorKind::kActivation);
  const int32_t y = add_tensor(m, "y", DType::kFloat32, shape, TensorKind::kOutput);
  static std::vector<float> blob;
  blob.assign(16 * 16, 0.0f);
  for (size_t k = 0; k < 16; ++k) blob[k * 16 + k] = 2.0f;
  m.tensors[static_cast<size_t>(w)].weight_size = blob.size() * sizeof(float);
  m.weights = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(blob.data()), blob.size() * sizeof(float));
  m.inputs.push_back(binding(m, x));
  m.outputs.push_back(binding(m, y));
  m.layers.push_back(layer("neg", "Neg", {x}, {r}));
  m.layers.push_back(layer("conv", "Conv", {x, w, -1, r}, {c}));
  m.layers.push_back(layer("relu", "Relu", {c}, {y}));
  if (read_again) {
    const int32_t z = add_tensor(m, "z", DType::kFloat32, shape, TensorKind::kOutput);
    m.outputs.push_back(binding(m, z));
    m.layers.push_back(layer("sub", "Sub", {c, r}, {z}));
  }
  return testing::write_unplanned_engine(m);
}

TEST(Runtime, ConvolutionOutputIsWrittenOverAResidualThatDiesThere) {
  // The residual r dies at the convolution: its output takes r's bytes (CpuBackend::
  // writes_over_input), so the arena holds one 64 KiB activation at a time and fits a limit of
  // 96 KiB that r and c side by side would not. Both convolution paths take the alias.
  std::vector<float> xs(16 * 32 * 32);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(static_cast<int>(i % 37) - 18) / 8.0f;
  for (const char* conv : {"", "reference"}) {
    SCOPED_TRACE(std::string("KILN_CPU_CONV=") + conv);
    const testing::ScopedEnv choice("KILN_CPU_CONV", conv);
    const testing::ScopedEnv limit("KILN_MEMORY_LIMIT", "96K");
    const auto bytes = conv_residual_engine(false);
    Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
    ExecutionContext ctx = engine.create_context();
    std::vector<float> ys(xs.size(), -1.0f);
    std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {1, 16, 32, 32}, xs.data()}}};
    std::vector<NamedTensor> out = {{"y", {DType::kFloat32, {1, 16, 32, 32}, ys.data()}}};
    ctx.execute(in, out);
    for (size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], std::max(0.0f, xs[i])) << i;
  }
}

TEST(Runtime, ConvolutionResidualReadAgainLaterKeepsItsOwnBytes) {
  // r is read by Sub after the convolution: c must not take its bytes (z would read c - c = 0),
  // so the arena needs both and a 96 KiB limit refuses the call.
  std::vector<float> xs(16 * 32 * 32);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(static_cast<int>(i % 29) - 14) / 4.0f;
  const auto bytes = conv_residual_engine(true);
  std::vector<float> ys(xs.size()), zs(xs.size());
  std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {1, 16, 32, 32}, xs.data()}}};
  std::vector<NamedTensor> out = {{"y", {DType::kFloat32, {1, 16, 32, 32}, ys.data()}},
                                  {"z", {DType::kFloat32, {1, 16, 32, 32}, zs.data()}}};
  {
    Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
    ExecutionContext ctx = engine.create_context();
    ctx.execute(in, out);
    for (size_t i = 0; i < xs.size(); ++i) {
      ASSERT_EQ(ys[i], std::max(0.0f, xs[i])) << i;
      ASSERT_EQ(zs[i], 2.0f * xs[i]) << i;
    }
  }
  const testing::ScopedEnv limit("KILN_MEMORY_LIMIT", "96K");
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  ErrorCode code{};
  const std::string message = error_message([&] { ctx.execute(in, out); }, &code);
  EXPECT_EQ(code, ErrorCode::kOutOfMemory) << message;
}

TEST(Runtime, ShapesFromInputValuesReadOnlyTheInputsThatGiveThem) {
  // y = ReduceSum(x, axes): its shape reads the value of `axes`, never the bytes of `x`, which for a
  // device engine are not host memory (a CUDA engine's planner once copied them and crashed). Here
  // x's bytes are a page the process may not read.
  format::EngineModel m;
  const int32_t x = add_tensor(m, "x", DType::kFloat32, {4, 4}, TensorKind::kInput);
  const int32_t axes = add_tensor(m, "axes", DType::kInt64, {1}, TensorKind::kInput);
  const int32_t y = add_tensor(m, "y", DType::kFloat32, {kDynamicDim}, TensorKind::kOutput);
  m.inputs.push_back(binding(m, x));
  m.inputs.push_back(binding(m, axes));
  m.outputs.push_back(binding(m, y));
  format::Layer reduce = layer("reduce", "ReduceSum", {x, axes}, {y});
  reduce.attrs.set("keepdims", Attribute::of_int(0));
  m.layers.push_back(reduce);
  const auto bytes = testing::write_unplanned_engine(m);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  const long page = sysconf(_SC_PAGESIZE);
  void* unreadable = mmap(nullptr, static_cast<size_t>(page), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(unreadable, MAP_FAILED);
  for (const int64_t axis : {int64_t{0}, int64_t{1}}) {
    int64_t axis_value = axis;
    std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {4, 4}, unreadable}},
                                   {"axes", {DType::kInt64, {1}, &axis_value}}};
    EXPECT_EQ(ctx.output_shapes(in), (std::vector<Shape>{{4}}));
  }
  munmap(unreadable, static_cast<size_t>(page));
}

TEST(RuntimeCApi, MultiDeviceSafeModeIsOffByDefaultAndReturnsThePreviousMode) {
  EXPECT_EQ(kiln_get_multi_device_safe_mode(), 0);
  EXPECT_EQ(kiln_set_multi_device_safe_mode(1), 0);
  EXPECT_EQ(kiln_get_multi_device_safe_mode(), 1);
  EXPECT_TRUE(get_multi_device_safe_mode());
  EXPECT_EQ(kiln_set_multi_device_safe_mode(0), 1);
  EXPECT_FALSE(get_multi_device_safe_mode());
}

TEST(RuntimeCApi, RunsAnEngineAndReportsErrors) {
  const auto bytes = make_add_relu_engine(false);
  kiln_engine* engine = nullptr;
  ASSERT_EQ(kiln_engine_load_bytes(bytes.data(), bytes.size(), &engine), KILN_OK) << kiln_last_error();
  size_t n = 0;
  ASSERT_EQ(kiln_engine_num_bindings(engine, 1, &n), KILN_OK);
  EXPECT_EQ(n, 1u);
  const char* name = nullptr;
  kiln_dtype dtype{};
  int32_t ndim = 0;
  const int64_t* shape = nullptr;
  ASSERT_EQ(kiln_engine_binding(engine, 1, 0, &name, &dtype, &ndim, &shape), KILN_OK);
  EXPECT_STREQ(name, "x");
  EXPECT_EQ(dtype, KILN_FLOAT32);
  EXPECT_EQ(ndim, 2);
  EXPECT_EQ(kiln_engine_binding(engine, 1, 5, &name, &dtype, &ndim, &shape), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kiln_last_error()).find("out of range"), std::string::npos);

  kiln_context* ctx = nullptr;
  ASSERT_EQ(kiln_context_create(engine, &ctx), KILN_OK);
  kiln_engine_release(engine);  // the context keeps the engine alive
  std::vector<float> x = iota_values(8, -2.0f);
  const int64_t x_shape[2] = {2, 4};
  kiln_tensor input{KILN_FLOAT32, 2, x_shape, x.data()};
  const char* names[1] = {"x"};
  ASSERT_EQ(kiln_context_execute(ctx, 1, names, &input, nullptr), KILN_OK) << kiln_last_error();
  kiln_tensor output{};
  ASSERT_EQ(kiln_context_output(ctx, "y", &output), KILN_OK);
  ASSERT_EQ(output.ndim, 2);
  const auto expected = expected_add_relu(x);
  EXPECT_EQ(std::memcmp(output.data, expected.data(), 32), 0);

  const int64_t bad_shape[2] = {3, 4};
  kiln_tensor bad{KILN_FLOAT32, 2, bad_shape, x.data()};
  EXPECT_EQ(kiln_context_execute(ctx, 1, names, &bad, nullptr), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kiln_last_error()).find("'x'"), std::string::npos);
  EXPECT_EQ(kiln_context_output(ctx, "nope", &output), KILN_ERROR_INVALID_ARGUMENT);
  kiln_context_release(ctx);

  kiln_engine* corrupt = nullptr;
  EXPECT_EQ(kiln_engine_load_bytes("garbage", 7, &corrupt), KILN_ERROR_CORRUPT_FILE);
  EXPECT_EQ(corrupt, nullptr);
  EXPECT_EQ(kiln_engine_load_file(nullptr, &corrupt), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kiln_last_error()).find("path"), std::string::npos);
}

TEST(RuntimeCApi, LoadOnDeviceTakesAnyDeviceForCpuEnginesAndRejectsOthers) {
  const auto bytes = make_add_relu_engine(false);
  kiln_engine* engine = nullptr;
  ASSERT_EQ(kiln_engine_load_bytes_on_device(bytes.data(), bytes.size(), -1, &engine), KILN_OK) << kiln_last_error();
  kiln_engine_release(engine);
  engine = nullptr;
  EXPECT_EQ(kiln_engine_load_bytes_on_device(bytes.data(), bytes.size(), 1, &engine), KILN_ERROR_INCOMPATIBLE);
  EXPECT_EQ(engine, nullptr);
  EXPECT_NE(std::string(kiln_last_error()).find("built for the cpu backend and cannot run on cuda:1"),
            std::string::npos)
      << kiln_last_error();
  EXPECT_EQ(kiln_engine_load_bytes_on_device(bytes.data(), bytes.size(), -2, &engine), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kiln_last_error()).find("got -2"), std::string::npos) << kiln_last_error();
  EXPECT_EQ(kiln_engine_load_file_on_device("/nonexistent/engine.kiln", -1, &engine), KILN_ERROR_NOT_FOUND);
  EXPECT_NE(std::string(kiln_last_error()).find("/nonexistent/engine.kiln"), std::string::npos) << kiln_last_error();
  EXPECT_EQ(kiln_engine_load_file_on_device(nullptr, -1, &engine), KILN_ERROR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace kiln
