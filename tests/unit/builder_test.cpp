#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>

#include "backends/backend_registry.hpp"
#include "backends/cpu/cpu_node_runner.hpp"
#include "backends/cpu/onednn_conv.hpp"
#include "base/json.hpp"
#include "builder/build_from_graph.hpp"
#include "builder/builder_config.hpp"
#include "format/engine_io.hpp"
#include "graph_test_builder.hpp"
#include "kiln/builder.hpp"
#include "kiln/kiln_builder.h"
#include "kiln/runtime.hpp"
#include "onnx_test_model.hpp"
#include "scoped_env.hpp"

namespace kiln::builder {
namespace {

using format::EngineModel;
using format::MemoryPlan;
using format::TensorKind;
using testing::attrs_of;
using testing::GraphBuilder;
using testing::make_tensor_f32;
using testing::make_tensor_i64;
using testing::random_tensor_f32;

uint64_t tensor_bytes(const format::TensorDesc& t) {
  return static_cast<uint64_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
}

// Checks what every emitted model must satisfy, whatever the graph.
void expect_consistent(const EngineModel& m) {
  const size_t n = m.tensors.size();
  ASSERT_EQ(m.memory_plan.offsets.size(), n);
  ASSERT_EQ(m.memory_plan.first_use.size(), n);
  ASSERT_EQ(m.memory_plan.last_use.size(), n);
  EXPECT_EQ(m.producer, std::string("kiln ") + KILN_VERSION);
  // Every tensor a layer writes is written once, after everything it reads was written.
  std::vector<int> writes(n, 0);
  for (size_t l = 0; l < m.layers.size(); ++l) {
    for (int32_t t : m.layers[l].inputs) {
      if (t < 0) continue;
      const TensorKind kind = m.tensors[static_cast<size_t>(t)].kind;
      if (kind == TensorKind::kActivation || kind == TensorKind::kOutput) {
        EXPECT_EQ(writes[static_cast<size_t>(t)], 1)
            << "layer " << m.layers[l].name << " reads " << m.tensors[static_cast<size_t>(t)].name;
      }
    }
    for (int32_t t : m.layers[l].outputs) ++writes[static_cast<size_t>(t)];
  }
  for (size_t t = 0; t < n; ++t) {
    const format::TensorDesc& desc = m.tensors[t];
    const bool written = desc.kind == TensorKind::kActivation || desc.kind == TensorKind::kOutput;
    EXPECT_EQ(writes[t], written ? 1 : 0) << desc.name;
    if (desc.kind == TensorKind::kWeight) {
      EXPECT_EQ(desc.weight_offset % format::kWeightAlignment, 0u) << desc.name;
      EXPECT_LE(desc.weight_offset + desc.weight_size, m.weights.size()) << desc.name;
      EXPECT_EQ(desc.weight_size, tensor_bytes(desc)) << desc.name;
    }
    if (desc.kind != TensorKind::kActivation) {
      EXPECT_EQ(m.memory_plan.offsets[t], MemoryPlan::kNoOffset) << desc.name;
    }
  }
  for (const format::Binding& b : m.outputs)
    EXPECT_EQ(m.tensors[b.tensor].kind, TensorKind::kOutput) << b.name;
  for (const format::Binding& b : m.inputs) {
    EXPECT_EQ(m.tensors[b.tensor].kind, TensorKind::kInput) << b.name;
    EXPECT_EQ(b.ranges.size(), m.tensors[b.tensor].shape.size()) << b.name;
  }
  if (!m.memory_plan.is_static) return;
  // Static plan: every activation placed, aligned, inside the arena, never overlapping another
  // activation that is live at the same time.
  std::vector<size_t> activations;
  for (size_t t = 0; t < n; ++t)
    if (m.tensors[t].kind == TensorKind::kActivation) activations.push_back(t);
  for (size_t t : activations) {
    const uint64_t offset = m.memory_plan.offsets[t];
    ASSERT_NE(offset, MemoryPlan::kNoOffset) << m.tensors[t].name;
    EXPECT_EQ(offset % m.memory_plan.alignment, 0u);
    EXPECT_LE(offset + tensor_bytes(m.tensors[t]), m.memory_plan.arena_size);
    EXPECT_GE(m.memory_plan.first_use[t], 0);
    EXPECT_GE(m.memory_plan.last_use[t], m.memory_plan.first_use[t]);
  }
  for (size_t i = 0; i < activations.size(); ++i) {
    for (size_t j = i + 1; j < activations.size(); ++j) {
      const size_t a = activations[i], b = activations[j];
      const bool live_together = m.memory_plan.first_use[a] <= m.memory_plan.last_use[b] &&
                                 m.memory_plan.first_use[b] <= m.memory_plan.last_use[a];
      if (!live_together) continue;
      const uint64_t a0 = m.memory_plan.offsets[a], a1 = a0 + tensor_bytes(m.tensors[a]);
      const uint64_t b0 = m.memory_plan.offsets[b], b1 = b0 + tensor_bytes(m.tensors[b]);
      EXPECT_TRUE(a1 <= b0 || b1 <= a0 || a0 == a1 || b0 == b1)
          << m.tensors[a].name << " and " << m.tensors[b].name << " overlap while both live";
    }
  }
}

const format::Binding* find_binding(const std::vector<format::Binding>& bindings,
                                    const std::string& name) {
  for (const format::Binding& b : bindings)
    if (b.name == name) return &b;
  return nullptr;
}

using testing::ScopedEnv;

// x[1,3,8,8] -> Conv -> Relu -> Conv -> Add(relu) -> Relu -> Identity -> "y".
GraphBuilder small_cnn(Shape input_shape) {
  std::mt19937 rng(11);
  GraphBuilder b;
  const ir::ValueId x = b.input("x", std::move(input_shape));
  const AttributeMap pads = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}});
  const ir::ValueId c1 = b.node("Conv", "conv1",
                                {x, b.constant("w1", random_tensor_f32({4, 3, 3, 3}, rng)),
                                 b.constant("b1", random_tensor_f32({4}, rng))},
                                pads);
  const ir::ValueId r1 = b.node("Relu", "relu1", {c1});
  const ir::ValueId c2 =
      b.node("Conv", "conv2", {r1, b.constant("w2", random_tensor_f32({4, 4, 3, 3}, rng))}, pads);
  const ir::ValueId sum = b.node("Add", "add", {c2, r1});
  const ir::ValueId r2 = b.node("Relu", "relu2", {sum});
  b.output(b.node("Identity", "y", {r2}));
  return b;
}

