// Size arithmetic that cannot overflow and the memory ceilings (issue 11): huge or overflowing
// shapes from models, engine files and input values give clear errors, never wrapped sizes,
// out-of-bounds writes or allocation attempts.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>

#include "base/checked_math.hpp"
#include "base/memory_limit.hpp"
#include "builder/build_from_graph.hpp"
#include "format/engine_io.hpp"
#include "format_test_support.hpp"
#include "graph_test_builder.hpp"
#include "kiln/builder.hpp"
#include "kiln/runtime.hpp"
#include "ops/op_registry.hpp"
#include "passes/constant_folding.hpp"
#include "passes/shape_inference.hpp"
#include "runtime/memory_planner.hpp"

namespace kiln {
namespace {

using testing::GraphBuilder;
using testing::make_tensor_i64;

constexpr int64_t k2to31 = int64_t{1} << 31;
constexpr int64_t k2to32 = int64_t{1} << 32;
constexpr int64_t k2to61 = int64_t{1} << 61;
constexpr int64_t k2to62 = int64_t{1} << 62;

struct Failure {
  ErrorCode code = ErrorCode::kOk;
  std::string message;
};

// The kiln::Error `body` throws; fails the test when it throws nothing.
Failure failure_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    return Failure{e.code(), e.what()};
  }
  ADD_FAILURE() << "expected a kiln::Error";
  return {};
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

Attribute float_value(float value) {
  auto t = std::make_shared<HostTensor>(DType::kFloat32, Shape{1});
  t->data<float>()[0] = value;
  return Attribute::of_tensor(t);
}

// ---- checked arithmetic -----------------------------------------------------------------------

TEST(CheckedMath, AddAndMultiplyReportOverflow) {
  EXPECT_EQ(add_no_overflow(k2to62, k2to62 - 1), kMaxSize);
  EXPECT_FALSE(add_no_overflow(k2to62, k2to62).has_value());
  EXPECT_EQ(mul_no_overflow(k2to31, k2to31), k2to62);
  EXPECT_FALSE(mul_no_overflow(k2to32, k2to32).has_value());
  const Failure f = failure_of([] { checked_mul(k2to32, k2to32, "node 'n'"); });
  EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(f.message.find("node 'n': 4294967296 * 4294967296 overflows"), std::string::npos) << f.message;
}

TEST(CheckedMath, ShapeSizesCountNonZeroDimsSoStridesFit) {
  EXPECT_EQ(element_count_no_overflow({2, 3, 4}), 24);
  EXPECT_EQ(element_count_no_overflow({}), 1);
  EXPECT_EQ(byte_size_no_overflow({k2to31, k2to31 / 8}, DType::kFloat32), k2to61);
  // 2^62 elements fit in int64, their float32 bytes do not.
  EXPECT_EQ(element_count_no_overflow({k2to31, k2to31}), k2to62);
  EXPECT_FALSE(byte_size_no_overflow({k2to31, k2to31}, DType::kFloat32).has_value());
  // The count of [0, 2^40, 2^40] is 0, but its stride along dim 0 would overflow.
  EXPECT_FALSE(element_count_no_overflow({0, int64_t{1} << 40, int64_t{1} << 40}).has_value());
  EXPECT_EQ(element_count_no_overflow({0, 1 << 20}), 0);
  // Dynamic dims are skipped: the static part of [?, 2^62, 16] already overflows in bytes.
  EXPECT_FALSE(static_dims_fit({kDynamicDim, k2to62, 16}, DType::kFloat32));
  EXPECT_TRUE(static_dims_fit({kDynamicDim, 1024, 16}, DType::kFloat32));
}

TEST(CheckedMath, ShapeNumelFailsInsteadOfWrapping) {
  // Before: [2^32, 2^32] wrapped to 0 elements, and [2^31, 2^31, 4] to 0 as well.
  for (const Shape& shape : {Shape{k2to32, k2to32}, Shape{k2to31, k2to31, 4}}) {
    const Failure f = failure_of([&] { shape_numel(shape); });
    EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
    EXPECT_NE(f.message.find(shape_to_string(shape)), std::string::npos) << f.message;
  }
  EXPECT_EQ(shape_numel({k2to31, k2to31}), k2to62);
  const Failure f = failure_of([] { HostTensor(DType::kFloat32, {k2to31, k2to31}); });
  EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(f.message.find("float32[2147483648, 2147483648] is larger than 2^63 - 1 bytes"),
            std::string::npos)
      << f.message;
}

TEST(MemoryLimit, ParsesByteCountsWithUnits) {
  EXPECT_EQ(parse_byte_size("1048576", "x"), uint64_t{1} << 20);
  EXPECT_EQ(parse_byte_size("512M", "x"), uint64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("8GiB", "x"), uint64_t{8} << 30);
  EXPECT_EQ(parse_byte_size("2tb", "x"), uint64_t{2} << 40);
  for (const char* bad : {"", "G", "12Q", "0", "99999999999999999999", "9000000000T"}) {
    const Failure f = failure_of([&] { parse_byte_size(bad, "KILN_MEMORY_LIMIT"); });
    EXPECT_EQ(f.code, ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(f.message.find("KILN_MEMORY_LIMIT"), std::string::npos) << f.message;
  }
  {
    ScopedEnv env(kMemoryLimitEnv, "3M");
    const MemoryLimit limit = host_memory_limit();
    EXPECT_EQ(limit.bytes, uint64_t{3} << 20);
    EXPECT_EQ(limit.source, kMemoryLimitEnv);
  }
  {
    ScopedEnv env(kMemoryLimitEnv, "lots");
    EXPECT_EQ(failure_of([] { host_memory_limit(); }).code, ErrorCode::kInvalidArgument);
  }
  EXPECT_GT(physical_memory_bytes(), uint64_t{1} << 20);
}

TEST(MemoryPlanner, RefusesOffsetsThatWrap) {
  // Two live-together buffers of 2^63 - 2^10 bytes: the second's end would wrap past 2^64.
  const uint64_t huge = (uint64_t{1} << 63) - 1024;
  const BufferRequest requests[] = {{huge, 0, 1}, {huge, 0, 1}, {huge, 0, 1}};
  EXPECT_EQ(failure_of([&] { plan_arena(requests, 256); }).code, ErrorCode::kInvalidArgument);
}

// ---- shape inference ---------------------------------------------------------------------------

// Infers `op` on inputs whose values are known; returns the error.
Failure infer_failure(const std::string& op, std::vector<HostTensor> values, AttributeMap attrs = {},
                      std::vector<ops::ValueInfo> extra_inputs = {}) {
  std::vector<ops::ValueInfo> inputs;
  for (const HostTensor& v : values) inputs.push_back(ops::ValueInfo{v.dtype, v.shape, &v, true});
  for (ops::ValueInfo& info : extra_inputs) inputs.insert(inputs.begin(), info);
  std::vector<ops::ValueInfo> outputs(1);
  const std::string_view names[] = {"result"};
  return failure_of([&] { ops::infer_node(*ops::find_op(op), "big", attrs, inputs, outputs, names); });
}

TEST(SizeInference, ShapeValuesThatOverflowNameTheNodeTensorAndDims) {
  AttributeMap one;
  one.set("value", float_value(1.0f));
  for (const Shape& dims : {Shape{k2to31, k2to31}, Shape{k2to32, k2to32}}) {
    const Failure f = infer_failure("ConstantOfShape", {make_tensor_i64({2}, dims)}, one);
    EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
    EXPECT_NE(f.message.find("node 'big' (ConstantOfShape): output 'result' would be float32" +
                             shape_to_string(dims) + ", larger than 2^63 - 1 bytes"),
              std::string::npos)
        << f.message;
  }
  const ops::ValueInfo data{DType::kFloat32, {1, 1}, nullptr, true};
  Failure f = infer_failure("Expand", {make_tensor_i64({2}, {k2to31, k2to31})}, {}, {data});
  EXPECT_NE(f.message.find("node 'big' (Expand): output 'result' would be float32"), std::string::npos)
      << f.message;
  // Tile: 3 * 2^62 wraps to a plausible 2^62 without the check.
  const ops::ValueInfo small{DType::kFloat32, {3}, nullptr, true};
  f = infer_failure("Tile", {make_tensor_i64({1}, {k2to62})}, {}, {small});
  EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(f.message.find("repeated 4611686018427387904 times overflows"), std::string::npos) << f.message;
}

TEST(SizeInference, PadsAndConcatsThatOverflowAreClearErrors) {
  const ops::ValueInfo data{DType::kFloat32, {2}, nullptr, true};
  // 2 + 2^62 + 2^62 wraps negative: the error must say overflow, not leak a C++ exception text.
  Failure f = infer_failure("Pad", {make_tensor_i64({2}, {k2to62, k2to62})}, {}, {data});
  EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(f.message.find("node 'big' (Pad): pads 4611686018427387904/4611686018427387904 on dimension 0"),
            std::string::npos)
      << f.message;
  // 2 + 2^61 + 2^61 fits in int64 but not as float32 bytes.
  f = infer_failure("Pad", {make_tensor_i64({2}, {k2to61, k2to61})}, {}, {data});
  EXPECT_NE(f.message.find("output 'result' would be float32[4611686018427387906]"), std::string::npos)
      << f.message;

  std::vector<ops::ValueInfo> parts(4, ops::ValueInfo{DType::kUInt8, {k2to62}, nullptr, true});
  std::vector<ops::ValueInfo> outputs(1);
  AttributeMap axis;
  axis.set("axis", Attribute::of_int(0));
  f = failure_of([&] { ops::infer_node(*ops::find_op("Concat"), "cat", axis, parts, outputs); });
  EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(f.message.find("node 'cat' (Concat): the inputs' extents along axis 0 add up"), std::string::npos)
      << f.message;
}

TEST(SizeInference, WindowAttributesThatOverflowAreClearErrors) {
  const std::vector<ops::ValueInfo> inputs = {{DType::kFloat32, {1, 1, 8, 8}, nullptr, true},
                                              {DType::kFloat32, {1, 1, 3, 3}, nullptr, true}};
  std::vector<ops::ValueInfo> outputs(1);
  AttributeMap attrs;
  attrs.set("pads", Attribute::of_ints({k2to62, 0, k2to62, 0}));
  Failure f = failure_of([&] { ops::infer_node(*ops::find_op("Conv"), "conv", attrs, inputs, outputs); });
  EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(f.message.find("overflow 64-bit sizes"), std::string::npos) << f.message;
  AttributeMap dilated;
  dilated.set("dilations", Attribute::of_ints({k2to62, 1}));
  f = failure_of([&] { ops::infer_node(*ops::find_op("Conv"), "conv", dilated, inputs, outputs); });
  EXPECT_NE(f.message.find("overflow 64-bit sizes"), std::string::npos) << f.message;
}

// ---- constant folding and the build ------------------------------------------------------------

// sum(ConstantOfShape(dims, 1.0f)) with `dims` a constant.
GraphBuilder sum_of_ones(const Shape& dims) {
  GraphBuilder b;
  AttributeMap one;
  one.set("value", float_value(1.0f));
  const auto shape = b.constant("dims", make_tensor_i64({static_cast<int64_t>(dims.size())}, dims));
  const auto ones = b.node("ConstantOfShape", "ones", {shape}, one);
  AttributeMap keep;
  keep.set("keepdims", Attribute::of_int(0));
  b.output(b.node("ReduceSum", "sum", {ones}, keep));
  return b;
}

TEST(SizeFolding, OverflowingFoldIsAnErrorNotAConstantZero) {
  // Before: [2^32, 2^32] ones wrapped to 0 elements and folded to the sum 0; [2^31, 2^31] crashed
  // in the CPU kernels under fold_constants.
  for (const Shape& dims : {Shape{k2to32, k2to32}, Shape{k2to31, k2to31}}) {
    GraphBuilder b = sum_of_ones(dims);
    const Failure f = failure_of([&] {
      passes::infer_shapes(b.graph);
      passes::fold_constants(b.graph);
    });
    EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
    EXPECT_NE(f.message.find("node 'ones' (ConstantOfShape): output 'ones' would be float32" +
                             shape_to_string(dims)),
              std::string::npos)
        << f.message;
  }
}

TEST(SizeFolding, LargeFoldsStayInTheEngine) {
  // 2^40 floats: a valid size, far beyond the folding limit; it must stay an op (no hang).
  GraphBuilder b = sum_of_ones({int64_t{1} << 20, int64_t{1} << 20});
  passes::infer_shapes(b.graph);
  EXPECT_EQ(passes::fold_constants(b.graph), 0u);
  ASSERT_EQ(b.graph.nodes.size(), 2u);
  EXPECT_EQ(b.graph.nodes[0].op_type, "ConstantOfShape");
  // A small one folds.
  GraphBuilder small = sum_of_ones({4, 8});
  passes::infer_shapes(small.graph);
  EXPECT_EQ(passes::fold_constants(small.graph), 2u);
}

TEST(SizeBuild, StaticTensorsAboveTheBuildLimitNameTheNode) {
  GraphBuilder b = sum_of_ones({int64_t{1} << 20, int64_t{1} << 20});
  BuilderConfig config;
  Failure f = failure_of([&] { builder::build_engine_model(b.graph, config, "test"); });
  EXPECT_EQ(f.code, ErrorCode::kOutOfMemory);
  EXPECT_NE(f.message.find("node 'ones' (ConstantOfShape): output tensor 'ones' (float32[1048576, 1048576]) "
                           "needs 4 TiB (4398046511104 bytes), more than the build's memory limit"),
            std::string::npos)
      << f.message;

  // 64 KiB of ones, with the limit from the config and then from the environment.
  GraphBuilder mid = sum_of_ones({128, 128});
  config.memory_limit = 32 << 10;
  f = failure_of([&] {
    GraphBuilder g = sum_of_ones({4096, 4096});  // 64 MiB: kept as an op by folding
    builder::build_engine_model(g.graph, config, "test");
  });
  EXPECT_NE(f.message.find("(BuilderConfig::memory_limit;"), std::string::npos) << f.message;
  config.memory_limit = 0;
  {
    ScopedEnv env(kMemoryLimitEnv, "1M");
    GraphBuilder g = sum_of_ones({4096, 4096});
    f = failure_of([&] { builder::build_engine_model(g.graph, config, "test"); });
    EXPECT_NE(f.message.find("1 MiB (1048576 bytes) (KILN_MEMORY_LIMIT;"), std::string::npos) << f.message;
  }
  EXPECT_NO_THROW(builder::build_engine_model(mid.graph, config, "test"));
}

TEST(SizeBuild, InputsWhoseLargestShapeOverflowsAreRefused) {
  // [?, 2^62, 16] float32: the static dims alone are 2^68 bytes.
  GraphBuilder b;
  b.output(b.node("Relu", "relu", {b.input("x", {kDynamicDim, k2to62, 16})}));
  Failure f = failure_of([&] { builder::build_engine_model(b.graph, BuilderConfig{}, "test"); });
  EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(f.message.find("input 'x': its largest allowed shape float32[4096, 4611686018427387904, 16]"),
            std::string::npos)
      << f.message;
  // A profile max of 2^62 on [?, 16].
  GraphBuilder p;
  p.output(p.node("Relu", "relu", {p.input("x", {kDynamicDim, 16})}));
  BuilderConfig config;
  config.profiles.push_back(InputProfile{"x", {1, 16}, {1, 16}, {k2to62, 16}});
  f = failure_of([&] { builder::build_engine_model(p.graph, config, "test"); });
  EXPECT_NE(f.message.find("input 'x': its largest allowed shape float32[4611686018427387904, 16]"),
            std::string::npos)
      << f.message;
}

// ---- engine files and run time -----------------------------------------------------------------

std::vector<uint8_t> build(GraphBuilder& b) {
  return builder::build_engine_from_graph(b.graph, BuilderConfig{}, "test");
}

// y = ConstantOfShape(s, 1.0f) with s an int64[2] input: the shape comes from input values.
std::vector<uint8_t> constant_of_shape_engine() {
  GraphBuilder b;
  AttributeMap one;
  one.set("value", float_value(1.0f));
  b.output(b.node("ConstantOfShape", "fill", {b.input("s", {2}, DType::kInt64)}, one));
  return build(b);
}

Tensor run_with_dims(const Engine& engine, std::vector<int64_t> dims) {
  NamedTensor in{"s", {DType::kInt64, {2}, dims.data()}};
  return engine.create_context().execute(std::span<const NamedTensor>(&in, 1)).at(0);
}

TEST(SizeRuntime, ShapeValuesThatOverflowAreErrorsNotHeapOverflows) {
  const auto bytes = constant_of_shape_engine();
  const Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  EXPECT_EQ(run_with_dims(engine, {2, 3}).shape, (Shape{2, 3}));
  // Before: [2^31, 2^31] wrote past a heap buffer; [2^32, 2^32] returned an empty tensor.
  for (const std::vector<int64_t>& dims : {std::vector<int64_t>{k2to31, k2to31}, {k2to32, k2to32}}) {
    const Failure f = failure_of([&] { run_with_dims(engine, dims); });
    EXPECT_EQ(f.code, ErrorCode::kInvalidArgument);
    EXPECT_NE(f.message.find("node 'fill' (ConstantOfShape): output 'fill' would be float32" +
                             shape_to_string(dims) + ", larger than 2^63 - 1 bytes"),
              std::string::npos)
        << f.message;
  }
}

TEST(SizeRuntime, TheMemoryLimitStopsHugeArenasBeforeAllocating) {
  const auto bytes = constant_of_shape_engine();
  {
    // 2^40 floats (4 TiB): valid sizes, far beyond any test machine's memory.
    const Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
    const Failure f = failure_of([&] { run_with_dims(engine, {int64_t{1} << 20, int64_t{1} << 20}); });
    EXPECT_EQ(f.code, ErrorCode::kOutOfMemory);
    EXPECT_NE(f.message.find("output 'fill' (float32[1048576, 1048576]) needs 4 TiB"), std::string::npos)
        << f.message;
  }
  ScopedEnv env(kMemoryLimitEnv, "64K");
  const Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  EXPECT_EQ(run_with_dims(engine, {64, 64}).shape, (Shape{64, 64}));  // 16 KiB
  const Failure f = failure_of([&] { run_with_dims(engine, {256, 256}); });
  EXPECT_EQ(f.code, ErrorCode::kOutOfMemory);
  EXPECT_NE(f.message.find("more than the memory limit of 64 KiB (65536 bytes) (KILN_MEMORY_LIMIT)"),
            std::string::npos)
      << f.message;
}

TEST(SizeRuntime, ArenaAboveTheLimitNamesTheLargestTensorAndLayer) {
  // fill = ConstantOfShape(s); y = Relu(fill): fill lives in the arena.
  GraphBuilder b;
  AttributeMap one;
  one.set("value", float_value(1.0f));
  const auto fill = b.node("ConstantOfShape", "fill", {b.input("s", {2}, DType::kInt64)}, one);
  b.output(b.node("Relu", "relu", {fill}));
  const auto bytes = build(b);
  ScopedEnv env(kMemoryLimitEnv, "1M");
  const Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  const Failure f = failure_of([&] { run_with_dims(engine, {1024, 1024}); });
  EXPECT_EQ(f.code, ErrorCode::kOutOfMemory);
  EXPECT_NE(f.message.find("tensor 'fill' (float32[1024, 1024], written by layer 'fill' (ConstantOfShape)) "
                           "needs 4 MiB"),
            std::string::npos)
      << f.message;
}

// An engine file whose tensors and input ranges are rewritten as a hostile file may have them
// (write_engine would refuse such a model).
std::vector<uint8_t> with_dims(const std::vector<uint8_t>& file, const format::EngineModel& model, const Shape& io_shape,
                               const std::vector<format::DimRange>& ranges) {
  namespace s = format::schema;
  using format::format_testing::encode;
  using format::format_testing::with_section;
  const auto tensors = encode([&](format::WireWriter& w) {
    w.list_field(s::tensors::kTensors, model.tensors, [&](format::WireWriter& tw, const format::TensorDesc& t) {
      const bool io = t.kind == format::TensorKind::kInput || t.kind == format::TensorKind::kOutput;
      tw.string_field(s::tensor::kName, t.name);
      tw.int_field(s::tensor::kDType, static_cast<int64_t>(t.dtype));
      tw.ints_field(s::tensor::kShape, io ? io_shape : t.shape);
      tw.int_field(s::tensor::kKind, static_cast<int64_t>(t.kind));
      if (t.kind == format::TensorKind::kWeight) {
        tw.int_field(s::tensor::kWeightOffset, static_cast<int64_t>(t.weight_offset));
        tw.int_field(s::tensor::kWeightSize, static_cast<int64_t>(t.weight_size));
      }
    });
  });
  auto write_binding = [](format::WireWriter& w, const format::Binding& b) {
    w.string_field(s::binding::kName, b.name);
    w.int_field(s::binding::kTensor, b.tensor);
    std::vector<int64_t> flat;
    for (const format::DimRange& r : b.ranges) flat.insert(flat.end(), {r.min, r.opt, r.max});
    w.ints_field(s::binding::kRanges, flat);
  };
  format::EngineModel hostile = model;
  hostile.inputs[0].ranges = ranges;
  const auto bindings = encode([&](format::WireWriter& w) {
    w.list_field(s::bindings::kInputs, hostile.inputs, write_binding);
    w.list_field(s::bindings::kOutputs, hostile.outputs, write_binding);
  });
  return with_section(with_section(file, s::SectionId::kTensors, tensors), s::SectionId::kBindings, bindings);
}

TEST(SizeEngineFile, HugeDimsAndProfilesAreRefusedAtLoad) {
  GraphBuilder b;
  b.output(b.node("Relu", "relu", {b.input("x", {kDynamicDim, 16})}));
  const auto good = build(b);
  const format::EngineModel model =
      format::read_engine(std::make_shared<const std::vector<uint8_t>>(good), "good");
  // The unchanged rewrite loads: the surgery itself is sound.
  const auto same = with_dims(good, model, {kDynamicDim, 16}, model.inputs[0].ranges);
  EXPECT_NO_THROW(Engine::load_bytes(same.data(), same.size()));

  // Declared [?, 2^62, 16]: before, kiln run --random and the CPU LayerNorm kernel crashed on it.
  const auto wide = with_dims(good, model, {kDynamicDim, k2to62, 16}, {{1, 1, 8}, {k2to62, k2to62, k2to62}, {16, 16, 16}});
  Failure f = failure_of([&] { Engine::load_bytes(wide.data(), wide.size()); });
  EXPECT_EQ(f.code, ErrorCode::kCorruptFile);
  EXPECT_NE(f.message.find("float32[?, 4611686018427387904, 16] is larger than 2^63 - 1 bytes"), std::string::npos)
      << f.message;

  // A profile max of 2^62 on the dynamic dim of [?, 16].
  const auto deep = with_dims(good, model, {kDynamicDim, 16}, {{1, 1, k2to62}, {16, 16, 16}});
  f = failure_of([&] { Engine::load_bytes(deep.data(), deep.size()); });
  EXPECT_EQ(f.code, ErrorCode::kCorruptFile);
  EXPECT_NE(f.message.find("the largest allowed shape float32[4611686018427387904, 16]"), std::string::npos)
      << f.message;
}

}  // namespace
}  // namespace kiln
