#include "frontend/onnx/onnx_importer.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "frontend/onnx/protobuf_reader.hpp"
#include "onnx_test_model.hpp"

namespace kiln::onnx {
namespace {

using namespace kiln::onnx::testing;

ir::Graph import_spec(const ModelSpec& spec, std::string base_dir = "") {
  const std::vector<uint8_t> bytes = spec.encode();
  ImportOptions options;
  options.source = "test.onnx";
  options.base_dir = std::move(base_dir);
  return import_model_bytes(bytes, options);
}

// Runs `fn`, expects a kiln::Error with `code` whose message contains every part of `needles`.
std::string expect_error(const std::function<void()>& fn, ErrorCode code,
                         const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& needle : needles) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
          << "missing '" << needle << "' in: " << e.what();
    }
    return e.what();
  }
  ADD_FAILURE() << "no kiln::Error thrown";
  return "";
}

ir::ValueId find_value(const ir::Graph& g, const std::string& name) {
  for (size_t i = 0; i < g.values.size(); ++i)
    if (g.values[i].name == name) return static_cast<ir::ValueId>(i);
  return ir::kNoValue;
}

template <typename T>
std::vector<T> constant_values(const ir::Graph& g, ir::ValueId id) {
  const auto& tensor = g.value(id).constant;
  if (!tensor) {
    ADD_FAILURE() << "value '" << g.value(id).name << "' is not a constant";
    return {};
  }
  EXPECT_EQ(tensor->bytes.size() % sizeof(T), 0u);
  std::vector<T> out(tensor->bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), tensor->bytes.data(), tensor->bytes.size());
  return out;
}