TEST(BuilderEmission, StaticModelIsConsistent) {
  // NCHW, so that the layers are the fused convolutions alone (CpuConvolutionRegionsRunNhwc below
  // checks the CPU target's NHWC regions).
  const ScopedEnv nchw("KILN_CONV_LAYOUT", "nchw");
  GraphBuilder b = small_cnn({1, 3, 8, 8});
  const EngineModel m = build_engine_model(std::move(b.graph), BuilderConfig{});
  expect_consistent(m);
  // The Identity is gone; conv1+relu1 and conv2+add+relu2 are fused, the last writing the output.
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.layers.back().op, "Conv");
  EXPECT_EQ(m.layers.back().attrs.get_string("kiln_activation"), "Relu");
  ASSERT_EQ(m.layers.back().inputs.size(), 4u);
  EXPECT_EQ(m.layers.back().inputs[2], -1);  // conv2 has no bias
  EXPECT_EQ(m.layers.back().inputs[3], m.layers.front().outputs[0]);  // the residual is relu1
  ASSERT_EQ(m.outputs.size(), 1u);
  EXPECT_EQ(m.outputs[0].name, "y");
  EXPECT_EQ(m.tensors[m.outputs[0].tensor].shape, (Shape{1, 4, 8, 8}));
  EXPECT_EQ(static_cast<int32_t>(m.outputs[0].tensor), m.layers.back().outputs[0]);
  ASSERT_EQ(m.inputs.size(), 1u);
  EXPECT_EQ(m.inputs[0].name, "x");
  for (const format::DimRange& r : m.inputs[0].ranges)
    EXPECT_TRUE(r.min == r.opt && r.opt == r.max);
  EXPECT_TRUE(m.memory_plan.is_static);
  EXPECT_GT(m.memory_plan.arena_size, 0u);
  EXPECT_EQ(m.target.backend, "cpu");
  EXPECT_EQ(m.precision, DType::kFloat32);
  int weights = 0;
  for (const format::TensorDesc& t : m.tensors) weights += t.kind == TensorKind::kWeight;
  EXPECT_EQ(weights, 3);
}

TEST(BuilderEmission, WeightBytesAreTheConstants) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {3});
  const ir::ValueId c1 = b.constant("c1", make_tensor_f32({3}, {1.5f, -2.0f, 3.25f}));
  const ir::ValueId c2 = b.constant("c2", make_tensor_i64({1}, {3}));
  const ir::ValueId sum = b.node("Add", "add", {x, c1});
  b.output(b.node("Reshape", "reshape", {sum, c2}));
  // Keep the Reshape from being folded away: its data input is not constant.
  const EngineModel m = build_engine_model(std::move(b.graph), BuilderConfig{});
  expect_consistent(m);
  int found = 0;
  for (const format::TensorDesc& t : m.tensors) {
    if (t.kind != TensorKind::kWeight) continue;
    ++found;
    const uint8_t* bytes = m.weights.data() + t.weight_offset;
    if (t.name == "c1") {
      float v[3];
      std::memcpy(v, bytes, sizeof v);
      EXPECT_EQ(v[0], 1.5f);
      EXPECT_EQ(v[1], -2.0f);
      EXPECT_EQ(v[2], 3.25f);
    } else {
      EXPECT_EQ(t.name, "c2");
      int64_t v;
      std::memcpy(&v, bytes, sizeof v);
      EXPECT_EQ(v, 3);
    }
  }
  EXPECT_EQ(found, 2);
}

