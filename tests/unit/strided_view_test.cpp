// Strided views (passes/strided_view.hpp): where a tensor made by data-movement ops lives in the
// memory of a tensor further up, as the attention fusion reads Q, K and V in place.
#include <gtest/gtest.h>

#include "graph_evaluation.hpp"
#include "graph_test_builder.hpp"
#include "passes/shape_inference.hpp"
#include "passes/strided_view.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::evaluate;
using testing::GraphBuilder;
using testing::make_tensor_f32;
using testing::make_tensor_i64;
using testing::perm;
using testing::random_inputs;

ir::ValueId ints(GraphBuilder& b, const std::string& name, std::vector<int64_t> values,
                 bool scalar = false) {
  const auto size = static_cast<int64_t>(values.size());
  return b.constant(name, make_tensor_i64(scalar ? Shape{} : Shape{size}, values));
}

// Checks a view against the data: every element of `id` equals the source's element the view
// names. Runs the graph on the CPU kernels.
void expect_view_addresses(GraphBuilder& b, ir::ValueId id, const StridedView& view) {
  b.output(id);
  if (std::find(b.graph.outputs.begin(), b.graph.outputs.end(), view.source) ==
      b.graph.outputs.end())
    b.output(view.source);
  const auto inputs = random_inputs(b.graph, 3);
  const std::vector<HostTensor> values = evaluate(b.graph, inputs);
  const HostTensor& tensor = values[0];
  const HostTensor& source = values[values.size() - 1];
  const Shape& shape = tensor.shape;
  ASSERT_EQ(view.dims.size(), shape.size());
  for (int64_t flat = 0; flat < tensor.numel(); ++flat) {
    int64_t rest = flat, address = view.offset;
    const std::vector<int64_t> strides = dense_strides(shape);
    for (size_t k = 0; k < shape.size(); ++k) {
      int64_t index = rest / strides[k];
      rest %= strides[k];
      for (size_t f = view.dims[k].size(); f-- > 0;) {  // digits, innermost factor first
        address += (index % view.dims[k][f].size) * view.dims[k][f].stride;
        index /= view.dims[k][f].size;
      }
    }
    ASSERT_EQ(tensor.data<float>()[flat], source.data<float>()[address]) << "element " << flat;
  }
}

TEST(StridedView, TransposeOfBshdIsABshdViewOfItsSource) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 5, 3, 4});
  const ir::ValueId t = b.node("Transpose", "t", {x}, perm({0, 2, 1, 3}));
  infer_shapes(b.graph);
  const std::vector<ViewStop> stops = trace_view(b.graph, t, false);
  ASSERT_EQ(stops.size(), 2u);
  EXPECT_EQ(stops[0].view.source, t);
  EXPECT_EQ(stops[0].group, 0);
  const StridedView& view = stops[1].view;
  EXPECT_EQ(view.source, x);
  EXPECT_EQ(stops[1].group, 1);
  const std::vector<std::vector<ViewFactor>> want = {{{2, 60}}, {{3, 4}}, {{5, 12}}, {{4, 1}}};
  EXPECT_EQ(view.dims, want);
  expect_view_addresses(b, t, view);
}

TEST(StridedView, KeyTransposedThroughReshapesIsAViewOfTheKey) {
  // Kᵀ as exporters write it: Reshape([B*H, S, D]) → Transpose(0,2,1) → Reshape([B, H, D, S]).
  GraphBuilder b;
  const ir::ValueId k = b.input("k", {2, 3, 5, 4});
  const ir::ValueId flat = b.node("Reshape", "flat", {k, ints(b, "s1", {6, 5, 4})});
  const ir::ValueId swapped = b.node("Transpose", "swap", {flat}, perm({0, 2, 1}));
  const ir::ValueId key_t = b.node("Reshape", "back", {swapped, ints(b, "s2", {2, 3, 4, 5})});
  infer_shapes(b.graph);
  const std::vector<ViewStop> stops = trace_view(b.graph, key_t, false);
  ASSERT_EQ(stops.size(), 4u);
  EXPECT_EQ(stops[1].group, 0);  // `swap`, a reshape away: the same memory
  EXPECT_EQ(stops[3].view.source, k);
  const std::vector<std::vector<ViewFactor>> want = {{{2, 60}}, {{3, 20}}, {{4, 1}}, {{5, 4}}};
  EXPECT_EQ(stops[3].view.dims, want);
  expect_view_addresses(b, key_t, stops[3].view);
}

