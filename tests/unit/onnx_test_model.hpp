// Test helper: a tiny protobuf wire-format writer and ONNX message builders, so importer tests can
// construct ModelProto bytes in C++ without the protobuf or onnx libraries. Field numbers follow
// onnx/onnx.proto.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::onnx::testing {

class ProtoWriter {
 public:
  ProtoWriter& varint(uint32_t field, uint64_t value) {
    key(field, 0);
    put_varint(value);
    return *this;
  }
  ProtoWriter& int64(uint32_t field, int64_t value) {
    return varint(field, static_cast<uint64_t>(value));
  }
  ProtoWriter& fixed32(uint32_t field, uint32_t bits) {
    key(field, 5);
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<uint8_t>(bits >> (8 * i)));
    return *this;
  }
  ProtoWriter& fixed64(uint32_t field, uint64_t bits) {
    key(field, 1);
    for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<uint8_t>(bits >> (8 * i)));
    return *this;
  }
  ProtoWriter& float32(uint32_t field, float value) {
    return fixed32(field, std::bit_cast<uint32_t>(value));
  }
  ProtoWriter& float64(uint32_t field, double value) {
    return fixed64(field, std::bit_cast<uint64_t>(value));
  }
  ProtoWriter& bytes(uint32_t field, const void* data, size_t size) {
    key(field, 2);
    put_varint(size);
    const auto* p = static_cast<const uint8_t*>(data);
    bytes_.insert(bytes_.end(), p, p + size);
    return *this;
  }
  ProtoWriter& string(uint32_t field, std::string_view value) {
    return bytes(field, value.data(), value.size());
  }
  ProtoWriter& message(uint32_t field, const ProtoWriter& sub) {
    return bytes(field, sub.data().data(), sub.data().size());
  }
  // Repeated varints, packed (one length-delimited field) or unpacked (one field each).
  ProtoWriter& int64s(uint32_t field, const std::vector<int64_t>& values, bool packed) {
    if (!packed) {
      for (int64_t v : values) int64(field, v);
      return *this;
    }
    ProtoWriter payload;
    for (int64_t v : values) payload.put_varint(static_cast<uint64_t>(v));
    return message(field, payload);
  }
  ProtoWriter& floats(uint32_t field, const std::vector<float>& values, bool packed) {
    if (!packed) {
      for (float v : values) float32(field, v);
      return *this;
    }
    std::vector<uint8_t> payload(values.size() * 4);
    if (!values.empty()) std::memcpy(payload.data(), values.data(), payload.size());
    return bytes(field, payload.data(), payload.size());
  }
  ProtoWriter& doubles(uint32_t field, const std::vector<double>& values, bool packed) {
    if (!packed) {
      for (double v : values) float64(field, v);
      return *this;
    }
    std::vector<uint8_t> payload(values.size() * 8);
    if (!values.empty()) std::memcpy(payload.data(), values.data(), payload.size());
    return bytes(field, payload.data(), payload.size());
  }
  ProtoWriter& raw(const std::vector<uint8_t>& raw_bytes) {
    bytes_.insert(bytes_.end(), raw_bytes.begin(), raw_bytes.end());
    return *this;
  }
  void key(uint32_t field, uint32_t wire_type) {
    put_varint((static_cast<uint64_t>(field) << 3) | wire_type);
  }
  void put_varint(uint64_t value) {
    while (value >= 0x80) {
      bytes_.push_back(static_cast<uint8_t>(value | 0x80));
      value >>= 7;
    }
    bytes_.push_back(static_cast<uint8_t>(value));
  }
  const std::vector<uint8_t>& data() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// ONNX TensorProto.DataType numbers used by the tests.
enum OnnxType : int32_t {
  kOnnxFloat = 1,
  kOnnxUInt8 = 2,
  kOnnxInt8 = 3,
  kOnnxUInt16 = 4,
  kOnnxInt32 = 6,
  kOnnxInt64 = 7,
  kOnnxString = 8,
  kOnnxBool = 9,
  kOnnxFloat16 = 10,
  kOnnxDouble = 11,
  kOnnxUInt32 = 12,
  kOnnxUInt64 = 13,
  kOnnxComplex64 = 14,
  kOnnxBFloat16 = 16,
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> dims;
  int32_t data_type = kOnnxFloat;
  bool has_raw = false;
  std::vector<uint8_t> raw;
  std::vector<float> float_data;
  std::vector<int32_t> int32_data;
  std::vector<int64_t> int64_data;
  std::vector<double> double_data;
  std::vector<uint64_t> uint64_data;  // uint32 and uint64 values
  bool packed = true;
  std::vector<std::pair<std::string, std::string>> external_data;  // key, value
  bool external = false;