TEST(BuilderEmission, DynamicModelRecordsLivenessAndRanges) {
  const ScopedEnv nchw("KILN_CONV_LAYOUT", "nchw");  // layer indices as below
  GraphBuilder b = small_cnn({kDynamicDim, 3, 8, 8});
  BuilderConfig config;
  config.profiles.push_back(InputProfile{"x", {1, 3, 8, 8}, {4, 3, 8, 8}, {16, 3, 8, 8}});
  const EngineModel m = build_engine_model(std::move(b.graph), config);
  expect_consistent(m);
  EXPECT_FALSE(m.memory_plan.is_static);
  ASSERT_EQ(m.inputs[0].ranges.size(), 4u);
  EXPECT_EQ(m.inputs[0].ranges[0].min, 1);
  EXPECT_EQ(m.inputs[0].ranges[0].opt, 4);
  EXPECT_EQ(m.inputs[0].ranges[0].max, 16);
  EXPECT_EQ(m.inputs[0].ranges[1].min, 3);
  EXPECT_EQ(m.inputs[0].ranges[1].max, 3);
  EXPECT_EQ(m.tensors[m.inputs[0].tensor].shape[0], kDynamicDim);
  for (size_t t = 0; t < m.tensors.size(); ++t) {
    EXPECT_EQ(m.memory_plan.offsets[t], MemoryPlan::kNoOffset);
    if (m.tensors[t].kind != TensorKind::kActivation) continue;
    EXPECT_GE(m.memory_plan.first_use[t], 0) << m.tensors[t].name;
    EXPECT_GE(m.memory_plan.last_use[t], m.memory_plan.first_use[t]) << m.tensors[t].name;
  }
  // With a dynamic batch the residual Add fuses as with a static one: both operands' batch dims
  // carry x's symbol. So relu1 (written by the fused conv1+relu1, layer 0) is read only by
  // conv2+add+relu2 (layer 1), as its input and its residual.
  ASSERT_EQ(m.layers.size(), 2u);
  ASSERT_EQ(m.layers.back().inputs.size(), 4u);
  EXPECT_EQ(m.layers.back().inputs[3], m.layers.front().outputs[0]);
  EXPECT_EQ(m.layers.back().attrs.get_string("kiln_activation"), "Relu");
  int found = 0;
  for (size_t t = 0; t < m.tensors.size(); ++t) {
    if (m.tensors[t].name != "relu1") continue;
    ++found;
    EXPECT_EQ(m.memory_plan.first_use[t], 0);
    EXPECT_EQ(m.memory_plan.last_use[t], 1);
  }
  EXPECT_EQ(found, 1);
}

// The CPU target keeps a region of convolutions NHWC where oneDNN is there to run them: one
// Transpose in, NHWC convolutions, one Transpose out, computing what the NCHW engine computes.
TEST(BuilderEmission, CpuConvolutionRegionsRunNhwc) {
  if (!cpu::onednn::available()) GTEST_SKIP() << "no oneDNN here: the CPU target keeps NCHW";
  const EngineModel nhwc = build_engine_model(small_cnn({1, 3, 8, 8}).graph, BuilderConfig{});
  expect_consistent(nhwc);
  std::vector<std::string> ops;
  for (const format::Layer& layer : nhwc.layers) ops.push_back(layer.op);
  EXPECT_EQ(ops, (std::vector<std::string>{"Transpose", "Conv", "Conv", "Transpose"}));
  for (const format::Layer& layer : nhwc.layers) {
    if (layer.op == "Conv") {
      EXPECT_EQ(layer.attrs.get_string_or("kiln_layout", ""), "NHWC");
    }
  }
  EngineModel nchw;
  {
    const ScopedEnv layout("KILN_CONV_LAYOUT", "nchw");
    nchw = build_engine_model(small_cnn({1, 3, 8, 8}).graph, BuilderConfig{});
  }
  std::vector<float> x(3 * 8 * 8);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
  const std::vector<NamedTensor> inputs{{"x", TensorRef{DType::kFloat32, Shape{1, 3, 8, 8}, x.data()}}};
  auto run = [&](const EngineModel& m) {
    const std::vector<uint8_t> bytes = format::write_engine(m);
    Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
    ExecutionContext context = engine.create_context();
    return context.execute(inputs).at(0);
  };
  const Tensor got = run(nhwc);
  const Tensor want = run(nchw);
  ASSERT_EQ(got.shape, want.shape);
  for (size_t i = 0; i < want.bytes.size() / 4; ++i) {
    float g, w;
    std::memcpy(&g, got.bytes.data() + 4 * i, 4);
    std::memcpy(&w, want.bytes.data() + 4 * i, 4);
    EXPECT_NEAR(g, w, 1e-4f * (1.0f + std::fabs(w))) << "element " << i;
  }
}

TEST(BuilderEmission, UncoveredDynamicDimsGetTheDefaultRange) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {kDynamicDim, 5});
  b.output(b.node("Relu", "y", {x}));
  BuilderConfig config;
  config.default_dynamic_min = 2;
  config.default_dynamic_opt = 3;
  config.default_dynamic_max = 7;
  const EngineModel m = build_engine_model(std::move(b.graph), config);
  expect_consistent(m);
  EXPECT_EQ(m.inputs[0].ranges[0].min, 2);
  EXPECT_EQ(m.inputs[0].ranges[0].opt, 3);
  EXPECT_EQ(m.inputs[0].ranges[0].max, 7);
  EXPECT_EQ(m.inputs[0].ranges[1].min, 5);
  EXPECT_EQ(m.inputs[0].ranges[1].max, 5);
}