// x[batch, 3] @ W[3, 4] + B[4] -> Relu -> y, with W raw and B in float_data.
ModelSpec small_model() {
  ModelSpec m;
  m.graph.inputs = {{"x", kOnnxFloat, true, {"batch", 3}}};
  m.graph.outputs = {{"y", kOnnxFloat, true, {"batch", 4}}};
  m.graph.initializers.push_back(
      raw_float_tensor("W", {3, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  TensorSpec b;
  b.name = "B";
  b.dims = {4};
  b.float_data = {0.5f, -1.0f, 2.0f, 0.0f};
  m.graph.initializers.push_back(b);
  m.graph.nodes = {
      {"MatMul", {"x", "W"}, {"xw"}, "matmul", "", {}},
      {"Add", {"xw", "B"}, {"sum"}, "add", "", {}},
      {"Relu", {"sum"}, {"y"}, "", "", {}},
  };
  return m;
}

// ---- protobuf reader ---------------------------------------------------------------------------

TEST(OnnxImporterProtobufReader, ReadsScalarsAndSkipsUnknownFieldsAndGroups) {
  ProtoWriter w;
  w.int64(1, -5).float32(2, 1.5f).float64(3, -2.25).string(4, "hello");
  w.int64(99, 123456789);    // unknown varint
  w.string(100, "ignored");  // unknown length-delimited
  w.key(101, 3);             // unknown group with nested content
  w.int64(1, 7);
  w.key(102, 3);
  w.fixed32(5, 1);
  w.key(102, 4);
  w.key(101, 4);
  w.fixed64(103, 9);  // unknown fixed64
  w.int64(5, 42);
  pb::MessageReader r(w.data(), "mem", "Msg");
  pb::Field f;
  std::vector<uint32_t> seen;
  int64_t a = 0, e = 0;
  float b = 0;
  double c = 0;
  std::string d;
  while (r.next(f)) {
    seen.push_back(f.number);
    if (f.number == 1) a = r.read_int64(f, "a");
    if (f.number == 2) b = r.read_float(f, "b");
    if (f.number == 3) c = r.read_double(f, "c");
    if (f.number == 4) d = r.read_string(f, "d");
    if (f.number == 5) e = r.read_int64(f, "e");
  }
  EXPECT_EQ(a, -5);
  EXPECT_EQ(b, 1.5f);
  EXPECT_EQ(c, -2.25);
  EXPECT_EQ(d, "hello");
  EXPECT_EQ(e, 42);
  // The group's contents are not reported as fields.
  EXPECT_EQ(seen, (std::vector<uint32_t>{1, 2, 3, 4, 99, 100, 103, 5}));
}

TEST(OnnxImporterProtobufReader, PackedAndUnpackedRepeatedScalarsDecodeAlike) {
  const std::vector<int64_t> ints = {0, 1, -1, 300, INT64_MIN, INT64_MAX};
  const std::vector<float> floats = {0.0f, -1.5f, 3.25e8f};
  for (bool packed : {true, false}) {
    ProtoWriter w;
    w.int64s(1, ints, packed).floats(2, floats, packed).doubles(3, {1.0, -2.0}, packed);
    w.int64s(4, {-7, 7}, packed);
    pb::MessageReader r(w.data(), "mem", "Msg");
    pb::Field f;
    std::vector<int64_t> got_ints;
    std::vector<float> got_floats;
    std::vector<double> got_doubles;
    std::vector<int32_t> got_int32s;
    while (r.next(f)) {
      if (f.number == 1) r.append_int64s(f, "ints", got_ints);
      if (f.number == 2) r.append_floats(f, "floats", got_floats);
      if (f.number == 3) r.append_doubles(f, "doubles", got_doubles);
      if (f.number == 4) r.append_int32s(f, "int32s", got_int32s);
    }
    EXPECT_EQ(got_ints, ints) << "packed=" << packed;
    EXPECT_EQ(got_floats, floats) << "packed=" << packed;
    EXPECT_EQ(got_doubles, (std::vector<double>{1.0, -2.0})) << "packed=" << packed;
    EXPECT_EQ(got_int32s, (std::vector<int32_t>{-7, 7})) << "packed=" << packed;
  }
}

TEST(OnnxImporterProtobufReader, MalformedBytesAreCorruptFileErrors) {
  auto read_all = [](std::vector<uint8_t> bytes) {
    pb::MessageReader r(bytes, "bad.bin", "Msg");
    pb::Field f;
    while (r.next(f)) {
    }
  };
  expect_error(
      [&] {
        read_all({0x08, 0x80});
      },
      ErrorCode::kCorruptFile, {"bad.bin", "Msg", "truncated"});
  expect_error(
      [&] {
        read_all({0x12, 0x05, 'a'});
      },
      ErrorCode::kCorruptFile, {"bad.bin", "claims 5 bytes"});
  expect_error([&] { read_all({0x0e, 0x00}); }, ErrorCode::kCorruptFile, {"wire type 6"});
  expect_error([&] { read_all({0x00, 0x00}); }, ErrorCode::kCorruptFile, {"field number 0"});
  expect_error(
      [&] {
        read_all({0x0d, 0x01, 0x02});
      },
      ErrorCode::kCorruptFile, {"truncated fixed32"});
  expect_error(
      [&] {
        read_all({0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f});
      },
      ErrorCode::kCorruptFile, {"malformed varint"});
  expect_error(
      [&] {
        read_all({0x0b, 0x08, 0x01});
      },
      ErrorCode::kCorruptFile, {"unterminated group"});
  expect_error([&] { read_all({0x0c}); }, ErrorCode::kCorruptFile, {"end-group"});
}

TEST(OnnxImporterProtobufReader, NestingDepthIsLimited) {
  ProtoWriter inner;
  inner.int64(1, 1);
  for (int i = 0; i < pb::kMaxNestingDepth + 5; ++i) {
    ProtoWriter outer;
    outer.message(2, inner);
    inner = outer;
  }
  std::function<void(const pb::MessageReader&)> walk = [&](const pb::MessageReader& r) {
    pb::MessageReader reader = r;
    pb::Field f;
    while (reader.next(f))
      if (f.number == 2) walk(reader.child(f, "sub"));
  };
  expect_error([&] { walk(pb::MessageReader(inner.data(), "deep.bin", "Msg")); },
               ErrorCode::kCorruptFile, {"deep.bin", "Msg.sub.sub", "nested deeper"});
}

TEST(OnnxImporterProtobufReader, WrongWireTypeNamesTheFieldPath) {
  ModelSpec m = small_model();
  // The second node's attribute carries its float `f` (field 2) as a varint instead of fixed32.
  ProtoWriter bad_attr;
  bad_attr.string(1, "alpha").varint(20, 1).varint(2, 1);
  ProtoWriter node;
  node.string(1, "xw").string(1, "B").string(2, "sum").string(4, "Add").message(5, bad_attr);
  ProtoWriter model;
  model.int64(1, 8).message(8, ProtoWriter().string(1, "").int64(2, 17));
  ProtoWriter g;
  g.message(1, m.graph.nodes[0].encode()).message(1, node);
  model.message(7, g);
  expect_error(
      [&] {
        import_model_bytes(model.data(), ImportOptions{"", "path.onnx"});
      },
      ErrorCode::kCorruptFile,
      {"path.onnx", "ModelProto.graph.node[1].attribute[0].f", "wire type varint"});
}

// ---- importer ----------------------------------------------------------------------------------

TEST(OnnxImporter, ImportsASmallModel) {
  const ir::Graph g = import_spec(small_model());
  EXPECT_EQ(g.opset, 17);
  EXPECT_EQ(g.name, "test_graph");
  ASSERT_EQ(g.inputs.size(), 1u);
  const ir::Value& x = g.value(g.inputs[0]);
  EXPECT_EQ(x.name, "x");
  EXPECT_EQ(x.dtype, DType::kFloat32);
  EXPECT_EQ(x.shape, (Shape{kDynamicDim, 3}));
  EXPECT_EQ(x.dim_names, (std::vector<std::string>{"batch", ""}));
  EXPECT_FALSE(x.constant);

  const ir::ValueId w = find_value(g, "W");
  ASSERT_NE(w, ir::kNoValue);
  EXPECT_EQ(g.value(w).shape, (Shape{3, 4}));
  EXPECT_EQ(constant_values<float>(g, w)[5], 6.0f);
  EXPECT_EQ(constant_values<float>(g, find_value(g, "B")),
            (std::vector<float>{0.5f, -1.0f, 2.0f, 0.0f}));

  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(g.nodes[0].op_type, "MatMul");
  EXPECT_EQ(g.nodes[0].name, "matmul");
  EXPECT_EQ(g.nodes[0].inputs, (std::vector<ir::ValueId>{g.inputs[0], w}));
  EXPECT_EQ(g.nodes[1].inputs[0], g.nodes[0].outputs[0]);
  EXPECT_EQ(g.nodes[2].op_type, "Relu");
  EXPECT_EQ(g.nodes[2].name, "Relu_2");  // unnamed nodes get <op_type>_<index>
  EXPECT_EQ(g.nodes[2].domain, "");
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.outputs[0], g.nodes[2].outputs[0]);
  const ir::Value& y = g.value(g.outputs[0]);
  EXPECT_EQ(y.name, "y");
  EXPECT_EQ(y.shape, (Shape{kDynamicDim, 4}));  // from the output's value_info
  EXPECT_EQ(y.producer, 2);
}

TEST(OnnxImporter, PackedAndUnpackedEncodingsImportIdentically) {
  auto build = [](bool packed) {
    ModelSpec m;
    m.graph.inputs = {{"x", kOnnxFloat, true, {1, 2, 4, 4}}};
    m.graph.outputs = {{"y", kOnnxFloat, true, {}}};
    TensorSpec w;
    w.name = "w";
    w.dims = {3, 2, 1, 1};
    w.float_data = {1, 2, 3, 4, 5, 6};
    w.packed = packed;
    TensorSpec shape;
    shape.name = "shape";
    shape.data_type = kOnnxInt64;
    shape.dims = {2};
    shape.int64_data = {1, -1};
    shape.packed = packed;
    m.graph.initializers = {w, shape};
    m.graph.nodes = {
        {"Conv",
         {"x", "w"},
         {"c"},
         "conv",
         "",
         {attr_ints("pads", {0, 1, 0, 1}, packed), attr_ints("strides", {1, 1}, packed)}},
        {"Reshape", {"c", "shape"}, {"y"}, "reshape", "", {}}};
    return import_spec(m);
  };
  const ir::Graph packed = build(true);
  const ir::Graph unpacked = build(false);
  ASSERT_EQ(packed.nodes.size(), 2u);
  ASSERT_EQ(unpacked.nodes.size(), 2u);
  EXPECT_EQ(packed.nodes[0].attrs.get_ints("pads"), (std::vector<int64_t>{0, 1, 0, 1}));
  EXPECT_TRUE(packed.nodes[0].attrs == unpacked.nodes[0].attrs);
  for (const ir::Graph* g : {&packed, &unpacked}) {
    EXPECT_EQ(g->value(find_value(*g, "w")).shape, (Shape{3, 2, 1, 1}));
    EXPECT_EQ(constant_values<float>(*g, find_value(*g, "w")),
              (std::vector<float>{1, 2, 3, 4, 5, 6}));
    EXPECT_EQ(constant_values<int64_t>(*g, find_value(*g, "shape")), (std::vector<int64_t>{1, -1}));
  }
}

TEST(OnnxImporter, TypedFieldsOfEveryDtypeDecode) {
  ModelSpec m = small_model();
  auto typed = [](std::string name, int32_t type, std::vector<int64_t> dims) {
    TensorSpec t;
    t.name = std::move(name);
    t.data_type = type;
    t.dims = std::move(dims);
    return t;
  };
  TensorSpec i8 = typed("i8", kOnnxInt8, {3});
  i8.int32_data = {-128, 0, 127};
  TensorSpec u8 = typed("u8", kOnnxUInt8, {2});
  u8.int32_data = {255, 1};
  TensorSpec flag = typed("flag", kOnnxBool, {3});
  flag.int32_data = {1, 0, 1};
  TensorSpec half = typed("half", kOnnxFloat16, {2});
  half.int32_data = {0x3c00, 0xc000};  // 1.0, -2.0
  TensorSpec bf = typed("bf", kOnnxBFloat16, {1});
  bf.int32_data = {0x3f80};  // 1.0
  TensorSpec i32 = typed("i32", kOnnxInt32, {2});
  i32.int32_data = {-70000, 70000};
  TensorSpec f64 = typed("f64", kOnnxDouble, {2});
  f64.double_data = {0.125, -8.0};
  TensorSpec scalar = typed("scalar", kOnnxInt64, {});
  scalar.int64_data = {-3};
  TensorSpec empty = typed("empty", kOnnxFloat, {0, 5});
  TensorSpec u16 = typed("u16", kOnnxUInt16, {2});
  u16.int32_data = {65535, 7};
  TensorSpec u32 = typed("u32", kOnnxUInt32, {2});
  u32.uint64_data = {4294967295u, 3};
  TensorSpec u64 = typed("u64", kOnnxUInt64, {2});
  u64.uint64_data = {18446744073709551615u, uint64_t{1} << 63};
  m.graph.initializers.insert(m.graph.initializers.end(),
                              {i8, u8, flag, half, bf, i32, f64, scalar, empty, u16, u32, u64});
  const ir::Graph g = import_spec(m);
  EXPECT_EQ(constant_values<int8_t>(g, find_value(g, "i8")), (std::vector<int8_t>{-128, 0, 127}));
  EXPECT_EQ(constant_values<uint8_t>(g, find_value(g, "u8")), (std::vector<uint8_t>{255, 1}));
  EXPECT_EQ(constant_values<uint8_t>(g, find_value(g, "flag")), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(g.value(find_value(g, "flag")).dtype, DType::kBool);
  EXPECT_EQ(constant_values<uint16_t>(g, find_value(g, "half")),
            (std::vector<uint16_t>{0x3c00, 0xc000}));
  EXPECT_EQ(g.value(find_value(g, "bf")).dtype, DType::kBFloat16);
  EXPECT_EQ(constant_values<uint16_t>(g, find_value(g, "bf")), (std::vector<uint16_t>{0x3f80}));
  EXPECT_EQ(constant_values<int32_t>(g, find_value(g, "i32")),
            (std::vector<int32_t>{-70000, 70000}));
  EXPECT_EQ(constant_values<double>(g, find_value(g, "f64")), (std::vector<double>{0.125, -8.0}));
  EXPECT_EQ(g.value(find_value(g, "scalar")).shape, Shape{});
  EXPECT_EQ(constant_values<int64_t>(g, find_value(g, "scalar")), (std::vector<int64_t>{-3}));
  EXPECT_EQ(g.value(find_value(g, "empty")).shape, (Shape{0, 5}));
  EXPECT_EQ(g.value(find_value(g, "u16")).dtype, DType::kUInt16);
  EXPECT_EQ(constant_values<uint16_t>(g, find_value(g, "u16")), (std::vector<uint16_t>{65535, 7}));
  EXPECT_EQ(g.value(find_value(g, "u32")).dtype, DType::kUInt32);
  EXPECT_EQ(constant_values<uint32_t>(g, find_value(g, "u32")), (std::vector<uint32_t>{4294967295u, 3}));
  EXPECT_EQ(g.value(find_value(g, "u64")).dtype, DType::kUInt64);
  EXPECT_EQ(constant_values<uint64_t>(g, find_value(g, "u64")),
            (std::vector<uint64_t>{18446744073709551615u, uint64_t{1} << 63}));
}

TEST(OnnxImporter, BadInitializersAreNamedInErrors) {
  ModelSpec wrong_size = small_model();
  wrong_size.graph.initializers[0].raw.pop_back();
  expect_error([&] { import_spec(wrong_size); }, ErrorCode::kCorruptFile,
               {"test.onnx", "tensor 'W'", "raw_data has 47 bytes, expected 48"});

  ModelSpec wrong_count = small_model();
  wrong_count.graph.initializers[1].float_data.push_back(1.0f);
  expect_error([&] { import_spec(wrong_count); }, ErrorCode::kCorruptFile,
               {"tensor 'B'", "5 typed values, expected 4"});

  ModelSpec strings = small_model();
  TensorSpec s;
  s.name = "labels";
  s.data_type = kOnnxString;
  s.dims = {1};
  strings.graph.initializers.push_back(s);
  expect_error([&] { import_spec(strings); }, ErrorCode::kUnsupported,
               {"tensor 'labels'", "STRING"});

  ModelSpec complex = small_model();
  TensorSpec c = raw_float_tensor("c64", {1}, {0.0f, 0.0f});
  c.data_type = kOnnxComplex64;
  complex.graph.initializers.push_back(c);
  expect_error([&] { import_spec(complex); }, ErrorCode::kUnsupported, {"tensor 'c64'", "COMPLEX64"});

  // ONNX keeps uint32 values in uint64_data; int32_data holds none of them.
  ModelSpec misplaced = small_model();
  TensorSpec u;
  u.name = "u32";
  u.data_type = kOnnxUInt32;
  u.dims = {2};
  u.int32_data = {1, 2};
  misplaced.graph.initializers.push_back(u);
  expect_error([&] { import_spec(misplaced); }, ErrorCode::kCorruptFile, {"tensor 'u32'", "uint64_data"});

  ModelSpec negative = small_model();
  negative.graph.initializers[0].dims = {-3, -4};
  expect_error([&] { import_spec(negative); }, ErrorCode::kCorruptFile,
               {"tensor 'W'", "negative dimension"});
}

TEST(OnnxImporter, InitializerListedAsInputBecomesAConstant) {
  ModelSpec m = small_model();
  m.graph.inputs.push_back({"W", kOnnxFloat, true, {3, 4}});
  const ir::Graph g = import_spec(m);
  ASSERT_EQ(g.inputs.size(), 1u);
  EXPECT_EQ(g.value(g.inputs[0]).name, "x");
  const ir::ValueId w = find_value(g, "W");
  EXPECT_TRUE(g.is_constant(w));
  EXPECT_EQ(g.nodes[0].inputs[1], w);
}

TEST(OnnxImporter, InputsNeedTensorTypeAndRank) {
  ModelSpec no_shape = small_model();
  no_shape.graph.inputs[0].has_shape = false;
  expect_error([&] { import_spec(no_shape); }, ErrorCode::kInvalidArgument,
               {"graph input 'x'", "no shape"});
  ModelSpec no_type = small_model();
  no_type.graph.inputs[0].has_type = false;
  expect_error([&] { import_spec(no_type); }, ErrorCode::kInvalidArgument, {"graph input 'x'"});
  ModelSpec string_input = small_model();
  string_input.graph.inputs[0].elem_type = kOnnxString;
  expect_error([&] { import_spec(string_input); }, ErrorCode::kUnsupported,
               {"graph input 'x'", "STRING"});
  // A dimension with neither value nor param is dynamic and unnamed.
  ModelSpec missing_dim = small_model();
  missing_dim.graph.inputs[0].dims[0] = DimSpec(-1);
  const ir::Graph g = import_spec(missing_dim);
  EXPECT_EQ(g.value(g.inputs[0]).shape, (Shape{kDynamicDim, 3}));
  EXPECT_EQ(g.value(g.inputs[0]).dim_names, (std::vector<std::string>{"", ""}));
}

TEST(OnnxImporter, ConstantNodesFoldIntoConstantValues) {
  ModelSpec m = small_model();
  TensorSpec bias = raw_float_tensor("ignored_name", {4}, {1, 2, 3, 4});
  m.graph.nodes.insert(
      m.graph.nodes.begin(),
      {{"Constant", {}, {"c_tensor"}, "c0", "", {attr_tensor("value", bias)}},
       {"Constant", {}, {"c_float"}, "c1", "", {attr_float("value_float", 2.5f)}},
       {"Constant", {}, {"c_ints"}, "c2", "", {attr_ints("value_ints", {4, -1})}},
       {"Constant", {}, {"c_int"}, "c3", "", {attr_int("value_int", 9)}},
       {"Constant", {}, {"c_floats"}, "c4", "", {attr_floats("value_floats", {0.25f, 0.5f})}}});
  m.graph.nodes.push_back({"Add", {"y", "c_tensor"}, {"y2"}, "add2", "", {}});
  m.graph.outputs = {{"y2", kOnnxFloat, true, {"batch", 4}}, {"c_float", kOnnxFloat, true, {}}};
  const ir::Graph g = import_spec(m);
  for (const ir::Node& node : g.nodes) EXPECT_NE(node.op_type, "Constant");
  ASSERT_EQ(g.nodes.size(), 4u);
  const ir::ValueId c = find_value(g, "c_tensor");
  EXPECT_EQ(constant_values<float>(g, c), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(g.nodes[3].inputs[1], c);
  EXPECT_EQ(g.value(find_value(g, "c_float")).shape, Shape{});
  EXPECT_EQ(constant_values<float>(g, find_value(g, "c_float")), (std::vector<float>{2.5f}));
  EXPECT_EQ(g.value(find_value(g, "c_ints")).dtype, DType::kInt64);
  EXPECT_EQ(constant_values<int64_t>(g, find_value(g, "c_ints")), (std::vector<int64_t>{4, -1}));
  EXPECT_EQ(constant_values<int64_t>(g, find_value(g, "c_int")), (std::vector<int64_t>{9}));
  EXPECT_EQ(constant_values<float>(g, find_value(g, "c_floats")),
            (std::vector<float>{0.25f, 0.5f}));
  // A graph output may be a constant.
  ASSERT_EQ(g.outputs.size(), 2u);
  EXPECT_TRUE(g.is_constant(g.outputs[1]));
}

TEST(OnnxImporter, StringAndSparseConstantsAreUnsupported) {
  ModelSpec m = small_model();
  AttributeSpec sparse;
  sparse.name = "sparse_value";
  sparse.type = AttributeSpec::kSparseTensor;
  m.graph.nodes.push_back(
      {"Constant", {}, {"s"}, "const_str", "", {attr_string("value_string", "hi")}});
  m.graph.nodes.push_back({"Constant", {}, {"t"}, "const_sparse", "", {sparse}});
  expect_error([&] { import_spec(m); }, ErrorCode::kUnsupported,
               {"2 unsupported nodes", "node 'const_str'", "value_string", "node 'const_sparse'",
                "sparse_value"});
}

class OnnxImporterExternalData : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kiln_onnx_ext_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "weights");
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    std::filesystem::remove_all(outside_dir());
  }

  // A folder beside the model's folder, for files a model must not reach.
  std::filesystem::path outside_dir() const { return dir_.string() + "_outside"; }

  // 64 bytes: 4 floats of padding, then W's 12 values 0, 0.5, ..., 5.5 (offset 16, length 48).
  static std::vector<uint8_t> weight_file_bytes() {
    std::vector<float> values(16, -1.0f);
    for (int i = 0; i < 12; ++i) values[static_cast<size_t>(4 + i)] = static_cast<float>(i) * 0.5f;
    return to_bytes(values);
  }

  // Imports small_model() with W at `location`; returns W's values.
  std::vector<float> import_weights(const std::string& location) {
    const ir::Graph g = import_model_file(write_model(external_model(location)));
    return constant_values<float>(g, find_value(g, "W"));
  }

  void write_file(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }

  // small_model() with W stored externally at `location`.
  ModelSpec external_model(const std::string& location, std::string offset = "16",
                           std::string length = "48") {
    ModelSpec m = small_model();
    TensorSpec& w = m.graph.initializers[0];
    w.has_raw = false;
    w.raw.clear();
    w.external = true;
    w.external_data = {{"location", location}, {"offset", offset}, {"length", length}};
    return m;
  }

  std::string write_model(const ModelSpec& m) {
    const auto path = dir_ / "model.onnx";
    write_file(path, m.encode());
    return path.string();
  }

  std::filesystem::path dir_;
};

TEST_F(OnnxImporterExternalData, ReadsTensorFromFileAtOffset) {
  std::vector<float> values(16, -1.0f);  // 4 floats of padding, then W's 12
  for (int i = 0; i < 12; ++i) values[static_cast<size_t>(4 + i)] = static_cast<float>(i) * 0.5f;
  write_file(dir_ / "weights" / "w.bin", to_bytes(values));
  const ir::Graph g = import_model_file(write_model(external_model("weights/w.bin")));
  const std::vector<float> w = constant_values<float>(g, find_value(g, "W"));
  ASSERT_EQ(w.size(), 12u);
  EXPECT_EQ(w[0], 0.0f);
  EXPECT_EQ(w[11], 5.5f);
}

TEST_F(OnnxImporterExternalData, BadReferencesAreRejectedWithNamedErrors) {
  write_file(dir_ / "weights" / "short.bin", std::vector<uint8_t>(40, 0));
  expect_error([&] { import_model_file(write_model(external_model("weights/missing.bin"))); },
               ErrorCode::kNotFound, {"tensor 'W'", "weights/missing.bin", "does not exist"});
  expect_error([&] { import_model_file(write_model(external_model("../escape.bin"))); },
               ErrorCode::kCorruptFile, {"tensor 'W'", "../escape.bin", "escapes"});
  expect_error([&] { import_model_file(write_model(external_model("weights/../../x.bin"))); },
               ErrorCode::kCorruptFile, {"tensor 'W'", "escapes"});
  expect_error([&] { import_model_file(write_model(external_model("/etc/passwd"))); },
               ErrorCode::kCorruptFile, {"tensor 'W'", "absolute"});
  expect_error([&] { import_model_file(write_model(external_model("weights/short.bin"))); },
               ErrorCode::kCorruptFile, {"tensor 'W'", "too short"});
  expect_error(
      [&] { import_model_file(write_model(external_model("weights/short.bin", "0", "40"))); },
      ErrorCode::kCorruptFile, {"tensor 'W'", "length 40", "48 bytes"});
  expect_error(
      [&] { import_model_file(write_model(external_model("weights/short.bin", "x1", "48"))); },
      ErrorCode::kCorruptFile, {"tensor 'W'", "offset 'x1'"});
  // From bytes without a base directory, external data cannot be located.
  expect_error([&] { import_spec(external_model("weights/short.bin")); },
               ErrorCode::kInvalidArgument, {"tensor 'W'", "base directory"});
}

// A symbolic link inside the model's folder must not lead the importer to a file outside it (an
// engine was once built whose weights were /etc/passwd).
TEST_F(OnnxImporterExternalData, SymlinkToAFileOutsideTheFolderIsRefused) {
  std::filesystem::create_directories(outside_dir());
  write_file(outside_dir() / "w.bin", weight_file_bytes());
  std::filesystem::create_symlink(outside_dir() / "w.bin", dir_ / "weights" / "abs.bin");
  std::filesystem::create_symlink("../../" + outside_dir().filename().string() + "/w.bin",
                                  dir_ / "weights" / "rel.bin");
  std::filesystem::create_symlink("/etc/passwd", dir_ / "weights" / "passwd.bin");
  for (const std::string location : {"weights/abs.bin", "weights/rel.bin", "weights/passwd.bin"}) {
    expect_error([&] { import_weights(location); }, ErrorCode::kCorruptFile,
                 {"tensor 'W'", "'" + location + "'", "leads outside the model's folder"});
  }
}

TEST_F(OnnxImporterExternalData, SymlinkChainLeavingTheFolderIsRefused) {
  std::filesystem::create_directories(outside_dir());
  write_file(outside_dir() / "w.bin", weight_file_bytes());
  // first -> second (inside) -> third (inside) -> the file outside
  std::filesystem::create_symlink("second.bin", dir_ / "weights" / "first.bin");
  std::filesystem::create_symlink("../third.bin", dir_ / "weights" / "second.bin");
  std::filesystem::create_symlink(outside_dir() / "w.bin", dir_ / "third.bin");
  expect_error([&] { import_weights("weights/first.bin"); }, ErrorCode::kCorruptFile,
               {"'weights/first.bin'", "leads outside the model's folder"});
}

TEST_F(OnnxImporterExternalData, SymlinkedSubfolderPointingOutsideIsRefused) {
  std::filesystem::create_directories(outside_dir() / "weights");
  write_file(outside_dir() / "weights" / "w.bin", weight_file_bytes());
  std::filesystem::create_directory_symlink(outside_dir() / "weights", dir_ / "shared");
  expect_error([&] { import_weights("shared/w.bin"); }, ErrorCode::kCorruptFile,
               {"'shared/w.bin'", "leads outside the model's folder"});
  // A missing file behind the link says the same, so errors cannot probe what exists outside.
  expect_error([&] { import_weights("shared/missing.bin"); }, ErrorCode::kCorruptFile,
               {"'shared/missing.bin'", "leads outside the model's folder"});
  std::filesystem::create_symlink(outside_dir() / "missing.bin", dir_ / "dangling.bin");
  expect_error([&] { import_weights("dangling.bin"); }, ErrorCode::kCorruptFile,
               {"'dangling.bin'", "leads outside the model's folder"});
}

TEST_F(OnnxImporterExternalData, DevicesFifosAndDirectoriesAreRefused) {
  // /dev/zero through a link leaves the folder.
  std::filesystem::create_symlink("/dev/zero", dir_ / "weights" / "zero.bin");
  expect_error([&] { import_weights("weights/zero.bin"); }, ErrorCode::kCorruptFile,
               {"'weights/zero.bin'", "leads outside the model's folder"});
  // A device inside the model's folder (here the folder is /dev) is not a regular file.
  ModelSpec from_dev = external_model("zero");
  expect_error([&] { import_spec(from_dev, "/dev"); }, ErrorCode::kCorruptFile,
               {"tensor 'W'", "/dev/zero", "is a character device, not a regular file"});
  // A FIFO would block a reader forever.
  ASSERT_EQ(::mkfifo((dir_ / "weights" / "fifo.bin").c_str(), 0600), 0);
  expect_error([&] { import_weights("weights/fifo.bin"); }, ErrorCode::kCorruptFile,
               {"weights/fifo.bin", "is a FIFO, not a regular file"});
  expect_error([&] { import_weights("weights"); }, ErrorCode::kCorruptFile,
               {"weights", "is a directory, not a regular file"});
  std::filesystem::create_directory_symlink(dir_ / "weights", dir_ / "weights_link");
  expect_error([&] { import_weights("weights_link"); }, ErrorCode::kCorruptFile,
               {"weights_link", "is a directory, not a regular file"});
}

TEST_F(OnnxImporterExternalData, SymlinkLoopsAndMissingTargetsInsideAreNamed) {
  std::filesystem::create_symlink("b.bin", dir_ / "a.bin");
  std::filesystem::create_symlink("a.bin", dir_ / "b.bin");
  expect_error([&] { import_weights("a.bin"); }, ErrorCode::kCorruptFile,
               {"'a.bin'", "more than 40 symbolic links"});
  std::filesystem::create_symlink("weights/nothing.bin", dir_ / "dangling.bin");
  expect_error([&] { import_weights("dangling.bin"); }, ErrorCode::kNotFound,
               {"dangling.bin", "does not exist"});
  expect_error([&] { import_weights("weights/nothing/w.bin"); }, ErrorCode::kNotFound,
               {"weights/nothing/w.bin", "does not exist"});
}

TEST_F(OnnxImporterExternalData, SymlinksThatStayInsideTheFolderAreFollowed) {
  write_file(dir_ / "weights" / "w.bin", weight_file_bytes());
  std::filesystem::create_symlink("weights/w.bin", dir_ / "relative.bin");
  std::filesystem::create_symlink(dir_ / "weights" / "w.bin", dir_ / "absolute.bin");
  // Leaves through '..' and comes back in by the folder's own name.
  std::filesystem::create_symlink("../../" + dir_.filename().string() + "/weights/w.bin",
                                  dir_ / "weights" / "around.bin");
  std::filesystem::create_symlink("relative.bin", dir_ / "chain.bin");
  std::filesystem::create_directory_symlink("weights", dir_ / "alias");
  for (const std::string location :
       {"relative.bin", "absolute.bin", "weights/around.bin", "chain.bin", "alias/w.bin"}) {
    const std::vector<float> w = import_weights(location);
    ASSERT_EQ(w.size(), 12u) << location;
    EXPECT_EQ(w[11], 5.5f) << location;
  }
  // The model's folder itself may be reached through a link.
  const std::filesystem::path linked_folder = dir_.string() + "_link";
  std::filesystem::create_directory_symlink(dir_, linked_folder);
  write_file(linked_folder / "model.onnx", external_model("chain.bin").encode());
  const ir::Graph g = import_model_file((linked_folder / "model.onnx").string());
  std::filesystem::remove(linked_folder);
  EXPECT_EQ(constant_values<float>(g, find_value(g, "W")).size(), 12u);
}

// Hard links are kept (docs/security.md: they cannot reach files the user could not already
// read, and package caches share weights through them).
TEST_F(OnnxImporterExternalData, HardLinkedFilesAreRead) {
  write_file(dir_ / "weights" / "w.bin", weight_file_bytes());
  std::filesystem::create_hard_link(dir_ / "weights" / "w.bin", dir_ / "hard.bin");
  ASSERT_EQ(std::filesystem::hard_link_count(dir_ / "hard.bin"), 2u);
  EXPECT_EQ(import_weights("hard.bin").size(), 12u);
}

TEST_F(OnnxImporterExternalData, LocationWithANulByteIsRefused) {
  // The C library would have opened "weights/w.bin" and ignored the rest.
  write_file(dir_ / "weights" / "w.bin", weight_file_bytes());
  expect_error([&] { import_weights(std::string("weights/w.bin\0.hidden", 21)); },
               ErrorCode::kCorruptFile, {"tensor 'W'", "NUL byte"});
}

TEST(OnnxImporter, MissingModelFileIsNotFound) {
  expect_error([] { import_model_file("/nonexistent/dir/model.onnx"); }, ErrorCode::kNotFound,
               {"/nonexistent/dir/model.onnx"});
}

TEST(OnnxImporter, OpsetOutsideTheSupportedRangeIsRejected) {
  for (int64_t opset : {5, 29}) {
    ModelSpec m = small_model();
    m.opsets = {{"", opset}};
    expect_error([&] { import_spec(m); }, ErrorCode::kUnsupported,
                 {"test.onnx",
                  "opset " + std::to_string(opset) + " is not supported (kiln supports 6-28)"});
  }
  ModelSpec none = small_model();
  none.opsets = {{"com.example", 1}};
  expect_error([&] { import_spec(none); }, ErrorCode::kUnsupported, {"no ai.onnx opset"});
  for (int64_t opset : {6, 12, 13, 21, 22, 25, 28}) {
    ModelSpec m = small_model();
    m.opsets = {{"ai.onnx", opset}};  // the explicit spelling of the default domain
    EXPECT_EQ(import_spec(m).opset, opset);
  }
}

TEST(OnnxImporter, AllUnsupportedNodesAreReportedInOneError) {
  ModelSpec m = small_model();
  m.opsets = {{"", 17}, {"com.example", 1}};
  m.graph.nodes.push_back({"FooBar", {"y"}, {"z"}, "foo_0", "", {}});
  m.graph.nodes.push_back({"Foo", {"z"}, {"w"}, "custom", "com.example", {}});
  const std::string message = expect_error(
      [&] { import_spec(m); }, ErrorCode::kUnsupported,
      {"test.onnx: 2 unsupported nodes:",
       "node 'foo_0': op 'FooBar' (domain 'ai.onnx', opset 17) is not supported by kiln",
       "node 'custom': op 'Foo' (domain 'com.example', opset 1) is not supported by kiln"});
  // One line per node.
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 2);
}

