// DepthToSpace and SpaceToDepth on the CPU backend (the reference): kernels against the ONNX
// definitions (reshape + transpose, written here as index formulas), round trips, every dtype,
// infer functions with dynamic dims, and named errors.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_node_runner.hpp"
#include "node_error_expectation.hpp"
#include "ops/op_registry.hpp"
#include "ops/space_depth_geometry.hpp"

namespace kiln::cpu {
namespace {

constexpr int64_t kDyn = kDynamicDim;

// Element i holds i (as int64) so every output element names its source.
HostTensor iota(Shape shape) {
  HostTensor t(DType::kInt64, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int64_t>()[i] = i;
  return t;
}

AttributeMap attrs_of(int64_t blocksize, const std::string& mode = "") {
  AttributeMap attrs;
  attrs.set("blocksize", Attribute::of_int(blocksize));
  if (!mode.empty()) attrs.set("mode", Attribute::of_string(mode));
  return attrs;
}

HostTensor run1(const std::string& op, const AttributeMap& attrs, const HostTensor& x) {
  std::vector<const HostTensor*> inputs{&x};
  return run_node_on_cpu("test_node", op, attrs, inputs, 1).at(0);
}

using unit_test::expect_node_error;

TEST(SpaceDepthCpu, DepthToSpaceDcrAndCrdFollowTheOnnxReshapes) {
  const int64_t n_dim = 2, c_dim = 12, h_dim = 3, w_dim = 5, b = 2;
  const HostTensor x = iota({n_dim, c_dim, h_dim, w_dim});
  const int64_t out_c = c_dim / (b * b);
  for (const std::string mode : {"DCR", "CRD"}) {
    const HostTensor y = run1("DepthToSpace", attrs_of(b, mode), x);
    ASSERT_EQ(y.shape, (Shape{n_dim, out_c, h_dim * b, w_dim * b}));
    int64_t flat = 0;
    // DCR: X viewed [N, b, b, C', H, W] transposed to [N, C', H, b, W, b];
    // CRD: X viewed [N, C', b, b, H, W] transposed the same way.
    for (int64_t n = 0; n < n_dim; ++n)
      for (int64_t c = 0; c < out_c; ++c)
        for (int64_t h = 0; h < h_dim; ++h)
          for (int64_t i = 0; i < b; ++i)
            for (int64_t w = 0; w < w_dim; ++w)
              for (int64_t j = 0; j < b; ++j, ++flat) {
                const int64_t channel =
                    mode == "DCR" ? (i * b + j) * out_c + c : (c * b + i) * b + j;
                const int64_t want = ((n * c_dim + channel) * h_dim + h) * w_dim + w;
                ASSERT_EQ(y.data<int64_t>()[flat], want) << mode << " element " << flat;
              }
  }
  // The default mode is DCR.
  EXPECT_EQ(run1("DepthToSpace", attrs_of(b), x).bytes,
            run1("DepthToSpace", attrs_of(b, "DCR"), x).bytes);
}

TEST(SpaceDepthCpu, SpaceToDepthFollowsTheOnnxReshape) {
  const int64_t n_dim = 2, c_dim = 3, h_dim = 6, w_dim = 9, b = 3;
  const HostTensor x = iota({n_dim, c_dim, h_dim, w_dim});
  const HostTensor y = run1("SpaceToDepth", attrs_of(b), x);
  ASSERT_EQ(y.shape, (Shape{n_dim, c_dim * b * b, h_dim / b, w_dim / b}));
  // X viewed [N, C, H/b, b, W/b, b] transposed to [N, b, b, C, H/b, W/b].
  int64_t flat = 0;
  for (int64_t n = 0; n < n_dim; ++n)
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < b; ++j)
        for (int64_t c = 0; c < c_dim; ++c)
          for (int64_t h = 0; h < h_dim / b; ++h)
            for (int64_t w = 0; w < w_dim / b; ++w, ++flat) {
              const int64_t want = ((n * c_dim + c) * h_dim + h * b + i) * w_dim + w * b + j;
              ASSERT_EQ(y.data<int64_t>()[flat], want) << "element " << flat;
            }
}

TEST(SpaceDepthCpu, SpaceToDepthInvertsDepthToSpaceDcr) {
  const HostTensor x = iota({1, 8, 4, 6});
  const HostTensor space = run1("SpaceToDepth", attrs_of(2), x);
  EXPECT_EQ(run1("DepthToSpace", attrs_of(2), space).bytes, x.bytes);
  const HostTensor depth = run1("DepthToSpace", attrs_of(2), x);
  EXPECT_EQ(run1("SpaceToDepth", attrs_of(2), depth).bytes, x.bytes);
  // Blocksize 1 is the identity.
  EXPECT_EQ(run1("DepthToSpace", attrs_of(1, "CRD"), x).bytes, x.bytes);
  EXPECT_EQ(run1("SpaceToDepth", attrs_of(1), x).bytes, x.bytes);
}

TEST(SpaceDepthCpu, SpaceToDepthCrdInvertsDepthToSpaceCrd) {
  const HostTensor x = iota({2, 3, 4, 6});
  const HostTensor space = run1("SpaceToDepth", attrs_of(2, "CRD"), x);
  ASSERT_EQ(space.shape, (Shape{2, 12, 2, 3}));
  // Y[n, c*b^2 + i*b + j, h, w] = X[n, c, h*b + i, w*b + j]: channel 1*4 + 1*2 + 0 = 6 at (0, 0)
  // holds X[0, 1, 1, 0].
  EXPECT_EQ(space.data<int64_t>()[6 * 6], 1 * 24 + 1 * 6 + 0);
  EXPECT_EQ(run1("DepthToSpace", attrs_of(2, "CRD"), space).bytes, x.bytes);
  EXPECT_NE(space.bytes, run1("SpaceToDepth", attrs_of(2, "DCR"), x).bytes);
}

TEST(SpaceDepthCpu, EveryDtypeMovesBytesUnchanged) {
  const HostTensor ids = iota({1, 4, 2, 3});
  const HostTensor want = run1("DepthToSpace", attrs_of(2, "CRD"), ids);
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64,
                      DType::kInt8, DType::kUInt8, DType::kInt16, DType::kInt32, DType::kBool}) {
    HostTensor x(dtype, ids.shape);
    const size_t size = dtype_size(dtype);
    // Distinct byte patterns per element (bool: 0/1), so a misplaced element is seen.
    for (int64_t i = 0; i < x.numel(); ++i)
      for (size_t k = 0; k < size; ++k)
        x.bytes[static_cast<size_t>(i) * size + k] = static_cast<uint8_t>(
            dtype == DType::kBool ? i % 2 : i * 7 + static_cast<int64_t>(k) + 1);
    const HostTensor y = run1("DepthToSpace", attrs_of(2, "CRD"), x);
    ASSERT_EQ(y.dtype, dtype);
    for (int64_t i = 0; i < y.numel(); ++i) {
      const auto source = static_cast<size_t>(want.data<int64_t>()[i]);
      for (size_t k = 0; k < size; ++k)
        ASSERT_EQ(y.bytes[static_cast<size_t>(i) * size + k], x.bytes[source * size + k])
            << dtype_name(dtype) << " element " << i;
    }
  }
}