TEST(BuilderEmission, ProfileWithMinEqualMaxMakesDimStatic) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {kDynamicDim, 5});
  const ir::ValueId r = b.node("Relu", "r", {x});
  b.output(b.node("Neg", "y", {r}));
  BuilderConfig config;
  config.profiles.push_back(InputProfile{"x", {6, 5}, {6, 5}, {6, 5}});
  const EngineModel m = build_engine_model(std::move(b.graph), config);
  expect_consistent(m);
  EXPECT_EQ(m.tensors[m.inputs[0].tensor].shape, (Shape{6, 5}));
  EXPECT_TRUE(m.memory_plan.is_static);
  EXPECT_EQ(m.tensors[m.outputs[0].tensor].shape, (Shape{6, 5}));
}

TEST(BuilderEmission, OutputsAliasingInputsAndConstantsGetCopies) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2});
  const ir::ValueId c = b.constant("c", make_tensor_f32({2}, {1.0f, 2.0f}));
  const ir::ValueId r = b.node("Relu", "r", {x});
  b.output(x);
  b.output(c);
  b.output(r);
  const EngineModel m = build_engine_model(std::move(b.graph), BuilderConfig{});
  expect_consistent(m);
  ASSERT_EQ(m.outputs.size(), 3u);
  const format::Binding* out_x = find_binding(m.outputs, "x");
  const format::Binding* out_c = find_binding(m.outputs, "c");
  const format::Binding* out_r = find_binding(m.outputs, "r");
  ASSERT_TRUE(out_x && out_c && out_r);
  EXPECT_NE(out_x->tensor, m.inputs[0].tensor);
  std::set<uint32_t> distinct{out_x->tensor, out_c->tensor, out_r->tensor};
  EXPECT_EQ(distinct.size(), 3u);
  int copies = 0;
  for (const format::Layer& layer : m.layers) {
    if (layer.op != "Identity") continue;
    ++copies;
    ASSERT_EQ(layer.inputs.size(), 1u);
    ASSERT_EQ(layer.outputs.size(), 1u);
    const auto source = static_cast<uint32_t>(layer.inputs[0]);
    const auto target = static_cast<uint32_t>(layer.outputs[0]);
    if (target == out_x->tensor) {
      EXPECT_EQ(source, m.inputs[0].tensor);
    } else {
      EXPECT_EQ(target, out_c->tensor);
      EXPECT_EQ(m.tensors[source].kind, TensorKind::kWeight);
    }
  }
  EXPECT_EQ(copies, 2);
}

TEST(BuilderEmission, FoldedOutputBecomesACopiedWeight) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3});
  b.output(b.node("Shape", "shape_of_x", {x}));
  const EngineModel m = build_engine_model(std::move(b.graph), BuilderConfig{});
  expect_consistent(m);
  ASSERT_EQ(m.layers.size(), 1u);
  EXPECT_EQ(m.layers[0].op, "Identity");
  const format::TensorDesc& source = m.tensors[static_cast<size_t>(m.layers[0].inputs[0])];
  ASSERT_EQ(source.kind, TensorKind::kWeight);
  int64_t dims[2];
  std::memcpy(dims, m.weights.data() + source.weight_offset, sizeof dims);
  EXPECT_EQ(dims[0], 2);
  EXPECT_EQ(dims[1], 3);
  EXPECT_EQ(m.outputs[0].name, "shape_of_x");
}

TEST(BuilderEmission, RejectsAnOutputListedTwice) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2});
  const ir::ValueId r = b.node("Relu", "r", {x});
  b.output(r);
  b.output(r);
  try {
    build_engine_model(std::move(b.graph), BuilderConfig{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("'r'"), std::string::npos) << e.what();
  }
}

TEST(BuilderEmission, RemovesDeadNodesAndFoldsBatchNorm) {
  std::mt19937 rng(3);
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {1, 2, 4, 4});
  const ir::ValueId conv =
      b.node("Conv", "conv", {x, b.constant("w", random_tensor_f32({2, 2, 1, 1}, rng))});
  const ir::ValueId bn = b.node(
      "BatchNormalization", "bn",
      {conv, b.constant("s", random_tensor_f32({2}, rng, 0.5f, 1.0f)),
       b.constant("bb", random_tensor_f32({2}, rng)), b.constant("m", random_tensor_f32({2}, rng)),
       b.constant("v", random_tensor_f32({2}, rng, 0.5f, 1.0f))});
  b.node("Neg", "dead", {bn});
  b.output(bn);
  const EngineModel m = build_engine_model(std::move(b.graph), BuilderConfig{});
  expect_consistent(m);
  ASSERT_EQ(m.layers.size(), 1u);
  EXPECT_EQ(m.layers[0].op, "Conv");
  EXPECT_EQ(m.outputs[0].name, "bn");
  // Only the folded weight and bias remain; the BN parameters and old weight are gone.
  int weights = 0;
  for (const format::TensorDesc& t : m.tensors) weights += t.kind == TensorKind::kWeight;
  EXPECT_EQ(weights, 2);
}

// ---- configuration ----------------------------------------------------------------------------

struct ExpectedError {
  ErrorCode code;
  std::string fragment;
};