TEST(OnnxImporter, OpsOfOtherDomainsAreTakenFromTheDomainTheirOpDefNames) {
  // Binarizer's OpDef names ai.onnx.ml: a node of that domain imports as kiln's Binarizer ...
  ModelSpec m = small_model();
  m.opsets = {{"", 17}, {"ai.onnx.ml", 1}};
  m.graph.nodes.push_back({"Binarizer", {"y"}, {"z"}, "binarize", "ai.onnx.ml", {}});
  m.graph.outputs = {{"z", kOnnxFloat, true, {"batch", 4}}};
  const ir::Graph g = import_spec(m);
  ASSERT_EQ(g.nodes.size(), 4u);
  EXPECT_EQ(g.nodes[3].op_type, "Binarizer");
  EXPECT_EQ(g.nodes[3].domain, "");
  // ... and an ai.onnx node of that name is not an ONNX op.
  m.graph.nodes.back().domain = "";
  expect_error([&] { import_spec(m); }, ErrorCode::kUnsupported,
               {"node 'binarize': op 'Binarizer' (domain 'ai.onnx', opset 17) is not supported by kiln"});
  // A model importing only such a domain is imported too (its domain is one the registry has).
  ModelSpec ml_only = small_model();
  ml_only.opsets = {{"ai.onnx.ml", 1}};
  ml_only.graph.nodes = {{"Binarizer", {"x"}, {"y"}, "binarize", "ai.onnx.ml", {}}};
  ml_only.graph.outputs = {{"y", kOnnxFloat, true, {"batch", 3}}};
  EXPECT_EQ(import_spec(ml_only).nodes.at(0).op_type, "Binarizer");
}

