// Plain structs for the parts of the ONNX schema (onnx/onnx.proto) kiln reads, and their decoder.
// Fields kiln never uses are skipped; messages kiln rejects (sparse tensors, type protos inside
// attributes) are only counted so the importer can report them. Subgraphs (If/Loop/Scan bodies)
// are decoded: the importer resolves them at build time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kiln::onnx::proto {

struct StringStringEntry {
  std::string key;
  std::string value;
};

struct OperatorSetId {
  std::string domain;
  int64_t version = 0;
};

// TensorProto.DataType values used by the decoder beyond kiln::DType's.
inline constexpr int32_t kDataTypeUndefined = 0;
inline constexpr int32_t kDataLocationExternal = 1;

struct Tensor {
  std::vector<int64_t> dims;
  int32_t data_type = kDataTypeUndefined;
  std::string name;
  bool has_segment = false;
  std::vector<float> float_data;
  std::vector<int32_t> int32_data;
  size_t string_data_count = 0;
  std::vector<int64_t> int64_data;
  std::vector<double> double_data;
  std::vector<uint64_t> uint64_data;
  bool has_raw_data = false;
  std::span<const uint8_t> raw_data;  // borrowed from the model bytes
  std::vector<StringStringEntry> external_data;
  int32_t data_location = 0;
  std::string path;  // where the tensor was decoded, for error messages
};

struct TensorShapeDimension {
  enum class Kind { kNone, kValue, kParam } kind = Kind::kNone;
  int64_t value = 0;
  std::string param;
};

struct TensorShape {
  std::vector<TensorShapeDimension> dims;
};

struct TypeProto {
  // Which member of TypeProto's `value` oneof is set.
  enum class Kind { kNone, kTensor, kSequence, kMap, kOptional, kSparseTensor, kOpaque };
  Kind kind = Kind::kNone;
  int32_t elem_type = kDataTypeUndefined;  // kTensor only
  bool has_shape = false;
  TensorShape shape;
};

struct ValueInfo {
  std::string name;
  bool has_type = false;
  TypeProto type;
};

struct Graph;

struct Attribute {
  // AttributeProto.AttributeType values.
  enum Type : int32_t {
    kUndefined = 0,
    kFloat = 1,
    kInt = 2,
    kString = 3,
    kTensor = 4,
    kGraph = 5,
    kFloats = 6,
    kInts = 7,
    kStrings = 8,
    kTensors = 9,
    kGraphs = 10,
    kSparseTensor = 11,
    kSparseTensors = 12,
    kTypeProto = 13,
    kTypeProtos = 14,
  };

  std::string name;
  std::string ref_attr_name;
  int32_t type = kUndefined;  // after decoding, inferred from the set field when the file omits it
  float f = 0.0f;
  int64_t i = 0;
  std::string s;
  std::shared_ptr<Tensor> t;  // set for TENSOR
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;
  std::shared_ptr<const Graph> g;                    // set for GRAPH
  std::vector<std::shared_ptr<const Graph>> graphs;  // GRAPHS
  size_t graph_count = 0;                            // g and graphs
  // Present but not decoded: kiln does not support these attribute kinds.
  size_t sparse_tensor_count = 0;  // sparse_tensor and sparse_tensors
  size_t type_proto_count = 0;     // tp and type_protos
};

struct Node {
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::string name;
  std::string op_type;
  std::string domain;
  std::string overload;
  std::vector<Attribute> attributes;
};

struct Graph {
  std::vector<Node> nodes;
  std::string name;
  std::vector<Tensor> initializers;
  size_t sparse_initializer_count = 0;
  std::vector<ValueInfo> inputs;
  std::vector<ValueInfo> outputs;
  std::vector<ValueInfo> value_infos;
};

struct Function {
  std::string name;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<std::string> attribute_names;   // attributes without defaults
  std::vector<Attribute> attribute_defaults;  // attribute_proto: attributes with defaults
  std::vector<Node> nodes;
  std::vector<OperatorSetId> opset_imports;
  std::string domain;
  std::string overload;
  std::vector<ValueInfo> value_infos;
};

struct Model {
  int64_t ir_version = 0;
  std::vector<OperatorSetId> opset_imports;
  std::string producer_name;
  std::string producer_version;
  std::string domain;
  int64_t model_version = 0;
  bool has_graph = false;
  Graph graph;
  std::vector<StringStringEntry> metadata_props;
  std::vector<Function> functions;
};

// Subgraphs nested deeper than this are refused as corrupt (guards the decoder's recursion).
inline constexpr int kMaxSubgraphDepth = 64;

// Decodes ModelProto bytes. Throws kiln::Error(kCorruptFile) "<source>: <field path>: <problem>"
// for malformed input. The result borrows raw tensor bytes from `bytes` (Tensor::raw_data), so
// `bytes` must outlive it.
Model parse_model(std::span<const uint8_t> bytes, const std::string& source);

}  // namespace kiln::onnx::proto
