// Symbolic dims (docs/architecture.md#symbolic-dims): input symbols, their propagation through
// shape inference op family by op family, the check of every link against static dims, and the
// fusions that prove shapes equal with them (both directions: the same symbol fuses, another
// symbol or none does not).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "backends/cpu/cpu_node_runner.hpp"
#include "builder/build_from_graph.hpp"
#include "graph_test_builder.hpp"
#include "kiln/builder.hpp"
#include "kiln/runtime.hpp"
#include "passes/conv_fusion.hpp"
#include "passes/identity_elimination.hpp"
#include "passes/matmul_fusion.hpp"
#include "passes/shape_inference.hpp"

namespace kiln::passes {
namespace {

using testing::attrs_of;
using testing::GraphBuilder;
using testing::make_tensor_f32;
using testing::make_tensor_i64;
using testing::random_tensor_f32;

constexpr int64_t D = kDynamicDim;
constexpr int64_t kEnd = std::numeric_limits<int64_t>::max();

// An input whose dims carry these ONNX dim_params ("" for none).
ir::ValueId named_input(GraphBuilder& b, const std::string& name, Shape shape, std::vector<std::string> dim_names,
                        DType dtype = DType::kFloat32) {
  const ir::ValueId id = b.input(name, std::move(shape), dtype);
  b.graph.value(id).dim_names = std::move(dim_names);
  return id;
}

ir::ValueId ints(GraphBuilder& b, const std::string& name, std::vector<int64_t> values) {
  const auto n = static_cast<int64_t>(values.size());
  return b.constant(name, make_tensor_i64({n}, values));
}

// Symbols for the inputs, then inference.
void infer(GraphBuilder& b) {
  b.graph.assign_input_symbols();
  infer_shapes(b.graph);
}

std::string dims(const GraphBuilder& b, ir::ValueId id) { return b.graph.describe_dims(id); }

// ---- sources ---------------------------------------------------------------------------------

TEST(SymbolicDims, InputsShareOneSymbolPerDimParamAndGetAFreshOneOtherwise) {
  GraphBuilder b;
  const ir::ValueId x = named_input(b, "x", {D, 3, D}, {"N", "", ""});
  const ir::ValueId y = named_input(b, "y", {D, D}, {"N", "M"});
  const ir::ValueId z = named_input(b, "z", {D, 4}, {"", ""});
  const ir::ValueId s = named_input(b, "s", {2}, {"N"});  // a static dim takes no symbol, named or not
  b.graph.assign_input_symbols();
  EXPECT_EQ(dims(b, x), "[?N, 3, ?x[2]]");
  EXPECT_EQ(dims(b, y), "[?N, ?M]");
  EXPECT_EQ(dims(b, z), "[?z[0], 4]");
  EXPECT_EQ(dims(b, s), "[2]");
  EXPECT_TRUE(b.graph.same_dim(x, 0, y, 0));
  EXPECT_FALSE(b.graph.same_dim(x, 0, y, 1));
  EXPECT_FALSE(b.graph.same_dim(x, 2, z, 0));  // two anonymous dims are two symbols
  EXPECT_TRUE(b.graph.same_dim(x, 1, x, 1));
  EXPECT_FALSE(b.graph.same_dim(x, 1, z, 1));  // 3 vs 4
  EXPECT_EQ(b.graph.symbol_of(s, 0), ir::kNoSymbol);
  // Idempotent: a second call keeps every symbol and adds none.
  const size_t count = b.graph.symbols.size();
  const ir::SymbolId n = b.graph.symbol_of(x, 0);
  b.graph.assign_input_symbols();
  EXPECT_EQ(b.graph.symbols.size(), count);
  EXPECT_EQ(b.graph.symbol_of(y, 0), n);
  // An anonymous dim named like a dim_param is still its own symbol.
  GraphBuilder c;
  const ir::ValueId a = named_input(c, "a", {D}, {""});
  const ir::ValueId p = named_input(c, "p", {D}, {"a[0]"});
  c.graph.assign_input_symbols();
  EXPECT_FALSE(c.graph.same_dim(a, 0, p, 0));
}

TEST(SymbolicDims, AStaleSymbolOnAStaticDimIsIgnored) {
  GraphBuilder b;
  const ir::ValueId x = named_input(b, "x", {D, 3}, {"N", ""});
  b.graph.assign_input_symbols();
  b.graph.value(x).shape[0] = 5;  // e.g. a profile fixing the dim after symbols were given
  EXPECT_EQ(b.graph.symbol_of(x, 0), ir::kNoSymbol);
  EXPECT_EQ(dims(b, x), "[5, 3]");
}

// ---- propagation -----------------------------------------------------------------------------

TEST(SymbolicDims, ElementwiseOpsKeepOrBroadcastSymbols) {
  GraphBuilder b;
  const ir::ValueId x = named_input(b, "x", {D, 8}, {"N", ""});
  const ir::ValueId y = named_input(b, "y", {D, 8}, {"N", ""});
  const ir::ValueId m = named_input(b, "m", {D, 8}, {"M", ""});
  const ir::ValueId one = named_input(b, "one", {1, 8}, {"", ""});
  const ir::ValueId row = named_input(b, "row", {8}, {""});
  const ir::ValueId u = named_input(b, "u", {D, 8}, {"", ""});
  const ir::ValueId cond = named_input(b, "cond", {D, 1}, {"N", ""}, DType::kBool);
  b.graph.assign_input_symbols();
  b.graph.value(u).dim_symbols.clear();  // a dim nothing is known of
  const ir::ValueId relu = b.node("Relu", "relu", {x});
  const ir::ValueId cast = b.node("Cast", "cast", {x}, attrs_of({{"to", Attribute::of_int(10)}}));
  const ir::ValueId clip = b.node("Clip", "clip", {x});
  const ir::ValueId same = b.node("Add", "same", {x, y});
  const ir::ValueId by_one = b.node("Mul", "by_one", {x, one});
  const ir::ValueId by_row = b.node("Sub", "by_row", {row, x});
  const ir::ValueId other = b.node("Add", "other", {x, m});
  const ir::ValueId unknown = b.node("Add", "unknown", {x, u});
  const ir::ValueId unknown_twice = b.node("Add", "unknown_twice", {u, u});
  const ir::ValueId less = b.node("Less", "less", {x, y});
  const ir::ValueId where = b.node("Where", "where", {cond, x, one});
  const ir::ValueId where_other = b.node("Where", "where_other", {cond, x, m});
  const ir::ValueId max = b.node("Max", "max", {x, one, y});
  infer_shapes(b.graph);
  EXPECT_EQ(dims(b, relu), "[?N, 8]");
  EXPECT_EQ(dims(b, cast), "[?N, 8]");
  EXPECT_EQ(dims(b, clip), "[?N, 8]");
  EXPECT_EQ(dims(b, same), "[?N, 8]");
  EXPECT_EQ(dims(b, by_one), "[?N, 8]");  // a static 1 keeps the symbol
  EXPECT_EQ(dims(b, by_row), "[?N, 8]");  // so does a missing leading dim
  EXPECT_EQ(dims(b, other), "[?, 8]");    // N or M, whichever is not 1
  EXPECT_EQ(dims(b, unknown), "[?, 8]");
  EXPECT_EQ(dims(b, unknown_twice), "[?, 8]");
  EXPECT_EQ(dims(b, less), "[?N, 8]");
  EXPECT_EQ(dims(b, where), "[?N, 8]");
  EXPECT_EQ(dims(b, where_other), "[?, 8]");
  EXPECT_EQ(dims(b, max), "[?N, 8]");
}

TEST(SymbolicDims, ConvPoolingAndNormalizationKeepTheBatchAndExtentPreservingWindows) {
  std::mt19937 rng(3);
  GraphBuilder b;
  const ir::ValueId x = named_input(b, "x", {D, 3, D, D}, {"N", "", "H", "W"});
  const ir::ValueId w = b.constant("w", random_tensor_f32({8, 3, 3, 3}, rng));
  const AttributeMap same_pads = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}});
  const ir::ValueId conv = b.node("Conv", "conv", {x, w}, same_pads);
  const ir::ValueId strided = b.node(
      "Conv", "strided", {x, w}, attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}, {"strides", Attribute::of_ints({2, 2})}}));
  const ir::ValueId same_upper =
      b.node("Conv", "same_upper", {x, w}, attrs_of({{"auto_pad", Attribute::of_string("SAME_UPPER")}}));
  const ir::ValueId unpadded = b.node("Conv", "unpadded", {x, w});
  const ir::ValueId uneven = b.node("Conv", "uneven", {x, w}, attrs_of({{"pads", Attribute::of_ints({0, 1, 1, 1})}}));
  const ir::ValueId pool = b.node("MaxPool", "pool", {conv},
                                  attrs_of({{"kernel_shape", Attribute::of_ints({3, 3})},
                                            {"pads", Attribute::of_ints({1, 1, 1, 1})}}));
  const ir::ValueId halved = b.node("AveragePool", "halved", {conv},
                                    attrs_of({{"kernel_shape", Attribute::of_ints({2, 2})},
                                              {"strides", Attribute::of_ints({2, 2})}}));
  const ir::ValueId gap = b.node("GlobalAveragePool", "gap", {conv});
  const std::vector<ir::ValueId> bn_params = {
      b.constant("scale", random_tensor_f32({8}, rng)), b.constant("bias", random_tensor_f32({8}, rng)),
      b.constant("mean", random_tensor_f32({8}, rng)), b.constant("var", random_tensor_f32({8}, rng, 0.5f, 1.0f))};
  const ir::ValueId bn = b.node("BatchNormalization", "bn",
                                {conv, bn_params[0], bn_params[1], bn_params[2], bn_params[3]});
  const ir::ValueId softmax = b.node("Softmax", "softmax", {conv}, attrs_of({{"axis", Attribute::of_int(1)}}));
  const ir::ValueId ln = b.node("LayerNormalization", "ln", {conv, b.constant("ln_scale", random_tensor_f32({1}, rng))},
                                attrs_of({{"axis", Attribute::of_int(-1)}}));
  const ir::ValueId up = b.node("ConvTranspose", "up", {conv, b.constant("wt", random_tensor_f32({8, 4, 2, 2}, rng))},
                                attrs_of({{"strides", Attribute::of_ints({2, 2})}}));
  infer(b);
  EXPECT_EQ(dims(b, conv), "[?N, 8, ?H, ?W]");
  EXPECT_EQ(dims(b, strided), "[?N, 8, ?, ?]");
  EXPECT_EQ(dims(b, same_upper), "[?N, 8, ?H, ?W]");
  EXPECT_EQ(dims(b, unpadded), "[?N, 8, ?, ?]");
  EXPECT_EQ(dims(b, uneven), "[?N, 8, ?, ?W]");  // H padded 0 + 1 shrinks by one, W padded 1 + 1 keeps
  EXPECT_EQ(dims(b, pool), "[?N, 8, ?H, ?W]");
  EXPECT_EQ(dims(b, halved), "[?N, 8, ?, ?]");
  EXPECT_EQ(dims(b, gap), "[?N, 8, 1, 1]");
  EXPECT_EQ(dims(b, bn), "[?N, 8, ?H, ?W]");
  EXPECT_EQ(dims(b, softmax), "[?N, 8, ?H, ?W]");
  EXPECT_EQ(dims(b, ln), "[?N, 8, ?H, ?W]");
  EXPECT_EQ(dims(b, up), "[?N, 4, ?, ?]");
}