TEST(OnnxImporter, UnsupportedAttributeTypesAreReported) {
  ModelSpec m = small_model();
  AttributeSpec graph_attr;
  graph_attr.name = "body";
  graph_attr.type = AttributeSpec::kGraph;
  m.graph.nodes[2].attributes.push_back(graph_attr);
  expect_error([&] { import_spec(m); }, ErrorCode::kUnsupported,
               {"1 unsupported node:", "node 'Relu_2'", "op 'Relu'", "attribute 'body'", "GRAPH"});
}

// ---- graphs the importer must refuse as malformed (the ONNX checker refuses most of them) -----

TEST(OnnxImporterMalformedGraph, GraphInputListedTwiceIsCorrupt) {
  ModelSpec m = small_model();
  m.graph.inputs.push_back(m.graph.inputs[0]);
  expect_error([&] { import_spec(m); }, ErrorCode::kCorruptFile,
               {"test.onnx", "graph input 'x' is listed twice"});
  // Also when the input names an initializer (whose repeats were skipped silently).
  ModelSpec with_default = small_model();
  with_default.graph.inputs.push_back({"W", kOnnxFloat, true, {3, 4}});
  with_default.graph.inputs.push_back({"W", kOnnxFloat, true, {3, 4}});
  expect_error([&] { import_spec(with_default); }, ErrorCode::kCorruptFile,
               {"test.onnx", "graph input 'W' is listed twice"});
}