TEST(SpaceDepthCpu, EmptyBatch) {
  const HostTensor x(DType::kFloat32, {0, 8, 2, 2});
  EXPECT_EQ(run1("DepthToSpace", attrs_of(2), x).shape, (Shape{0, 2, 4, 4}));
  EXPECT_EQ(run1("SpaceToDepth", attrs_of(2), x).shape, (Shape{0, 32, 1, 1}));
}

std::vector<ops::ValueInfo> infer(const std::string& op, const AttributeMap& attrs, Shape shape) {
  const ops::OpDef* def = ops::find_op(op);
  EXPECT_NE(def, nullptr) << op;
  std::vector<ops::ValueInfo> inputs{
      ops::ValueInfo{DType::kFloat16, std::move(shape), nullptr, true}};
  std::vector<ops::ValueInfo> outputs(1);
  ops::infer_node(*def, "test_node", attrs, inputs, outputs);
  return outputs;
}

TEST(SpaceDepthInfer, PropagatesDynamicDims) {
  auto out = infer("DepthToSpace", attrs_of(2), {kDyn, 16, kDyn, 5});
  EXPECT_EQ(out[0].shape, (Shape{kDyn, 4, kDyn, 10}));
  EXPECT_EQ(out[0].dtype, DType::kFloat16);
  out = infer("DepthToSpace", attrs_of(3, "CRD"), {1, kDyn, 2, 2});
  EXPECT_EQ(out[0].shape, (Shape{1, kDyn, 6, 6}));
  out = infer("SpaceToDepth", attrs_of(2), {1, 3, kDyn, 4});
  EXPECT_EQ(out[0].shape, (Shape{1, 12, kDyn, 2}));
  out = infer("SpaceToDepth", attrs_of(2), {1, kDyn, 4, 4});
  EXPECT_EQ(out[0].shape, (Shape{1, kDyn, 2, 2}));
  expect_node_error(
      [] {
        infer("SpaceToDepth", attrs_of(2), {kDyn, 3, kDyn, 5});
      },
      ErrorCode::kInvalidArgument, "width W");
}

