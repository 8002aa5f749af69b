// ExecutionContext::profile on the CPU: each launched layer once, in launch order, with the bytes
// of its tensors at the profiled shapes (not the built ones), which give the bandwidth column of
// `kiln bench --profile`.
#include <gtest/gtest.h>

#include <vector>

#include "builder/build_from_graph.hpp"
#include "graph_test_builder.hpp"
#include "kiln/runtime.hpp"

namespace kiln {
namespace {

using testing::GraphBuilder;
using testing::make_tensor_f32;

// y = square(relu(x + c)) with x of shape [batch, 5], batch dynamic in [1, 8].
std::vector<uint8_t> add_relu_square_engine() {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {kDynamicDim, 5});
  const ir::ValueId c = b.constant("c", make_tensor_f32({5}, {1.0f, -2.0f, 3.0f, -4.0f, 5.0f}));
  const ir::ValueId sum = b.node("Add", "add", {x, c});
  const ir::ValueId relu = b.node("Relu", "relu", {sum});
  b.output(b.node("Mul", "square", {relu, relu}));
  BuilderConfig config;
  config.profiles.push_back(InputProfile{"x", {1, 5}, {2, 5}, {8, 5}});
  return builder::build_engine_from_graph(std::move(b.graph), config);
}

TEST(LayerProfile, ListsEachLayersBytesAtTheProfiledShapes) {
  const std::vector<uint8_t> bytes = add_relu_square_engine();
  const Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext context = engine.create_context();
  std::vector<float> x(3 * 5, 0.5f), y(3 * 5, 0.0f);
  const std::vector<NamedTensor> inputs{{"x", TensorRef{DType::kFloat32, {3, 5}, x.data()}}};
  const std::vector<NamedTensor> outputs{
      {engine.outputs()[0].name, TensorRef{DType::kFloat32, {3, 5}, y.data()}}};

  const std::vector<LayerTiming> timings = context.profile(inputs, outputs, 3);

  ASSERT_EQ(timings.size(), 3u);
  EXPECT_EQ(timings[0].op, "Add");
  EXPECT_EQ(timings[1].op, "Relu");
  EXPECT_EQ(timings[2].op, "Mul");
  const uint64_t activation = 3 * 5 * sizeof(float);  // batch 3, not the build's opt of 2
  EXPECT_EQ(timings[0].bytes,
            activation + 5 * sizeof(float) + activation);  // x, the weight c, the sum
  EXPECT_EQ(timings[1].bytes, 2 * activation);
  EXPECT_EQ(timings[2].bytes, 2 * activation);  // Mul(r, r) reads r once
  for (const LayerTiming& t : timings) EXPECT_GE(t.milliseconds, 0.0) << t.name;
  EXPECT_FLOAT_EQ(y[0], 1.5f * 1.5f);  // the profiled runs computed the model
}

TEST(LayerProfile, CpuEnginesHaveNoPeakMemoryBandwidth) {
  const std::vector<uint8_t> bytes = add_relu_square_engine();
  EXPECT_EQ(peak_memory_bandwidth_gb_per_s(Engine::load_bytes(bytes.data(), bytes.size())), 0.0);
}

}  // namespace
}  // namespace kiln