TEST(OnnxImporterMalformedGraph, BindingNamesWithANulByteAreCorrupt) {
  // Graph inputs and outputs name the engine's bindings, C strings in the C API.
  ModelSpec in = small_model();
  in.graph.inputs[0].name = std::string("x\0y", 3);
  in.graph.nodes[0].inputs[0] = in.graph.inputs[0].name;
  expect_error([&] { import_spec(in); }, ErrorCode::kCorruptFile,
               {"test.onnx", "graph input 'x\\0y': the name contains a NUL byte"});
  ModelSpec out = small_model();
  out.graph.outputs[0].name = std::string("y\0\0z", 4);
  out.graph.nodes[2].outputs[0] = out.graph.outputs[0].name;
  expect_error([&] { import_spec(out); }, ErrorCode::kCorruptFile,
               {"test.onnx", "graph output 'y\\0\\0z': the name contains a NUL byte"});
}

TEST(OnnxImporterMalformedGraph, GraphWithoutOutputsIsCorrupt) {
  ModelSpec m = small_model();
  m.graph.outputs.clear();
  expect_error([&] { import_spec(m); }, ErrorCode::kCorruptFile,
               {"test.onnx", "the graph declares no outputs"});
}

TEST(OnnxImporterMalformedGraph, GraphOutputListedTwiceIsCorrupt) {
  ModelSpec m = small_model();
  m.graph.outputs.push_back(m.graph.outputs[0]);
  expect_error([&] { import_spec(m); }, ErrorCode::kCorruptFile,
               {"test.onnx", "graph output 'y' is listed twice"});
}