void expect_build_error(const BuilderConfig& config, const ExpectedError& expected,
                        Shape input_shape = {kDynamicDim, 5}) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", std::move(input_shape));
  b.output(b.node("Relu", "y", {x}));
  try {
    build_engine_model(std::move(b.graph), config);
    ADD_FAILURE() << "expected an error containing '" << expected.fragment << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), expected.code) << e.what();
    EXPECT_NE(std::string(e.what()).find(expected.fragment), std::string::npos) << e.what();
  }
}

// What target 'cuda' does depends on the build and the machine; each case asserts its outcome.
TEST(BuilderConfigValidation, CudaTargetNeedsCudaAndAGpu) {
  BuilderConfig config;
  config.target = "cuda";
#if !KILN_WITH_CUDA
  expect_build_error(config, {ErrorCode::kUnsupported, "this kiln was built without CUDA"});
#else
  const backends::Backend* cuda = backends::find_backend("cuda");
  ASSERT_NE(cuda, nullptr) << backends::why_absent("cuda");
  if (cuda->device_count() == 0) {
    expect_build_error(config, {ErrorCode::kDeviceError, "needs a GPU to build on"});
  } else {
    config.device = cuda->device_count();
    expect_build_error(config, {ErrorCode::kInvalidArgument, "does not exist"});
  }
#endif
}

TEST(BuilderConfigValidation, UnknownTarget) {
  BuilderConfig config;
  config.target = "tpu";
  expect_build_error(config, {ErrorCode::kInvalidArgument, "unknown target 'tpu'"});
}

TEST(BuilderConfigValidation, ReducedPrecisionNeedsCuda) {
  for (Precision p : {Precision::kFp16, Precision::kBf16, Precision::kTf32}) {
    BuilderConfig config;
    config.precision = p;
    expect_build_error(config, {ErrorCode::kUnsupported, "the CPU backend computes in float32"});
    expect_build_error(config, {ErrorCode::kUnsupported, "needs target cuda"});
  }
}

TEST(BuilderConfigValidation, KernelCacheResolvesToADirectoryOrOff) {
  const char* previous = std::getenv("KILN_KERNEL_CACHE");
  const std::string saved = previous ? previous : "";
  setenv("KILN_KERNEL_CACHE", "/tmp/kiln-kernel-cache-from-env", 1);
  BuilderConfig config;
  const std::string by_default = resolve_config(config).kernel_cache_dir;
  config.kernel_cache = "off";
  const std::string off = resolve_config(config).kernel_cache_dir;
  config.kernel_cache = "/tmp/chosen-kernel-cache";
  const std::string chosen = resolve_config(config).kernel_cache_dir;
  previous ? setenv("KILN_KERNEL_CACHE", saved.c_str(), 1) : unsetenv("KILN_KERNEL_CACHE");
  EXPECT_EQ(by_default, "/tmp/kiln-kernel-cache-from-env");
  EXPECT_EQ(off, "");
  EXPECT_EQ(chosen, "/tmp/chosen-kernel-cache");
}

TEST(BuilderConfigValidation, MetadataMustBeAJsonObject) {
  BuilderConfig config;
  config.metadata_json = "[1, 2]";
  expect_build_error(config, {ErrorCode::kInvalidArgument, "must be a JSON object, got array"});
  config.metadata_json = "{\"a\": }";
  expect_build_error(config, {ErrorCode::kInvalidArgument, "metadata_json: line 1, column 7"});
}

TEST(BuilderConfigValidation, ProfileErrorsNameTheInput) {
  BuilderConfig unknown;
  unknown.profiles.push_back(InputProfile{"images", {1, 5}, {1, 5}, {2, 5}});
  expect_build_error(unknown,
                     {ErrorCode::kInvalidArgument,
                      "profile for input 'images': the model has no such input (inputs: x)"});

  BuilderConfig rank;
  rank.profiles.push_back(InputProfile{"x", {1}, {1}, {2}});
  expect_build_error(rank, {ErrorCode::kInvalidArgument,
                            "profile for input 'x': min has 1 dims, the input has 2"});

  BuilderConfig order;
  order.profiles.push_back(InputProfile{"x", {4, 5}, {2, 5}, {8, 5}});
  expect_build_error(order, {ErrorCode::kInvalidArgument,
                             "profile for input 'x', dim 0: needs 0 <= min <= opt <= max"});

  BuilderConfig fixed;
  fixed.profiles.push_back(InputProfile{"x", {1, 4}, {1, 5}, {2, 6}});
  expect_build_error(fixed, {ErrorCode::kInvalidArgument,
                             "profile for input 'x', dim 1: the model fixes it at 5"});

  BuilderConfig twice;
  twice.profiles.push_back(InputProfile{"x", {1, 5}, {1, 5}, {2, 5}});
  twice.profiles.push_back(InputProfile{"x", {1, 5}, {1, 5}, {2, 5}});
  expect_build_error(twice, {ErrorCode::kInvalidArgument, "input 'x' has two profiles"});

  BuilderConfig bad_default;
  bad_default.default_dynamic_min = 8;
  bad_default.default_dynamic_max = 4;
  expect_build_error(bad_default, {ErrorCode::kInvalidArgument, "default dynamic dimension range"});
}