TEST(SymbolicDims, MatMulAndGemmKeepBatchRowsAndColumns) {
  std::mt19937 rng(4);
  GraphBuilder b;
  const ir::ValueId a = named_input(b, "a", {D, D, 16}, {"B", "S", ""});
  const ir::ValueId q = named_input(b, "q", {D, 4, D, 8}, {"B", "", "S", ""});
  const ir::ValueId k = named_input(b, "k", {D, 4, 8, D}, {"B", "", "", "T"});
  const ir::ValueId p = named_input(b, "p", {1, D, 8}, {"", "S", ""});
  const ir::ValueId r = named_input(b, "r", {D, 8, 4}, {"B", "", ""});
  const ir::ValueId g = named_input(b, "g", {16, D}, {"", "N"});
  const ir::ValueId projected = b.node("MatMul", "projected", {a, b.constant("w", random_tensor_f32({16, 32}, rng))});
  const ir::ValueId scores = b.node("MatMul", "scores", {q, k});
  const ir::ValueId broadcast = b.node("MatMul", "broadcast", {p, r});
  const ir::ValueId gemm = b.node("Gemm", "gemm", {g, b.constant("wg", random_tensor_f32({32, 16}, rng))},
                                  attrs_of({{"transA", Attribute::of_int(1)}, {"transB", Attribute::of_int(1)}}));
  infer(b);
  EXPECT_EQ(dims(b, projected), "[?B, ?S, 32]");
  EXPECT_EQ(dims(b, scores), "[?B, 4, ?S, ?T]");
  EXPECT_EQ(dims(b, broadcast), "[?B, ?S, 4]");
  EXPECT_EQ(dims(b, gemm), "[?N, 32]");
}