TEST(OnnxImporterMalformedGraph, AttributeGivenTwiceIsCorrupt) {
  ModelSpec m = small_model();
  m.graph.nodes[2] = {"LeakyRelu", {"sum"}, {"y"},
                      "leaky",     "",      {attr_float("alpha", 0.1f), attr_float("alpha", 0.2f)}};
  expect_error([&] { import_spec(m); }, ErrorCode::kCorruptFile,
               {"test.onnx", "node 'leaky' (op 'LeakyRelu')", "attribute 'alpha' appears twice"});
  // A Constant node, a node inside a model-local function and a call of one are checked too.
  ModelSpec constant = small_model();
  constant.graph.nodes.push_back({"Constant",
                                  {},
                                  {"c"},
                                  "const",
                                  "",
                                  {attr_float("value_float", 1), attr_float("value_float", 2)}});
  expect_error([&] { import_spec(constant); }, ErrorCode::kCorruptFile,
               {"node 'const' (op 'Constant')", "attribute 'value_float' appears twice"});
  FunctionSpec fn;
  fn.name = "Leaky";
  fn.domain = "com.local";
  fn.inputs = {"X"};
  fn.outputs = {"Y"};
  fn.attributes = {"slope"};
  fn.opsets = {{"", 17}};
  fn.nodes = {{"LeakyRelu", {"X"}, {"Y"}, "inner", "", {attr_float("alpha", 0.1f)}}};
  ModelSpec call = small_model();
  call.opsets.push_back({"com.local", 1});
  call.graph.nodes[2] = {"Leaky", {"sum"},     {"y"},
                         "call",  "com.local", {attr_float("slope", 1), attr_float("slope", 2)}};
  call.functions = {fn};
  expect_error([&] { import_spec(call); }, ErrorCode::kCorruptFile,
               {"node 'call' (op 'Leaky')", "attribute 'slope' appears twice"});
  call.graph.nodes[2].attributes.pop_back();
  call.functions[0].nodes[0].attributes.push_back(attr_float("alpha", 0.3f));
  expect_error([&] { import_spec(call); }, ErrorCode::kCorruptFile,
               {"node 'call/inner' (op 'LeakyRelu')", "attribute 'alpha' appears twice"});
}