  ProtoWriter encode() const {
    ProtoWriter w;
    w.int64s(1, dims, packed);
    w.varint(2, static_cast<uint64_t>(data_type));
    if (!float_data.empty()) w.floats(4, float_data, packed);
    if (!int32_data.empty()) {
      std::vector<int64_t> widened(int32_data.begin(), int32_data.end());
      w.int64s(5, widened, packed);
    }
    if (!int64_data.empty()) w.int64s(7, int64_data, packed);
    w.string(8, name);
    if (has_raw) w.bytes(9, raw.data(), raw.size());
    if (!double_data.empty()) w.doubles(10, double_data, packed);
    if (!uint64_data.empty()) {
      // Varints of the same bits: the int64 writer encodes them as uint64 anyway.
      std::vector<int64_t> bits(uint64_data.size());
      for (size_t i = 0; i < bits.size(); ++i) bits[i] = static_cast<int64_t>(uint64_data[i]);
      w.int64s(11, bits, packed);
    }
    for (const auto& [k, v] : external_data) {
      w.message(13, ProtoWriter().string(1, k).string(2, v));
    }
    if (external) w.varint(14, 1);
    return w;
  }
};

template <typename T>
std::vector<uint8_t> to_bytes(const std::vector<T>& values) {
  std::vector<uint8_t> out(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

inline TensorSpec raw_float_tensor(std::string name, std::vector<int64_t> dims,
                                   const std::vector<float>& values) {
  TensorSpec t;
  t.name = std::move(name);
  t.dims = std::move(dims);
  t.data_type = kOnnxFloat;
  t.has_raw = true;
  t.raw = to_bytes(values);
  return t;
}

inline TensorSpec raw_int64_tensor(std::string name, std::vector<int64_t> dims,
                                   const std::vector<int64_t>& values) {
  TensorSpec t;
  t.name = std::move(name);
  t.dims = std::move(dims);
  t.data_type = kOnnxInt64;
  t.has_raw = true;
  t.raw = to_bytes(values);
  return t;
}

struct AttributeSpec {
  // AttributeProto.AttributeType numbers.
  enum Type : int32_t {
    kFloat = 1,
    kInt = 2,
    kString = 3,
    kTensor = 4,
    kGraph = 5,
    kFloats = 6,
    kInts = 7,
    kStrings = 8,
    kSparseTensor = 11,
  };
  std::string name;
  int32_t type = kInt;
  float f = 0.0f;
  int64_t i = 0;
  std::string s;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::shared_ptr<TensorSpec> tensor;
  std::string ref_attr_name;
  bool packed = true;

  ProtoWriter encode() const {
    ProtoWriter w;
    w.string(1, name);
    w.varint(20, static_cast<uint64_t>(type));
    if (!ref_attr_name.empty()) {
      w.string(21, ref_attr_name);
      return w;
    }
    switch (type) {
      case kFloat:
        w.float32(2, f);
        break;
      case kInt:
        w.int64(3, i);
        break;
      case kString:
        w.string(4, s);
        break;
      case kTensor:
        w.message(5, tensor->encode());
        break;
      case kGraph:
        w.message(6, ProtoWriter().string(2, "subgraph"));
        break;
      case kFloats:
        w.floats(7, floats, packed);
        break;
      case kInts:
        w.int64s(8, ints, packed);
        break;
      case kStrings:
        for (const std::string& v : strings) w.string(9, v);
        break;
      case kSparseTensor:
        w.message(22, ProtoWriter().int64s(3, {2}, true));
        break;
      default:
        break;
    }
    return w;
  }
};

inline AttributeSpec attr_int(std::string name, int64_t v) {
  AttributeSpec a;
  a.name = std::move(name);
  a.type = AttributeSpec::kInt;
  a.i = v;
  return a;
}
inline AttributeSpec attr_float(std::string name, float v) {
  AttributeSpec a;
  a.name = std::move(name);
  a.type = AttributeSpec::kFloat;
  a.f = v;
  return a;
}
inline AttributeSpec attr_string(std::string name, std::string v) {
  AttributeSpec a;
  a.name = std::move(name);
  a.type = AttributeSpec::kString;
  a.s = std::move(v);
  return a;
}
inline AttributeSpec attr_ints(std::string name, std::vector<int64_t> v, bool packed = true) {
  AttributeSpec a;
  a.name = std::move(name);
  a.type = AttributeSpec::kInts;
  a.ints = std::move(v);
  a.packed = packed;
  return a;
}
inline AttributeSpec attr_floats(std::string name, std::vector<float> v) {
  AttributeSpec a;
  a.name = std::move(name);
  a.type = AttributeSpec::kFloats;
  a.floats = std::move(v);
  return a;
}
inline AttributeSpec attr_tensor(std::string name, TensorSpec t) {
  AttributeSpec a;
  a.name = std::move(name);
  a.type = AttributeSpec::kTensor;
  a.tensor = std::make_shared<TensorSpec>(std::move(t));
  return a;
}
inline AttributeSpec attr_ref(std::string name, int32_t type, std::string ref) {
  AttributeSpec a;
  a.name = std::move(name);
  a.type = type;
  a.ref_attr_name = std::move(ref);
  return a;
}

struct NodeSpec {
  std::string op_type;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::string name;
  std::string domain;
  std::vector<AttributeSpec> attributes;

  ProtoWriter encode() const {
    ProtoWriter w;
    for (const std::string& in : inputs) w.string(1, in);
    for (const std::string& out : outputs) w.string(2, out);
    if (!name.empty()) w.string(3, name);
    w.string(4, op_type);
    for (const AttributeSpec& a : attributes) w.message(5, a.encode());
    if (!domain.empty()) w.string(7, domain);
    return w;
  }
};

// A dimension: a value (>= 0), a dim_param (non-empty param), or neither.
struct DimSpec {
  int64_t value = -1;
  std::string param;
  DimSpec(int64_t v) : value(v) {}      // NOLINT: implicit for brevity in tests
  DimSpec(const char* p) : param(p) {}  // NOLINT
};

struct ValueInfoSpec {
  std::string name;
  int32_t elem_type = kOnnxFloat;
  bool has_shape = true;
  std::vector<DimSpec> dims;
  bool has_type = true;

  ProtoWriter encode() const {
    ProtoWriter tensor_type;
    tensor_type.varint(1, static_cast<uint64_t>(elem_type));
    if (has_shape) {
      ProtoWriter shape;
      for (const DimSpec& d : dims) {
        ProtoWriter dim;
        if (!d.param.empty())
          dim.string(2, d.param);
        else if (d.value >= 0)
          dim.int64(1, d.value);
        shape.message(1, dim);
      }
      tensor_type.message(2, shape);
    }
    ProtoWriter w;
    w.string(1, name);
    if (has_type) w.message(2, ProtoWriter().message(1, tensor_type));
    return w;
  }
};

struct GraphSpec {
  std::string name = "test_graph";
  std::vector<NodeSpec> nodes;
  std::vector<TensorSpec> initializers;
  std::vector<ValueInfoSpec> inputs;
  std::vector<ValueInfoSpec> outputs;
  std::vector<ValueInfoSpec> value_infos;

  ProtoWriter encode() const {
    ProtoWriter w;
    for (const NodeSpec& n : nodes) w.message(1, n.encode());
    w.string(2, name);
    for (const TensorSpec& t : initializers) w.message(5, t.encode());
    for (const ValueInfoSpec& v : inputs) w.message(11, v.encode());
    for (const ValueInfoSpec& v : outputs) w.message(12, v.encode());
    for (const ValueInfoSpec& v : value_infos) w.message(13, v.encode());
    return w;
  }
};

struct FunctionSpec {
  std::string name;
  std::string domain;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<std::string> attributes;
  std::vector<AttributeSpec> attribute_defaults;
  std::vector<NodeSpec> nodes;
  std::vector<std::pair<std::string, int64_t>> opsets;

  ProtoWriter encode() const {
    ProtoWriter w;
    w.string(1, name);
    for (const std::string& in : inputs) w.string(4, in);
    for (const std::string& out : outputs) w.string(5, out);
    for (const std::string& a : attributes) w.string(6, a);
    for (const NodeSpec& n : nodes) w.message(7, n.encode());
    for (const auto& [domain_name, version] : opsets) {
      w.message(9, ProtoWriter().string(1, domain_name).int64(2, version));
    }
    w.string(10, domain);
    for (const AttributeSpec& a : attribute_defaults) w.message(11, a.encode());
    return w;
  }
};

struct ModelSpec {
  int64_t ir_version = 8;
  std::vector<std::pair<std::string, int64_t>> opsets = {{"", 17}};
  GraphSpec graph;
  std::vector<FunctionSpec> functions;

  std::vector<uint8_t> encode() const {
    ProtoWriter w;
    w.int64(1, ir_version);
    w.string(2, "kiln-tests");
    w.message(7, graph.encode());
    for (const auto& [domain, version] : opsets) {
      w.message(8, ProtoWriter().string(1, domain).int64(2, version));
    }
    for (const FunctionSpec& f : functions) w.message(25, f.encode());
    return w.data();
  }
};

}  // namespace kiln::onnx::testing