TEST(SymbolicDims, DataMovementAndShapeOpsMoveSymbolsWithTheirDims) {
  std::mt19937 rng(5);
  GraphBuilder b;
  const ir::ValueId x = named_input(b, "x", {D, D, 12}, {"N", "S", ""});
  const ir::ValueId z = named_input(b, "z", {D, 4, 3}, {"N", "", ""});
  const ir::ValueId ids = named_input(b, "ids", {D, D}, {"N", "S"}, DType::kInt64);
  const ir::ValueId dynamic_shape = named_input(b, "dynamic_shape", {2}, {""}, DType::kInt64);
  const ir::ValueId transposed = b.node("Transpose", "transposed", {x}, attrs_of({{"perm", Attribute::of_ints({1, 0, 2})}}));
  const ir::ValueId wide = b.node("Concat", "wide", {x, x}, attrs_of({{"axis", Attribute::of_int(2)}}));
  const ir::ValueId longer = b.node("Concat", "longer", {x, x}, attrs_of({{"axis", Attribute::of_int(1)}}));
  const std::vector<ir::ValueId> halves =
      b.node_n("Split", "halves", {x, ints(b, "split", {6, 6})}, 2, attrs_of({{"axis", Attribute::of_int(2)}}));
  const ir::ValueId head = b.node("Slice", "head", {x, ints(b, "s0", {0}), ints(b, "e6", {6}), ints(b, "a2", {2})});
  const ir::ValueId whole = b.node("Slice", "whole", {x, ints(b, "s0b", {0}), ints(b, "end", {kEnd}), ints(b, "a1", {1})});
  const ir::ValueId tail = b.node("Slice", "tail", {x, ints(b, "s1", {1}), ints(b, "end2", {kEnd}), ints(b, "a1b", {1})});
  const ir::ValueId split_heads = b.node("Reshape", "split_heads", {x, ints(b, "heads", {0, 0, 3, 4})});
  const ir::ValueId rows = b.node("Reshape", "rows", {z, ints(b, "rows_shape", {-1, 12})});
  const ir::ValueId merged = b.node("Reshape", "merged", {x, ints(b, "merged_shape", {-1, 12})});
  const ir::ValueId opaque = b.node("Reshape", "opaque", {z, dynamic_shape});
  const ir::ValueId flat = b.node("Flatten", "flat", {z}, attrs_of({{"axis", Attribute::of_int(1)}}));
  const ir::ValueId kept = b.node("ReduceMean", "kept", {x, ints(b, "r2", {2})});
  const ir::ValueId dropped =
      b.node("ReduceSum", "dropped", {x, ints(b, "r1", {1})}, attrs_of({{"keepdims", Attribute::of_int(0)}}));
  const ir::ValueId unsqueezed = b.node("Unsqueeze", "unsqueezed", {x, ints(b, "u0", {0})});
  const ir::ValueId squeezed = b.node("Squeeze", "squeezed", {unsqueezed, ints(b, "q0", {0})});
  const ir::ValueId embedded = b.node("Gather", "embedded", {b.constant("table", random_tensor_f32({100, 12}, rng)), ids});
  const ir::ValueId batch = b.node("ReduceMax", "batch", {z, ints(b, "r12", {1, 2})},
                                   attrs_of({{"keepdims", Attribute::of_int(0)}}));  // [N]
  const ir::ValueId column = b.node("Unsqueeze", "column", {batch, ints(b, "u1", {1})});  // [N, 1]
  const ir::ValueId expanded = b.node("Expand", "expanded", {column, ints(b, "to", {1, 5})});
  const ir::ValueId padded = b.node("Pad", "padded", {x, ints(b, "pads", {0, 0, 1, 0, 0, 1})});
  infer(b);
  EXPECT_EQ(dims(b, transposed), "[?S, ?N, 12]");
  EXPECT_EQ(dims(b, wide), "[?N, ?S, 24]");
  EXPECT_EQ(dims(b, longer), "[?N, ?, 12]");
  EXPECT_EQ(dims(b, halves[0]), "[?N, ?S, 6]");
  EXPECT_EQ(dims(b, halves[1]), "[?N, ?S, 6]");
  EXPECT_EQ(dims(b, head), "[?N, ?S, 6]");
  EXPECT_EQ(dims(b, whole), "[?N, ?S, 12]");
  EXPECT_EQ(dims(b, tail), "[?N, ?, 12]");
  EXPECT_EQ(dims(b, split_heads), "[?N, ?S, 3, 4]");
  EXPECT_EQ(dims(b, rows), "[?N, 12]");    // -1 is numel / 12 = N
  EXPECT_EQ(dims(b, merged), "[?, 12]");   // -1 is N * S
  EXPECT_EQ(dims(b, opaque), "[?, ?]");
  EXPECT_EQ(dims(b, flat), "[?N, 12]");
  EXPECT_EQ(dims(b, kept), "[?N, ?S, 1]");
  EXPECT_EQ(dims(b, dropped), "[?N, 12]");
  EXPECT_EQ(dims(b, unsqueezed), "[1, ?N, ?S, 12]");
  EXPECT_EQ(dims(b, squeezed), "[?N, ?S, 12]");
  EXPECT_EQ(dims(b, embedded), "[?N, ?S, 12]");
  EXPECT_EQ(dims(b, expanded), "[?N, 5]");
  EXPECT_EQ(dims(b, padded), "[?N, ?S, 14]");
}