TEST(OnnxImporterMalformedGraph, ValueDefinedTwiceIsCorrupt) {
  ModelSpec two_producers = small_model();
  two_producers.graph.nodes.push_back({"Relu", {"sum"}, {"y"}, "again", "", {}});
  expect_error([&] { import_spec(two_producers); }, ErrorCode::kCorruptFile,
               {"test.onnx", "value 'y' is produced twice", "node 'again'"});
  ModelSpec over_input = small_model();
  over_input.graph.nodes.push_back({"Relu", {"sum"}, {"x"}, "shadow", "", {}});
  expect_error([&] { import_spec(over_input); }, ErrorCode::kCorruptFile,
               {"value 'x' is produced twice", "node 'shadow'"});
  ModelSpec over_initializer = small_model();
  over_initializer.graph.nodes.push_back({"Relu", {"sum"}, {"W"}, "shadow", "", {}});
  expect_error([&] { import_spec(over_initializer); }, ErrorCode::kCorruptFile,
               {"value 'W' is produced twice", "node 'shadow'"});
  ModelSpec initializer_twice = small_model();
  initializer_twice.graph.initializers.push_back(initializer_twice.graph.initializers[0]);
  expect_error([&] { import_spec(initializer_twice); }, ErrorCode::kCorruptFile,
               {"value 'W' is defined twice"});
}

TEST(OnnxImporter, AttributeReferenceOutsideAFunctionIsCorrupt) {
  ModelSpec m = small_model();
  m.graph.nodes[2].attributes.push_back(attr_ref("alpha", AttributeSpec::kFloat, "outer"));
  expect_error([&] { import_spec(m); }, ErrorCode::kCorruptFile,
               {"node 'Relu_2'", "attribute 'alpha'", "only valid inside functions"});
}

TEST(OnnxImporter, ModelLocalFunctionsAreInlined) {
  // AddScaled(X) = X + alpha (alpha defaults to 0.5); called twice, once with alpha=2.
  FunctionSpec fn;
  fn.name = "AddScaled";
  fn.domain = "com.local";
  fn.inputs = {"X"};
  fn.outputs = {"Y"};
  fn.attribute_defaults = {attr_float("alpha", 0.5f)};
  fn.opsets = {{"", 17}};
  fn.nodes = {{"Constant",
               {},
               {"a"},
               "const",
               "",
               {attr_ref("value_float", AttributeSpec::kFloat, "alpha")}},
              {"Add", {"X", "a"}, {"t"}, "add", "", {}},
              {"Relu", {"t"}, {"Y"}, "", "", {}}};
  ModelSpec m;
  m.opsets = {{"", 17}, {"com.local", 1}};
  m.functions = {fn};
  m.graph.inputs = {{"x", kOnnxFloat, true, {2}}};
  m.graph.outputs = {{"out", kOnnxFloat, true, {2}}};
  AttributeSpec alpha = attr_float("alpha", 2.0f);
  m.graph.nodes = {{"AddScaled", {"x"}, {"mid"}, "call1", "com.local", {alpha}},
                   {"AddScaled", {"mid"}, {"out"}, "call2", "com.local", {}}};
  // A top-level value named like the first call's internal value must not be captured.
  m.graph.value_infos = {{"call1/t", kOnnxFloat, true, {2}}};
  const ir::Graph g = import_spec(m);
  ASSERT_EQ(g.nodes.size(), 4u);
  EXPECT_EQ(g.nodes[0].op_type, "Add");
  EXPECT_EQ(g.nodes[0].name, "call1/add");
  EXPECT_EQ(g.nodes[0].domain, "");
  EXPECT_EQ(g.nodes[1].name, "call1/Relu_2");
  EXPECT_EQ(g.nodes[0].inputs[0], g.inputs[0]);
  EXPECT_EQ(constant_values<float>(g, g.nodes[0].inputs[1]), (std::vector<float>{2.0f}));
  EXPECT_EQ(constant_values<float>(g, g.nodes[2].inputs[1]), (std::vector<float>{0.5f}));
  EXPECT_EQ(g.value(g.nodes[1].outputs[0]).name, "mid");
  EXPECT_EQ(g.nodes[2].inputs[0], g.nodes[1].outputs[0]);
  EXPECT_EQ(g.value(g.nodes[3].outputs[0]).name, "out");
  EXPECT_EQ(g.outputs[0], g.nodes[3].outputs[0]);
  // Internal values are distinct per call.
  EXPECT_NE(g.value(g.nodes[0].outputs[0]).name, g.value(g.nodes[2].outputs[0]).name);
  EXPECT_NE(g.value(g.nodes[0].outputs[0]).name, "t");
}

TEST(OnnxImporter, RecursiveFunctionsAreRejected) {
  FunctionSpec fn;
  fn.name = "Loop";
  fn.domain = "com.local";
  fn.inputs = {"X"};
  fn.outputs = {"Y"};
  fn.nodes = {{"Loop", {"X"}, {"Y"}, "again", "com.local", {}}};
  ModelSpec m = small_model();
  m.opsets.push_back({"com.local", 1});
  m.functions = {fn};
  m.graph.nodes[2] = {"Loop", {"sum"}, {"y"}, "call", "com.local", {}};
  expect_error([&] { import_spec(m); }, ErrorCode::kCorruptFile, {"Loop", "calls itself"});
}

TEST(OnnxImporter, Opset17ReduceMeanAxesAttributeBecomesAnInput) {
  ModelSpec m;
  m.opsets = {{"", 17}};
  m.graph.inputs = {{"x", kOnnxFloat, true, {2, 3, 4}}};
  m.graph.outputs = {{"y", kOnnxFloat, true, {2, 4}}};
  m.graph.nodes = {
      {"ReduceMean",
       {"x"},
       {"y"},
       "mean",
       "",
       {attr_ints("axes", {1}), attr_int("keepdims", 0), attr_int("noop_with_empty_axes", 0)}}};
  const ir::Graph g = import_spec(m);
  ASSERT_EQ(g.nodes.size(), 1u);
  const ir::Node& node = g.nodes[0];
  ASSERT_EQ(node.inputs.size(), 2u);
  EXPECT_TRUE(g.is_constant(node.inputs[1]));
  EXPECT_EQ(g.value(node.inputs[1]).dtype, DType::kInt64);
  EXPECT_EQ(g.value(node.inputs[1]).shape, Shape{1});
  EXPECT_EQ(constant_values<int64_t>(g, node.inputs[1]), (std::vector<int64_t>{1}));
  EXPECT_FALSE(node.attrs.has("axes"));
  EXPECT_FALSE(node.attrs.has("noop_with_empty_axes"));  // default, dropped
  EXPECT_EQ(node.attrs.get_int("keepdims"), 0);
}