TEST(BuilderConfigValidation, MetadataIsMergedWithBuildInfo) {
  GraphBuilder b;
  b.graph.name = "tiny";
  b.graph.opset = 17;
  const ir::ValueId x = b.input("x", {2});
  b.output(b.node("Relu", "y", {x}));
  BuilderConfig config;
  config.metadata_json = R"({"model": "resnet", "version": 3})";
  const EngineModel m = build_engine_model(std::move(b.graph), config, "tiny.onnx");
  const json::Value meta = json::parse(m.metadata_json);
  EXPECT_EQ(meta.find("model")->as_string(), "resnet");
  EXPECT_EQ(meta.find("version")->as_int64(), 3);
  const json::Value* build = meta.find("kiln_build");
  ASSERT_NE(build, nullptr);
  EXPECT_EQ(build->find("source")->as_string(), "tiny.onnx");
  EXPECT_EQ(build->find("graph")->as_string(), "tiny");
  EXPECT_EQ(build->find("opset")->as_int64(), 17);
  EXPECT_EQ(build->find("precision")->as_string(), "fp32");
}

// ---- engine bytes -----------------------------------------------------------------------------

TEST(BuilderEndToEnd, GraphToEngineBytesReadsBack) {
  GraphBuilder b = small_cnn({1, 3, 8, 8});
  const EngineModel model = build_engine_model(b.graph, BuilderConfig{});
  auto bytes = std::make_shared<const std::vector<uint8_t>>(
      build_engine_from_graph(std::move(b.graph), BuilderConfig{}));
  const EngineModel back = format::read_engine(bytes, "<test>");
  ASSERT_EQ(back.tensors.size(), model.tensors.size());
  ASSERT_EQ(back.layers.size(), model.layers.size());
  for (size_t i = 0; i < model.layers.size(); ++i) {
    EXPECT_EQ(back.layers[i].op, model.layers[i].op);
    EXPECT_EQ(back.layers[i].inputs, model.layers[i].inputs);
    EXPECT_EQ(back.layers[i].outputs, model.layers[i].outputs);
    EXPECT_EQ(back.layers[i].attrs, model.layers[i].attrs);
  }
  EXPECT_EQ(back.memory_plan.offsets, model.memory_plan.offsets);
  EXPECT_EQ(back.memory_plan.arena_size, model.memory_plan.arena_size);
  EXPECT_TRUE(back.memory_plan.is_static);
  ASSERT_EQ(back.weights.size() >= model.weights.size(), true);
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    if (model.tensors[t].kind != TensorKind::kWeight) continue;
    const auto& desc = back.tensors[t];
    EXPECT_EQ(std::memcmp(back.weights.data() + desc.weight_offset,
                          model.weights.data() + model.tensors[t].weight_offset, desc.weight_size),
              0);
  }
  EXPECT_EQ(back.metadata_json, model.metadata_json);
}

// ---- C API ------------------------------------------------------------------------------------

TEST(BuilderCApi, RejectsUnknownConfigKeys) {
  const uint8_t garbage[4] = {1, 2, 3, 4};
  void* engine = reinterpret_cast<void*>(1);
  size_t size = 99;
  EXPECT_EQ(kiln_build_onnx_bytes(garbage, sizeof garbage, nullptr, R"({"precison": "fp16"})",
                                  &engine, &size),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kiln_last_error()).find("unknown key 'precison'"), std::string::npos)
      << kiln_last_error();
  EXPECT_EQ(engine, nullptr);
  EXPECT_EQ(size, 0u);
}