// ---- links are checked -----------------------------------------------------------------------

TEST(SymbolicDims, ALinkThatContradictsStaticDimsIsAnInternalError) {
  GraphBuilder b;
  const ir::ValueId x = named_input(b, "x", {2, 3}, {"", ""});
  const ir::ValueId y = named_input(b, "y", {D, 3}, {"N", ""});
  b.node("Add", "add", {x, x});
  b.node("Add", "dynamic", {y, y});
  infer(b);
  const ir::Node& add = b.graph.nodes[0];
  using Kind = ops::DimLink::Kind;
  auto expect_internal = [&](const ir::Node& node, const ops::DimLink& link, const std::string& text) {
    try {
      symbol_from_link(b.graph, node, link);
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInternal);
      EXPECT_NE(std::string(error.what()).find(text), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find("node 'add' (Add)"), std::string::npos) << error.what();
    }
  };
  expect_internal(add, {Kind::kEqual, 0, 0, {{0, 1}}}, "the output dim is 2 and input 0 dim 1 is 3");
  expect_internal(add, {Kind::kBroadcast, 0, 1, {{1, 0}}}, "the output dim is 3 and input 1 dim 0 is 2");
  expect_internal(add, {Kind::kBroadcast, 0, 1, {}}, "the broadcast of its sources 1");
  expect_internal(add, {Kind::kEqual, 1, 0, {{0, 0}}}, "the node has 1 outputs");
  expect_internal(add, {Kind::kEqual, 0, 2, {{0, 0}}}, "the output has rank 2");
  expect_internal(add, {Kind::kEqual, 0, 0, {{0, 5}}}, "input 0 has rank 2");
  expect_internal(add, {Kind::kEqual, 0, 0, {{4, 0}}}, "input 4 is absent");
  EXPECT_EQ(symbol_from_link(b.graph, add, {Kind::kEqual, 0, 0, {{1, 0}}}), ir::kNoSymbol);  // static
  const ir::Node& dynamic = b.graph.nodes[1];
  EXPECT_EQ(symbol_from_link(b.graph, dynamic, {Kind::kEqual, 0, 0, {{0, 0}}}), b.graph.symbol_of(y, 0));
  EXPECT_EQ(symbol_from_link(b.graph, dynamic, {Kind::kBroadcast, 0, 0, {{0, 0}, {1, 0}}}), b.graph.symbol_of(y, 0));
}

