// The runtime's data-dependent shapes: a NonZero whose output size follows the input data, with
// layers after it whose shapes follow that size (planned in a second segment on every call).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "add_relu_engine.hpp"
#include "engine_model_builder.hpp"
#include "format/engine_io.hpp"
#include "kiln/runtime.hpp"

namespace kiln {
namespace {

using testing::add_tensor;
using testing::binding;
using testing::error_message;
using testing::layer;

// nz = NonZero(x) (an output, also read on), y = Transpose(nz) + Transpose(nz), x float32 [6].
std::vector<uint8_t> make_nonzero_engine() {
  format::EngineModel m;
  const int32_t x = add_tensor(m, "x", DType::kFloat32, {6}, format::TensorKind::kInput);
  const int32_t nz = add_tensor(m, "nz", DType::kInt64, {1, kDynamicDim}, format::TensorKind::kOutput);
  const int32_t tr = add_tensor(m, "tr", DType::kInt64, {kDynamicDim, 1}, format::TensorKind::kActivation);
  const int32_t y = add_tensor(m, "y", DType::kInt64, {kDynamicDim, 1}, format::TensorKind::kOutput);
  m.inputs.push_back(binding(m, x));
  m.outputs.push_back(binding(m, nz));
  m.outputs.push_back(binding(m, y));
  m.layers.push_back(layer("nonzero0", "NonZero", {x}, {nz}));
  m.layers.push_back(layer("transpose0", "Transpose", {nz}, {tr}));
  m.layers.push_back(layer("add0", "Add", {tr, tr}, {y}));
  return testing::write_unplanned_engine(m);
}

std::vector<int64_t> nonzero_positions(const std::vector<float>& x) {
  std::vector<int64_t> positions;
  for (size_t i = 0; i < x.size(); ++i)
    if (x[i] != 0.0f) positions.push_back(static_cast<int64_t>(i));
  return positions;
}

std::vector<int64_t> values_of(const Tensor& t) { return {t.data<int64_t>(), t.data<int64_t>() + t.numel()}; }

TEST(DataDependentShapes, BindingsSayWhichOutputsDependOnData) {
  const auto bytes = make_nonzero_engine();
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ASSERT_EQ(engine.outputs().size(), 2u);
  EXPECT_TRUE(engine.outputs()[0].data_dependent_shape);
  EXPECT_TRUE(engine.outputs()[1].data_dependent_shape);
  const auto plain = testing::make_add_relu_engine(false);
  EXPECT_FALSE(Engine::load_bytes(plain.data(), plain.size()).outputs()[0].data_dependent_shape);
}

TEST(DataDependentShapes, LaterLayersFollowTheSizeEachCallGives) {
  const auto bytes = make_nonzero_engine();
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  // Different data, same input shape: the sizes change from call to call, down to empty.
  const std::vector<std::vector<float>> inputs = {
      {0, 1, 0, 2, 3, 0}, {1, 1, 1, 1, 1, 1}, {0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, -0.5f}, {0, 1, 0, 2, 3, 0}};
  for (std::vector<float> x : inputs) {
    const std::vector<int64_t> expected = nonzero_positions(x);
    const auto n = static_cast<int64_t>(expected.size());
    std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {6}, x.data()}}};
    const std::vector<Tensor> out = ctx.execute(in);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].shape, (Shape{1, n}));
    EXPECT_EQ(values_of(out[0]), expected);
    EXPECT_EQ(out[1].shape, (Shape{n, 1}));
    std::vector<int64_t> doubled = expected;
    for (int64_t& v : doubled) v *= 2;
    EXPECT_EQ(values_of(out[1]), doubled);
    EXPECT_EQ(out[1].bytes.size(), static_cast<size_t>(n) * sizeof(int64_t));
    EXPECT_EQ(ctx.last_output_shapes(), (std::vector<Shape>{{1, n}, {n, 1}}));
  }
}

TEST(DataDependentShapes, OutputShapesGiveTheBoundWhereKnownAndTheDeclaredShapeElsewhere) {
  const auto bytes = make_nonzero_engine();
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  std::vector<float> x(6, 1.0f);
  std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {6}, x.data()}}};
  EXPECT_EQ(ctx.output_shapes(in), (std::vector<Shape>{{1, 6}, {kDynamicDim, 1}}));
  EXPECT_NE(error_message([&] { (void)ctx.last_output_shapes(); }).find("has not run"), std::string::npos);
}

TEST(DataDependentShapes, CallerBuffersGiveTheirCapacityAndTheRunReportsTheShape) {
  const auto bytes = make_nonzero_engine();
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  std::vector<float> x = {0, 7, 0, 0, 9, 0};
  std::vector<int64_t> nz(6, -1);
  std::vector<int64_t> y(6, -1);
  std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {6}, x.data()}}};
  std::vector<NamedTensor> out = {{"nz", {DType::kInt64, {1, 6}, nz.data()}}, {"y", {DType::kInt64, {6, 1}, y.data()}}};
  ctx.execute(in, out);
  EXPECT_EQ(ctx.last_output_shapes(), (std::vector<Shape>{{1, 2}, {2, 1}}));
  EXPECT_EQ(nz[0], 1);
  EXPECT_EQ(nz[1], 4);
  EXPECT_EQ(y[0], 2);
  EXPECT_EQ(y[1], 8);
  EXPECT_EQ(y[2], -1);  // nothing written past the result

  // nz must hold its bound (6 elements) whatever the data; y the actual result.
  std::vector<NamedTensor> small_nz = {{"nz", {DType::kInt64, {1, 5}, nz.data()}},
                                       {"y", {DType::kInt64, {6, 1}, y.data()}}};
  std::string message = error_message([&] { ctx.execute(in, small_nz); });
  EXPECT_NE(message.find("output 'nz'"), std::string::npos) << message;
  EXPECT_NE(message.find("up to 6"), std::string::npos) << message;
  std::vector<NamedTensor> small_y = {{"nz", {DType::kInt64, {1, 6}, nz.data()}},
                                      {"y", {DType::kInt64, {1, 1}, y.data()}}};
  message = error_message([&] { ctx.execute(in, small_y); });
  EXPECT_NE(message.find("output 'y'"), std::string::npos) << message;
  std::vector<NamedTensor> wrong_rank = {{"nz", {DType::kInt64, {6}, nz.data()}},
                                         {"y", {DType::kInt64, {6, 1}, y.data()}}};
  message = error_message([&] { ctx.execute(in, wrong_rank); });
  EXPECT_NE(message.find("rank 2"), std::string::npos) << message;
  // The context goes on after the errors.
  ctx.execute(in, out);
  EXPECT_EQ(ctx.last_output_shapes(), (std::vector<Shape>{{1, 2}, {2, 1}}));
}

TEST(DataDependentShapes, ProfileRunsEverySegment) {
  const auto bytes = make_nonzero_engine();
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext ctx = engine.create_context();
  std::vector<float> x = {1, 0, 1, 0, 1, 0};
  std::vector<int64_t> nz(6);
  std::vector<int64_t> y(6);
  std::vector<NamedTensor> in = {{"x", {DType::kFloat32, {6}, x.data()}}};
  std::vector<NamedTensor> out = {{"nz", {DType::kInt64, {1, 6}, nz.data()}}, {"y", {DType::kInt64, {6, 1}, y.data()}}};
  const std::vector<LayerTiming> timings = ctx.profile(in, out, 3);
  EXPECT_EQ(timings.size(), 3u);
  EXPECT_EQ(y[2], 8);
}

}  // namespace
}  // namespace kiln