TEST(StridedView, PackedQkvSlicesHaveOffsets) {
  // timm: [B, N, 3·H·D] → Reshape [B, N, 3, H, D] → Transpose(2,0,3,1,4) → Gather / Slice+Squeeze.
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 5, 3 * 2 * 4});
  const ir::ValueId split = b.node("Reshape", "split", {x, ints(b, "s", {2, 5, 3, 2, 4})});
  const ir::ValueId heads = b.node("Transpose", "heads", {split}, perm({2, 0, 3, 1, 4}));
  const ir::ValueId k = b.node("Gather", "k", {heads, ints(b, "one", {1}, true)},
                               attrs_of({{"axis", Attribute::of_int(0)}}));
  const ir::ValueId v_slice = b.node(
      "Slice", "v_slice", {heads, ints(b, "st", {2}), ints(b, "en", {3}), ints(b, "ax", {0})});
  const ir::ValueId v = b.node("Squeeze", "v", {v_slice, ints(b, "sq", {0})});
  infer_shapes(b.graph);
  for (const auto& [id, offset] : {std::pair{k, int64_t{8}}, std::pair{v, int64_t{16}}}) {
    const std::vector<ViewStop> stops = trace_view(b.graph, id, false);
    const StridedView& view = stops.back().view;
    EXPECT_EQ(view.source, x);
    EXPECT_EQ(view.offset, offset);
    const std::vector<std::vector<ViewFactor>> want = {{{2, 120}}, {{2, 4}}, {{5, 24}}, {{4, 1}}};
    EXPECT_EQ(view.dims, want);
  }
  GraphBuilder check = b;
  expect_view_addresses(check, k, trace_view(b.graph, k, false).back().view);
}

TEST(StridedView, SplitOutputsStartWhereTheirPredecessorsEnd) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {4, 6});
  const std::vector<ir::ValueId> parts = b.node_n("Split", "split", {x, ints(b, "sizes", {2, 4})},
                                                  2, attrs_of({{"axis", Attribute::of_int(1)}}));
  infer_shapes(b.graph);
  const StridedView view = trace_view(b.graph, parts[1], false).back().view;
  EXPECT_EQ(view.source, x);
  EXPECT_EQ(view.offset, 2);
  const std::vector<std::vector<ViewFactor>> want = {{{4, 6}}, {{4, 1}}};
  EXPECT_EQ(view.dims, want);
  expect_view_addresses(b, parts[1], view);
}

TEST(StridedView, ScalarScalesAreFoldedAndStartAGroup) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3});
  const ir::ValueId half =
      b.node("Mul", "half", {x, b.constant("c", make_tensor_f32({1}, {0.5f}))});
  const ir::ValueId quarter =
      b.node("Div", "quarter", {half, b.constant("two", make_tensor_f32({}, {2.0f}))});
  const ir::ValueId other =
      b.node("Div", "inverse", {b.constant("one", make_tensor_f32({}, {1.0f})), quarter});
  infer_shapes(b.graph);
  const std::vector<ViewStop> stops = trace_view(b.graph, quarter, true);
  ASSERT_EQ(stops.size(), 3u);
  EXPECT_EQ(stops[2].view.source, x);
  EXPECT_DOUBLE_EQ(stops[2].scale, 0.25);
  EXPECT_EQ(stops[2].group, 2);
  EXPECT_EQ(trace_view(b.graph, quarter, false).size(), 1u);  // scales not stripped
  EXPECT_EQ(trace_view(b.graph, other, true).size(), 1u);     // c / x is no scale of x
}

TEST(StridedView, CastsThatKeepTheDtypeAreViewsOthersEndTheWalk) {
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 3}, DType::kFloat16);
  const auto cast = [&](ir::ValueId in, const std::string& name, DType to) {
    return b.node("Cast", name, {in},
                  attrs_of({{"to", Attribute::of_int(static_cast<int64_t>(to))}}));
  };
  const ir::ValueId same = cast(x, "same", DType::kFloat16);
  const ir::ValueId wide = cast(same, "wide", DType::kFloat32);
  infer_shapes(b.graph);
  EXPECT_EQ(trace_view(b.graph, same, false).back().view.source, x);
  EXPECT_EQ(trace_view(b.graph, wide, false).size(), 1u);
}

TEST(StridedView, MergingDimsAcrossATransposeGivesSeveralFactors) {
  // [B, S, H, D] → Transpose(0,2,1,3) → Reshape [B*H, S, D]: B*H is not one stride of the source.
  GraphBuilder b;
  const ir::ValueId x = b.input("x", {2, 5, 3, 4});
  const ir::ValueId t = b.node("Transpose", "t", {x}, perm({0, 2, 1, 3}));
  const ir::ValueId merged = b.node("Reshape", "merged", {t, ints(b, "s", {6, 5, 4})});
  const ir::ValueId relu = b.node("Relu", "relu", {merged});
  infer_shapes(b.graph);
  const StridedView view = trace_view(b.graph, merged, false).back().view;
  EXPECT_EQ(view.source, x);
  const std::vector<std::vector<ViewFactor>> want = {{{2, 60}, {3, 4}}, {{5, 12}}, {{4, 1}}};
  EXPECT_EQ(view.dims, want);
  expect_view_addresses(b, merged, view);
  EXPECT_EQ(trace_view(b.graph, relu, false).size(), 1u);  // compute ops end the walk
}

}  // namespace
}  // namespace kiln::passes