TEST(BuilderCApi, ReportsConfigErrorsWithTheirCodes) {
  const uint8_t garbage[4] = {1, 2, 3, 4};
  void* engine = nullptr;
  size_t size = 0;
  struct Case {
    const char* config;
    kiln_status status;
    const char* fragment;
  };
  const Case cases[] = {
#if !KILN_WITH_CUDA
      {R"({"target": "cuda"})", KILN_ERROR_UNSUPPORTED, "built without CUDA"},
#endif
      {R"({"precision": "fp16"})", KILN_ERROR_UNSUPPORTED, "computes in float32"},
      {R"({"precision": "fp8"})", KILN_ERROR_INVALID_ARGUMENT, "unknown precision 'fp8'"},
      {R"({"device": "zero"})", KILN_ERROR_INVALID_ARGUMENT,
       "config key 'device': expected number"},
      {R"({"workspace_limit": -1})", KILN_ERROR_INVALID_ARGUMENT, "config key 'workspace_limit'"},
      // Accepted and ignored before: kernels get a fixed 1 GiB that engines cannot change.
      {R"({"workspace_limit": 1048576})", KILN_ERROR_UNSUPPORTED,
       "workspace_limit 1048576 is not supported"},
      {R"({"kernel_cache": 5})", KILN_ERROR_INVALID_ARGUMENT,
       "config key 'kernel_cache': expected string"},
      {R"({"metadata": [1]})", KILN_ERROR_INVALID_ARGUMENT,
       "config key 'metadata': expected object"},
      {R"({"profiles": {"x": {"min": [1], "max": [2], "best": [1]}}})", KILN_ERROR_INVALID_ARGUMENT,
       "unknown key 'best'"},
      {R"({"profiles": {"x": {"min": [1]}}})", KILN_ERROR_INVALID_ARGUMENT,
       "needs both 'min' and 'max'"},
      {R"({"profiles": {"x": {"min": [1.5], "max": [2]}}})", KILN_ERROR_INVALID_ARGUMENT,
       "expected an integer"},
      {"[1]", KILN_ERROR_INVALID_ARGUMENT, "config_json: expected object"},
      {"{", KILN_ERROR_INVALID_ARGUMENT, "config_json: line 1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.config);
    EXPECT_EQ(kiln_build_onnx_bytes(garbage, sizeof garbage, "", c.config, &engine, &size),
              c.status);
    EXPECT_NE(std::string(kiln_last_error()).find(c.fragment), std::string::npos)
        << kiln_last_error();
  }
}

TEST(BuilderCApi, RejectsNullArguments) {
  size_t size = 0;
  void* engine = nullptr;
  EXPECT_EQ(kiln_build_onnx_file("model.onnx", nullptr, nullptr, &size),
            KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kiln_build_onnx_file(nullptr, nullptr, &engine, &size), KILN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(kiln_build_onnx_bytes(nullptr, 10, nullptr, nullptr, &engine, &size),
            KILN_ERROR_INVALID_ARGUMENT);
  kiln_free(nullptr);  // allowed, like free()
}

TEST(BuilderCApi, MissingFileIsNotFound) {
  void* engine = nullptr;
  size_t size = 0;
  const kiln_status status =
      kiln_build_onnx_file("/nonexistent/dir/model.onnx", nullptr, &engine, &size);
  EXPECT_TRUE(status == KILN_ERROR_NOT_FOUND || status == KILN_ERROR_IO) << status;
  EXPECT_NE(std::string(kiln_last_error()).find("/nonexistent/dir/model.onnx"), std::string::npos)
      << kiln_last_error();
}

TEST(BuilderCApi, GarbageBytesAreCorrupt) {
  const uint8_t garbage[5] = {0xff, 0xff, 0xff, 0xff, 0xff};
  void* engine = nullptr;
  size_t size = 0;
  EXPECT_EQ(kiln_build_onnx_bytes(garbage, sizeof garbage, nullptr, nullptr, &engine, &size),
            KILN_ERROR_CORRUPT_FILE)
      << kiln_last_error();
  EXPECT_EQ(engine, nullptr);
}

// ---- ONNX -> engine -> runtime -----------------------------------------------------------------

namespace onnx_model {

using namespace kiln::onnx::testing;

struct Weights {
  HostTensor w, b, scale, bias, mean, var;
  Weights() {
    std::mt19937 rng(99);
    w = random_tensor_f32({4, 3, 3, 3}, rng);
    b = random_tensor_f32({4}, rng);
    scale = random_tensor_f32({4}, rng, 0.5f, 1.5f);
    bias = random_tensor_f32({4}, rng);
    mean = random_tensor_f32({4}, rng);
    var = random_tensor_f32({4}, rng, 0.5f, 2.0f);
  }
};

TensorSpec float_initializer(const std::string& name, const HostTensor& t) {
  std::vector<float> values(t.data<float>(), t.data<float>() + t.numel());
  return raw_float_tensor(name, t.shape, values);
}

// x[batch,3,6,6] -> Conv -> BatchNormalization -> Relu -> Shape/Gather/Unsqueeze/Concat -> Reshape
// (flatten keeping the batch) -> Identity -> y.
std::vector<uint8_t> flatten_cnn(const Weights& weights, DimSpec batch) {
  ModelSpec m;
  m.opsets = {{"", 17}};
  GraphSpec& g = m.graph;
  g.name = "flatten_cnn";
  g.inputs.push_back(ValueInfoSpec{"x", kOnnxFloat, true, {batch, 3, 6, 6}});
  g.outputs.push_back(ValueInfoSpec{"y", kOnnxFloat, true, {batch, 144}});
  g.initializers = {
      float_initializer("w", weights.w),         float_initializer("b", weights.b),
      float_initializer("scale", weights.scale), float_initializer("bias", weights.bias),
      float_initializer("mean", weights.mean),   float_initializer("var", weights.var),
      raw_int64_tensor("zero", {}, {0}),         raw_int64_tensor("axes", {1}, {0}),
      raw_int64_tensor("minus_one", {1}, {-1})};
  g.nodes = {
      NodeSpec{"Conv", {"x", "w", "b"}, {"conv"}, "conv", "", {attr_ints("pads", {1, 1, 1, 1})}},
      NodeSpec{"BatchNormalization",
               {"conv", "scale", "bias", "mean", "var"},
               {"bn"},
               "bn",
               "",
               {attr_float("epsilon", 1e-5f)}},
      NodeSpec{"Relu", {"bn"}, {"relu"}, "relu", "", {}},
      NodeSpec{"Shape", {"relu"}, {"shape"}, "shape", "", {}},
      NodeSpec{"Gather", {"shape", "zero"}, {"n"}, "gather", "", {attr_int("axis", 0)}},
      NodeSpec{"Unsqueeze", {"n", "axes"}, {"n1"}, "unsqueeze", "", {}},
      NodeSpec{"Concat", {"n1", "minus_one"}, {"target"}, "concat", "", {attr_int("axis", 0)}},
      NodeSpec{"Reshape", {"relu", "target"}, {"flat"}, "reshape", "", {}},
      NodeSpec{"Identity", {"flat"}, {"y"}, "identity", "", {}},
  };
  return m.encode();
}

HostTensor reference(const Weights& weights, const HostTensor& x) {
  const AttributeMap pads = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}});
  HostTensor conv = cpu::run_node_on_cpu(
      "conv", "Conv", pads, std::vector<const HostTensor*>{&x, &weights.w, &weights.b}, 1)[0];
  HostTensor bn = cpu::run_node_on_cpu(
      "bn", "BatchNormalization", attrs_of({{"epsilon", Attribute::of_float(1e-5f)}}),
      std::vector<const HostTensor*>{&conv, &weights.scale, &weights.bias, &weights.mean,
                                     &weights.var},
      1)[0];
  HostTensor relu =
      cpu::run_node_on_cpu("relu", "Relu", {}, std::vector<const HostTensor*>{&bn}, 1)[0];
  relu.shape = {x.shape[0], relu.numel() / x.shape[0]};
  return relu;
}

}  // namespace onnx_model