// ---- fusions ---------------------------------------------------------------------------------

// Conv(x) + residual -> Relu, with x [N?, 4, 6, 6] and the residual given.
struct ResidualBlock {
  GraphBuilder b;
  ir::ValueId x = ir::kNoValue, residual = ir::kNoValue, out = ir::kNoValue;
};

ResidualBlock residual_block(Shape residual_shape, std::vector<std::string> residual_names, bool residual_is_x) {
  std::mt19937 rng(6);
  ResidualBlock r;
  r.x = named_input(r.b, "x", {D, 4, 6, 6}, {"N", "", "", ""});
  r.residual = residual_is_x ? r.x : named_input(r.b, "r", std::move(residual_shape), std::move(residual_names));
  const ir::ValueId conv = r.b.node("Conv", "conv", {r.x, r.b.constant("w", random_tensor_f32({4, 4, 3, 3}, rng))},
                                    attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}}));
  r.out = r.b.node("Relu", "relu", {r.b.node("Add", "add", {conv, r.residual})});
  r.b.output(r.out);
  return r;
}

TEST(SymbolicDims, ConvResidualFusesForTheSameSymbol) {
  for (const bool residual_is_x : {true, false}) {
    SCOPED_TRACE(residual_is_x ? "residual is x" : "residual is another input named N");
    ResidualBlock r = residual_block({D, 4, 6, 6}, {"N", "", "", ""}, residual_is_x);
    infer(r.b);
    std::vector<EpilogueMiss> misses;
    EXPECT_EQ(fuse_conv_epilogues(r.b.graph, &misses), 2);
    EXPECT_TRUE(misses.empty());
    infer_shapes(r.b.graph);
    ASSERT_EQ(r.b.graph.nodes.size(), 1u);
    const ir::Node& conv = r.b.graph.nodes[0];
    ASSERT_EQ(conv.inputs.size(), 4u);
    EXPECT_EQ(conv.inputs[3], r.residual);
    EXPECT_EQ(conv.attrs.get_string("kiln_activation"), "Relu");
    EXPECT_EQ(dims(r.b, r.out), "[?N, 4, 6, 6]");
  }
}