TEST(SpaceDepthErrors, NamedErrorsForBadInputsAndAttributes) {
  const HostTensor x = iota({1, 8, 4, 6});
  expect_node_error([&] { run1("DepthToSpace", attrs_of(3), x); }, ErrorCode::kInvalidArgument,
               "channels C (dim 1 of input [1, 8, 4, 6]) = 8 is not divisible by 9");
  expect_node_error([&] { run1("SpaceToDepth", attrs_of(4), x); }, ErrorCode::kInvalidArgument,
               "width W");
  expect_node_error([&] { run1("SpaceToDepth", attrs_of(3), x); }, ErrorCode::kInvalidArgument,
               "height H");
  const HostTensor rank3 = iota({8, 4, 6});
  expect_node_error([&] { run1("DepthToSpace", attrs_of(2), rank3); }, ErrorCode::kInvalidArgument,
               "rank 4");
  expect_node_error(
      [&] {
        run1("SpaceToDepth", attrs_of(2), iota({1, 1, 2, 2, 2}));
      },
      ErrorCode::kInvalidArgument, "rank 4");
  expect_node_error([&] { run1("DepthToSpace", attrs_of(0), x); }, ErrorCode::kInvalidArgument,
               "blocksize");
  expect_node_error([&] { run1("SpaceToDepth", attrs_of(-2), x); }, ErrorCode::kInvalidArgument,
               "blocksize");
  expect_node_error([&] { run1("DepthToSpace", attrs_of(int64_t{1} << 40), x); },
               ErrorCode::kInvalidArgument, "blocksize");
  expect_node_error([&] { run1("DepthToSpace", AttributeMap{}, x); }, ErrorCode::kInvalidArgument,
               "missing required attribute 'blocksize'");
  expect_node_error([&] { run1("DepthToSpace", attrs_of(2, "RDC"), x); }, ErrorCode::kInvalidArgument,
               "mode");
  AttributeMap float_blocksize;
  float_blocksize.set("blocksize", Attribute::of_float(2.0f));
  expect_node_error([&] { run1("SpaceToDepth", float_blocksize, x); }, ErrorCode::kInvalidArgument,
               "blocksize");
}

}  // namespace
}  // namespace kiln::cpu

namespace kiln::cpu {
namespace {

// The kernels' output check (shared by the CPU and CUDA kernels through resolve_space_depth).
TEST(SpaceDepthErrors, OutputOfAnotherShapeOrDtypeIsNamed) {
  const HostTensor x = iota({1, 4, 2, 2});
  const ops::NodeRef node{"test_node", "DepthToSpace"};
  const HostTensor right(DType::kInt64, {1, 1, 4, 4});
  EXPECT_EQ(ops::resolve_space_depth(node, attrs_of(2), view_of(x), view_of(right)).output,
            right.shape);
  const HostTensor wrong_shape(DType::kInt64, {1, 4, 2, 2});
  expect_node_error(
      [&] { ops::resolve_space_depth(node, attrs_of(2), view_of(x), view_of(wrong_shape)); },
      ErrorCode::kInvalidArgument, "output is int64 [1, 4, 2, 2], expected int64 [1, 1, 4, 4]");
  const HostTensor wrong_dtype(DType::kFloat32, {1, 1, 4, 4});
  expect_node_error(
      [&] { ops::resolve_space_depth(node, attrs_of(2), view_of(x), view_of(wrong_dtype)); },
      ErrorCode::kInvalidArgument, "output is float32 [1, 1, 4, 4], expected int64");
}

}  // namespace
}  // namespace kiln::cpu