TEST(BuilderEndToEnd, StaticOnnxModelFoldsToTwoLayers) {
  const onnx_model::Weights weights;
  const std::vector<uint8_t> onnx = onnx_model::flatten_cnn(weights, 2);
  auto bytes = std::make_shared<const std::vector<uint8_t>>(
      build_engine_from_onnx_bytes(onnx.data(), onnx.size(), "", BuilderConfig{}));
  const EngineModel m = format::read_engine(bytes, "<test>");
  expect_consistent(m);
  // BN folded into the Conv, the Relu fused into it, the shape subgraph folded into a constant,
  // the Identity removed.
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.layers[0].op, "Conv");
  EXPECT_EQ(m.layers[0].attrs.get_string("kiln_activation"), "Relu");
  EXPECT_EQ(m.layers[1].op, "Reshape");
  EXPECT_EQ(m.tensors[static_cast<size_t>(m.layers[1].inputs[1])].kind, TensorKind::kWeight);
  ASSERT_EQ(m.outputs.size(), 1u);
  EXPECT_EQ(m.outputs[0].name, "y");
  EXPECT_EQ(m.tensors[m.outputs[0].tensor].shape, (Shape{2, 144}));
  EXPECT_TRUE(m.memory_plan.is_static);
  const json::Value meta = json::parse(m.metadata_json);
  EXPECT_EQ(meta.find("kiln_build")->find("opset")->as_int64(), 17);
  EXPECT_EQ(meta.find("kiln_build")->find("graph")->as_string(), "flatten_cnn");
  // Builds are deterministic.
  EXPECT_EQ(*bytes, build_engine_from_onnx_bytes(onnx.data(), onnx.size(), "", BuilderConfig{}));
}

TEST(BuilderEndToEnd, DynamicOnnxModelRunsAndMatchesReference) {
  const onnx_model::Weights weights;
  const std::vector<uint8_t> onnx = onnx_model::flatten_cnn(weights, "batch");
  void* engine_bytes = nullptr;
  size_t engine_size = 0;
  const char* config =
      R"({"profiles": {"x": {"min": [1, 3, 6, 6], "opt": [2, 3, 6, 6], "max": [4, 3, 6, 6]}},
                          "metadata": {"purpose": "test"}})";
  ASSERT_EQ(
      kiln_build_onnx_bytes(onnx.data(), onnx.size(), nullptr, config, &engine_bytes, &engine_size),
      KILN_OK)
      << kiln_last_error();
  ASSERT_NE(engine_bytes, nullptr);
  Engine engine = Engine::load_bytes(engine_bytes, engine_size);
  kiln_free(engine_bytes);
  ASSERT_EQ(engine.inputs().size(), 1u);
  EXPECT_EQ(engine.inputs()[0].min_shape, (Shape{1, 3, 6, 6}));
  EXPECT_EQ(engine.inputs()[0].max_shape, (Shape{4, 3, 6, 6}));
  EXPECT_EQ(json::parse(engine.metadata_json()).find("purpose")->as_string(), "test");
  ExecutionContext context = engine.create_context();
  std::mt19937 rng(5);
  for (int64_t batch : {3, 1, 4}) {
    SCOPED_TRACE(batch);
    HostTensor x = random_tensor_f32({batch, 3, 6, 6}, rng);
    const std::vector<NamedTensor> inputs = {
        NamedTensor{"x", TensorRef{x.dtype, x.shape, x.bytes.data()}}};
    const std::vector<Tensor> outputs = context.execute(inputs);
    ASSERT_EQ(outputs.size(), 1u);
    const HostTensor want = onnx_model::reference(weights, x);
    ASSERT_EQ(outputs[0].shape, want.shape);
    HostTensor got(outputs[0].dtype, outputs[0].shape);
    got.bytes = outputs[0].bytes;
    double scale = 1e-30;
    for (int64_t i = 0; i < want.numel(); ++i)
      scale = std::max(scale, std::fabs(double(want.data<float>()[i])));
    for (int64_t i = 0; i < want.numel(); ++i)
      ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-5 * scale) << "element " << i;
  }
}

}  // namespace
}  // namespace kiln::builder