TEST(OnnxImporter, AttributeFormsOfSplitSqueezeAndClipBecomeInputs) {
  ModelSpec m;
  m.graph.inputs = {{"x", kOnnxFloat, true, {1, 6}}};
  m.graph.outputs = {{"c", kOnnxFloat, true, {}}, {"b", kOnnxFloat, true, {}}};
  m.graph.nodes = {
      {"Split", {"x"}, {"a", "b"}, "split", "", {attr_int("axis", 1), attr_ints("split", {2, 4})}},
      {"Squeeze", {"a"}, {"sq"}, "squeeze", "", {attr_ints("axes", {0})}},
      {"Clip", {"sq"}, {"c"}, "clip", "", {attr_float("max", 6.0f)}}};
  const ir::Graph g = import_spec(m);
  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(constant_values<int64_t>(g, g.nodes[0].inputs.at(1)), (std::vector<int64_t>{2, 4}));
  EXPECT_FALSE(g.nodes[0].attrs.has("split"));
  EXPECT_EQ(g.nodes[0].attrs.get_int("axis"), 1);
  EXPECT_EQ(constant_values<int64_t>(g, g.nodes[1].inputs.at(1)), (std::vector<int64_t>{0}));
  const ir::Node& clip = g.nodes[2];
  ASSERT_EQ(clip.inputs.size(), 3u);
  EXPECT_EQ(clip.inputs[1], ir::kNoValue);  // no min
  EXPECT_EQ(constant_values<float>(g, clip.inputs[2]), (std::vector<float>{6.0f}));
  EXPECT_EQ(clip.attrs.size(), 0u);
}

TEST(OnnxImporter, Opset18ReduceMeanInputFormIsKept) {
  ModelSpec m;
  m.opsets = {{"", 18}};
  m.graph.inputs = {{"x", kOnnxFloat, true, {2, 3}}};
  m.graph.outputs = {{"y", kOnnxFloat, true, {2, 1}}};
  m.graph.initializers = {raw_int64_tensor("axes", {1}, {1})};
  m.graph.nodes = {{"ReduceMean", {"x", "axes"}, {"y"}, "mean", "", {}}};
  const ir::Graph g = import_spec(m);
  ASSERT_EQ(g.nodes[0].inputs.size(), 2u);
  EXPECT_EQ(g.nodes[0].inputs[1], find_value(g, "axes"));
}

TEST(OnnxImporter, NodesOutOfOrderAreSortedAndCyclesRejected) {
  ModelSpec m = small_model();
  std::swap(m.graph.nodes[0], m.graph.nodes[2]);  // Relu first, MatMul last
  const ir::Graph g = import_spec(m);
  ASSERT_EQ(g.nodes.size(), 3u);
  EXPECT_EQ(g.nodes[0].op_type, "MatMul");
  EXPECT_EQ(g.nodes[1].op_type, "Add");
  EXPECT_EQ(g.nodes[2].op_type, "Relu");
  EXPECT_NO_THROW(g.verify());

  ModelSpec cycle = small_model();
  cycle.graph.nodes[0].inputs[0] = "y";
  expect_error([&] { import_spec(cycle); }, ErrorCode::kCorruptFile, {"cycle"});
}

TEST(OnnxImporter, DanglingReferencesAreCorrupt) {
  ModelSpec missing_input = small_model();
  missing_input.graph.nodes[1].inputs[1] = "nowhere";
  expect_error([&] { import_spec(missing_input); }, ErrorCode::kCorruptFile,
               {"node 'add'", "'nowhere'"});
  ModelSpec missing_output = small_model();
  missing_output.graph.outputs.push_back({"ghost", kOnnxFloat, true, {1}});
  expect_error([&] { import_spec(missing_output); }, ErrorCode::kCorruptFile,
               {"graph output 'ghost'"});
  ModelSpec twice = small_model();
  twice.graph.nodes[1].outputs[0] = "xw";
  expect_error([&] { import_spec(twice); }, ErrorCode::kCorruptFile, {"'xw'", "twice"});
}

TEST(OnnxImporter, AbsentOptionalInputsAndOutputs) {
  ModelSpec m = small_model();
  // Clip(x, "", max) keeps the gap; a trailing "" input is dropped; a "" output before a used one
  // gets a placeholder value.
  m.graph.initializers.push_back(raw_float_tensor("hi", {}, {6.0f}));
  m.graph.nodes.push_back({"Clip", {"y", "", "hi", ""}, {"clipped"}, "clip", "", {}});
  m.graph.nodes.push_back({"Split",
                           {"clipped"},
                           {"", "second"},
                           "split",
                           "",
                           {attr_int("axis", 1), attr_int("num_outputs", 2)}});
  m.graph.outputs = {{"second", kOnnxFloat, true, {"batch", 2}}};
  const ir::Graph g = import_spec(m);
  ASSERT_EQ(g.nodes.size(), 5u);
  EXPECT_EQ(g.nodes[3].inputs,
            (std::vector<ir::ValueId>{g.nodes[2].outputs[0], ir::kNoValue, find_value(g, "hi")}));
  ASSERT_EQ(g.nodes[4].outputs.size(), 2u);
  EXPECT_FALSE(g.value(g.nodes[4].outputs[0]).name.empty());
  EXPECT_EQ(g.value(g.nodes[4].outputs[1]).name, "second");
}

TEST(OnnxImporter, TruncatedAndMutatedModelsNeverCrash) {
  ModelSpec m = small_model();
  m.opsets.push_back({"com.local", 1});
  m.graph.nodes[1].attributes.push_back(attr_ints("unused", {1, 2, 3}));
  m.graph.initializers.push_back(raw_int64_tensor("ints", {2}, {5, 6}));
  const std::vector<uint8_t> valid = m.encode();
  ASSERT_NO_THROW(import_model_bytes(valid, ImportOptions{}));

  size_t failures = 0;
  auto attempt = [&](const std::vector<uint8_t>& bytes) {
    try {
      import_model_bytes(bytes, ImportOptions{});
    } catch (const Error&) {
      ++failures;
    }
  };
  for (size_t n = 0; n < valid.size(); ++n) {
    attempt(std::vector<uint8_t>(valid.begin(), valid.begin() + static_cast<std::ptrdiff_t>(n)));
  }
  // Most prefixes cut a message short; all of them must fail cleanly (or import).
  EXPECT_GT(failures, valid.size() / 2);

  std::mt19937 rng(1234);
  std::uniform_int_distribution<size_t> pos(0, valid.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> flips(1, 4);
  for (int iteration = 0; iteration < 3000; ++iteration) {
    std::vector<uint8_t> mutated = valid;
    for (int k = flips(rng); k > 0; --k) mutated[pos(rng)] = static_cast<uint8_t>(byte(rng));
    attempt(mutated);
  }
  // Pure garbage.
  for (int iteration = 0; iteration < 300; ++iteration) {
    std::vector<uint8_t> garbage(static_cast<size_t>(byte(rng)) + 1);
    for (uint8_t& b : garbage) b = static_cast<uint8_t>(byte(rng));
    attempt(garbage);
  }
  expect_error([] { import_model_bytes(std::vector<uint8_t>{}, ImportOptions{}); },
               ErrorCode::kCorruptFile, {"no graph"});
}

}  // namespace
}  // namespace kiln::onnx