TEST(SymbolicDims, ConvResidualDoesNotFuseForAnotherSymbolOrNone) {
  struct Case {
    const char* label;
    Shape shape;
    std::vector<std::string> names;
    bool clear_symbols;
    const char* reason;
  };
  const Case cases[] = {
      {"another symbol", {D, 4, 6, 6}, {"M", "", "", ""}, false,
       "Add's other input 'r' has dims [?M, 4, 6, 6] vs [?N, 4, 6, 6]: cannot prove equal"},
      {"anonymous", {D, 4, 6, 6}, {"", "", "", ""}, false,
       "Add's other input 'r' has dims [?r[0], 4, 6, 6] vs [?N, 4, 6, 6]: cannot prove equal"},
      {"unknown", {D, 4, 6, 6}, {"", "", "", ""}, true,
       "Add's other input 'r' has dims [?, 4, 6, 6] vs [?N, 4, 6, 6]: cannot prove equal"},
      {"static batch", {2, 4, 6, 6}, {"", "", "", ""}, false,
       "Add's other input 'r' has dims [2, 4, 6, 6] vs [?N, 4, 6, 6]: cannot prove equal"},
      {"broadcast", {1, 4, 1, 1}, {"", "", "", ""}, false,
       "Add's other input 'r' has dims [1, 4, 1, 1] vs [?N, 4, 6, 6]: the Add broadcasts"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    ResidualBlock r = residual_block(c.shape, c.names, false);
    r.b.graph.assign_input_symbols();
    if (c.clear_symbols) r.b.graph.value(r.residual).dim_symbols.clear();
    infer_shapes(r.b.graph);
    std::vector<EpilogueMiss> misses;
    EXPECT_EQ(fuse_conv_epilogues(r.b.graph, &misses), 0);
    EXPECT_EQ(r.b.graph.nodes.size(), 3u);
    ASSERT_EQ(misses.size(), 1u);
    EXPECT_EQ(misses[0].node, "conv");
    EXPECT_EQ(misses[0].reader, "add");
    EXPECT_EQ(misses[0].reader_op, "Add");
    EXPECT_EQ(misses[0].reason, c.reason);
  }
}

TEST(SymbolicDims, AnEpilogueThatIsNotTheOnlyReaderIsReported) {
  std::mt19937 rng(7);
  GraphBuilder b;
  const ir::ValueId x = named_input(b, "x", {D, 4, 6, 6}, {"N", "", "", ""});
  const ir::ValueId conv = b.node("Conv", "conv", {x, b.constant("w", random_tensor_f32({4, 4, 1, 1}, rng))});
  b.output(b.node("Relu", "relu", {conv}));
  b.output(b.node("Neg", "neg", {conv}));
  infer(b);
  std::vector<EpilogueMiss> misses;
  EXPECT_EQ(fuse_conv_epilogues(b.graph, &misses), 0);
  ASSERT_EQ(misses.size(), 1u);
  EXPECT_EQ(misses[0].reader, "relu");
  EXPECT_EQ(misses[0].reason, "its output 'conv' has 2 readers; an epilogue must be the only one");
}

TEST(SymbolicDims, MatMulBiasFusesWithDynamicRowsAndReportsWhatIsNoBias) {
  std::mt19937 rng(8);
  GraphBuilder b;
  const ir::ValueId a = named_input(b, "a", {D, D, 16}, {"B", "S", ""});
  const ir::ValueId residual = named_input(b, "residual", {D, D, 32}, {"B", "S", ""});
  const ir::ValueId w = b.constant("w", random_tensor_f32({16, 32}, rng));
  const ir::ValueId biased = b.node("Add", "bias_add", {b.node("MatMul", "mm", {a, w}), b.constant("bias", random_tensor_f32({32}, rng))});
  const ir::ValueId summed = b.node("Add", "residual_add", {b.node("MatMul", "mm2", {a, w}), residual});
  b.output(biased);
  b.output(summed);
  infer(b);
  std::vector<EpilogueMiss> misses;
  EXPECT_EQ(fuse_matmul_epilogues(b.graph, &misses), 1);
  infer_shapes(b.graph);
  EXPECT_EQ(dims(b, biased), "[?B, ?S, 32]");
  ASSERT_EQ(misses.size(), 1u);
  EXPECT_EQ(misses[0].node, "mm2");
  EXPECT_EQ(misses[0].reader, "residual_add");
  EXPECT_EQ(misses[0].reason, "Add's other input 'residual' is not a constant (a bias must be)");
}

TEST(SymbolicDims, IdentityEliminationRemovesSlicesThatProvablyKeepDynamicDims) {
  GraphBuilder b;
  const ir::ValueId x = named_input(b, "x", {D, 6}, {"N", ""});
  const ir::ValueId relu = b.node("Relu", "relu", {x});
  // Whole along the dynamic axis: a copy. From 0 to 4 along it: maybe not.
  const ir::ValueId whole = b.node("Slice", "whole", {relu, ints(b, "s", {0}), ints(b, "e", {kEnd}), ints(b, "a", {0})});
  const ir::ValueId part = b.node("Slice", "part", {relu, ints(b, "s2", {0}), ints(b, "e2", {4}), ints(b, "a2", {0})});
  // Expand to [1, 6] broadcasts the dynamic dim to itself: a copy.
  const ir::ValueId expanded = b.node("Expand", "expanded", {relu, ints(b, "shape", {1, 6})});
  b.output(b.node("Neg", "neg_whole", {whole}));
  b.output(b.node("Neg", "neg_part", {part}));
  b.output(b.node("Neg", "neg_expanded", {expanded}));
  infer(b);
  EXPECT_EQ(eliminate_identities(b.graph), 2u);
  b.graph.verify();
  std::vector<std::string> left;
  for (const ir::Node& node : b.graph.nodes)
    if (!node.removed) left.push_back(node.name);
  EXPECT_EQ(left, (std::vector<std::string>{"relu", "part", "neg_whole", "neg_part", "neg_expanded"}));
}

// ---- run time --------------------------------------------------------------------------------

// The fused residual of an engine built for inputs that share a dim_param: runs when the caller
// keeps the promise (against the unfused ops on the CPU), and fails naming the residual when not.
TEST(SymbolicDims, AFusedResidualIsCheckedAgainstTheOutputAtRunTime) {
  ResidualBlock r = residual_block({D, 4, 6, 6}, {"N", "", "", ""}, false);
  const HostTensor w = *r.b.graph.value(r.b.graph.nodes[0].inputs[1]).constant;
  BuilderConfig config;
  config.profiles.push_back(InputProfile{"x", {1, 4, 6, 6}, {2, 4, 6, 6}, {4, 4, 6, 6}});
  config.profiles.push_back(InputProfile{"r", {1, 4, 6, 6}, {2, 4, 6, 6}, {4, 4, 6, 6}});
  const std::vector<uint8_t> bytes = builder::build_engine_from_graph(std::move(r.b.graph), config);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext context = engine.create_context();
  std::mt19937 rng(9);
  auto run = [&](const HostTensor& x, const HostTensor& residual) {
    const std::vector<NamedTensor> inputs = {
        NamedTensor{"x", TensorRef{x.dtype, x.shape, const_cast<uint8_t*>(x.bytes.data())}},
        NamedTensor{"r", TensorRef{residual.dtype, residual.shape, const_cast<uint8_t*>(residual.bytes.data())}}};
    return context.execute(inputs);
  };
  auto cpu_op = [](const char* op, const AttributeMap& attrs, std::vector<const HostTensor*> inputs) {
    return std::move(cpu::run_node_on_cpu(op, op, attrs, inputs, 1).front());
  };
  for (const int64_t batch : {1, 3}) {
    SCOPED_TRACE(batch);
    const HostTensor x = random_tensor_f32({batch, 4, 6, 6}, rng);
    const HostTensor residual = random_tensor_f32({batch, 4, 6, 6}, rng);
    const std::vector<Tensor> got = run(x, residual);
    const AttributeMap pads = attrs_of({{"pads", Attribute::of_ints({1, 1, 1, 1})}});
    const HostTensor conv = cpu_op("Conv", pads, {&x, &w});
    const HostTensor sum = cpu_op("Add", {}, {&conv, &residual});
    const HostTensor want = cpu_op("Relu", {}, {&sum});
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0].shape, want.shape);
    for (int64_t i = 0; i < want.numel(); ++i) ASSERT_NEAR(got[0].data<float>()[i], want.data<float>()[i], 1e-5f) << i;
  }
  const HostTensor x = random_tensor_f32({2, 4, 6, 6}, rng);
  for (const int64_t batch : {1, 3}) {
    SCOPED_TRACE(batch);
    const HostTensor residual = random_tensor_f32({batch, 4, 6, 6}, rng);
    try {
      run(x, residual);
      ADD_FAILURE() << "a residual of batch " << batch << " ran against an output of batch 2";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find("residual input (input 3) must have the output's shape [2, 4, 6, 6]"),
                std::string::npos)
          << error.what();
    }
  }
}

}  // namespace
}  // namespace kiln::passes
