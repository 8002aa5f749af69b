// Field numbers below are those of onnx/onnx.proto (ONNX 1.x; they never change once published).
#include "frontend/onnx/onnx_proto.hpp"

#include "base/error.hpp"
#include "frontend/onnx/protobuf_reader.hpp"

namespace kiln::onnx::proto {
namespace {

using pb::Field;
using pb::MessageReader;

int64_t as_index(size_t count) {
  return static_cast<int64_t>(count);
}

StringStringEntry parse_string_string_entry(MessageReader r) {
  StringStringEntry entry;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        entry.key = r.read_string(f, "key");
        break;
      case 2:
        entry.value = r.read_string(f, "value");
        break;
      default:
        break;
    }
  }
  return entry;
}

OperatorSetId parse_operator_set_id(MessageReader r) {
  OperatorSetId id;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        id.domain = r.read_string(f, "domain");
        break;
      case 2:
        id.version = r.read_int64(f, "version");
        break;
      default:
        break;
    }
  }
  return id;
}

Tensor parse_tensor(MessageReader r) {
  Tensor t;
  t.path = r.path();
  Field f;
  size_t external_count = 0;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        r.append_int64s(f, "dims", t.dims);
        break;
      case 2:
        t.data_type = r.read_int32(f, "data_type");
        break;
      case 3:
        r.read_bytes(f, "segment");
        t.has_segment = true;
        break;
      case 4:
        r.append_floats(f, "float_data", t.float_data);
        break;
      case 5:
        r.append_int32s(f, "int32_data", t.int32_data);
        break;
      case 6:
        r.read_bytes(f, "string_data");
        ++t.string_data_count;
        break;
      case 7:
        r.append_int64s(f, "int64_data", t.int64_data);
        break;
      case 8:
        t.name = r.read_string(f, "name");
        break;
      case 9:
        t.raw_data = r.read_bytes(f, "raw_data");
        t.has_raw_data = true;
        break;
      case 10:
        r.append_doubles(f, "double_data", t.double_data);
        break;
      case 11:
        r.append_uint64s(f, "uint64_data", t.uint64_data);
        break;
      case 13:
        t.external_data.push_back(
            parse_string_string_entry(r.child(f, "external_data", as_index(external_count++))));
        break;
      case 14:
        t.data_location = r.read_int32(f, "data_location");
        break;
      default:
        break;
    }
  }
  return t;
}

TensorShape parse_tensor_shape(MessageReader r) {
  TensorShape shape;
  Field f;
  while (r.next(f)) {
    if (f.number != 1) continue;
    MessageReader dim_reader = r.child(f, "dim", as_index(shape.dims.size()));
    TensorShapeDimension dim;
    Field g;
    while (dim_reader.next(g)) {
      switch (g.number) {
        case 1:
          dim.kind = TensorShapeDimension::Kind::kValue;
          dim.value = dim_reader.read_int64(g, "dim_value");
          break;
        case 2:
          dim.kind = TensorShapeDimension::Kind::kParam;
          dim.param = dim_reader.read_string(g, "dim_param");
          break;
        default:
          break;
      }
    }
    shape.dims.push_back(std::move(dim));
  }
  return shape;
}

void parse_tensor_type(MessageReader r, TypeProto& type) {
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        type.elem_type = r.read_int32(f, "elem_type");
        break;
      case 2:
        type.shape = parse_tensor_shape(r.child(f, "shape"));
        type.has_shape = true;
        break;
      default:
        break;
    }
  }
}

TypeProto parse_type(MessageReader r) {
  TypeProto type;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        type.kind = TypeProto::Kind::kTensor;
        parse_tensor_type(r.child(f, "tensor_type"), type);
        break;
      // Non-tensor types are recorded so the importer can reject them by name.
      case 4:
        r.read_bytes(f, "sequence_type");
        type.kind = TypeProto::Kind::kSequence;
        break;
      case 5:
        r.read_bytes(f, "map_type");
        type.kind = TypeProto::Kind::kMap;
        break;
      case 7:
        r.read_bytes(f, "opaque_type");
        type.kind = TypeProto::Kind::kOpaque;
        break;
      case 8:
        r.read_bytes(f, "sparse_tensor_type");
        type.kind = TypeProto::Kind::kSparseTensor;
        break;
      case 9:
        r.read_bytes(f, "optional_type");
        type.kind = TypeProto::Kind::kOptional;
        break;
      default:
        break;
    }
  }
  return type;
}

ValueInfo parse_value_info(MessageReader r) {
  ValueInfo info;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        info.name = r.read_string(f, "name");
        break;
      case 2:
        info.type = parse_type(r.child(f, "type"));
        info.has_type = true;
        break;
      default:
        break;
    }
  }
  return info;
}

// Files written before AttributeProto.type existed leave it out; the set field tells the kind.
int32_t infer_attribute_type(const Attribute& a, bool has_f, bool has_i, bool has_s) {
  if (a.t) return Attribute::kTensor;
  if (a.graph_count) return Attribute::kGraph;
  if (a.sparse_tensor_count) return Attribute::kSparseTensor;
  if (a.type_proto_count) return Attribute::kTypeProto;
  if (!a.floats.empty()) return Attribute::kFloats;
  if (!a.ints.empty()) return Attribute::kInts;
  if (!a.strings.empty()) return Attribute::kStrings;
  if (!a.tensors.empty()) return Attribute::kTensors;
  if (has_f) return Attribute::kFloat;
  if (has_i) return Attribute::kInt;
  if (has_s) return Attribute::kString;
  return Attribute::kUndefined;
}

Graph parse_graph(MessageReader r, int depth);

Attribute parse_attribute(MessageReader r, int depth) {
  Attribute a;
  bool has_f = false, has_i = false, has_s = false;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        a.name = r.read_string(f, "name");
        break;
      case 2:
        a.f = r.read_float(f, "f");
        has_f = true;
        break;
      case 3:
        a.i = r.read_int64(f, "i");
        has_i = true;
        break;
      case 4:
        a.s = r.read_string(f, "s");
        has_s = true;
        break;
      case 5:
        a.t = std::make_shared<Tensor>(parse_tensor(r.child(f, "t")));
        break;
      case 6:
      case 11: {
        if (depth >= kMaxSubgraphDepth) {
          r.fail(detail::concat("subgraphs nested deeper than ", kMaxSubgraphDepth, " levels"));
        }
        auto graph = std::make_shared<const Graph>(
            parse_graph(f.number == 6 ? r.child(f, "g") : r.child(f, "graphs", as_index(a.graphs.size())),
                        depth + 1));
        if (f.number == 6) {
          a.g = std::move(graph);
        } else {
          a.graphs.push_back(std::move(graph));
        }
        ++a.graph_count;
        break;
      }
      case 7:
        r.append_floats(f, "floats", a.floats);
        break;
      case 8:
        r.append_int64s(f, "ints", a.ints);
        break;
      case 9:
        a.strings.push_back(r.read_string(f, "strings"));
        break;
      case 10:
        a.tensors.push_back(parse_tensor(r.child(f, "tensors", as_index(a.tensors.size()))));
        break;
      case 14:
      case 15:
        r.read_bytes(f, f.number == 14 ? "tp" : "type_protos");
        ++a.type_proto_count;
        break;
      case 20:
        a.type = r.read_int32(f, "type");
        break;
      case 21:
        a.ref_attr_name = r.read_string(f, "ref_attr_name");
        break;
      case 22:
      case 23:
        r.read_bytes(f, f.number == 22 ? "sparse_tensor" : "sparse_tensors");
        ++a.sparse_tensor_count;
        break;
      default:
        break;
    }
  }
  if (a.type == Attribute::kUndefined) a.type = infer_attribute_type(a, has_f, has_i, has_s);
  return a;
}

Node parse_node(MessageReader r, int depth) {
  Node node;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        node.inputs.push_back(r.read_string(f, "input"));
        break;
      case 2:
        node.outputs.push_back(r.read_string(f, "output"));
        break;
      case 3:
        node.name = r.read_string(f, "name");
        break;
      case 4:
        node.op_type = r.read_string(f, "op_type");
        break;
      case 5:
        node.attributes.push_back(
            parse_attribute(r.child(f, "attribute", as_index(node.attributes.size())), depth));
        break;
      case 7:
        node.domain = r.read_string(f, "domain");
        break;
      case 8:
        node.overload = r.read_string(f, "overload");
        break;
      default:
        break;
    }
  }
  return node;
}

Graph parse_graph(MessageReader r, int depth) {
  Graph g;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        g.nodes.push_back(parse_node(r.child(f, "node", as_index(g.nodes.size())), depth));
        break;
      case 2:
        g.name = r.read_string(f, "name");
        break;
      case 5:
        g.initializers.push_back(
            parse_tensor(r.child(f, "initializer", as_index(g.initializers.size()))));
        break;
      case 11:
        g.inputs.push_back(parse_value_info(r.child(f, "input", as_index(g.inputs.size()))));
        break;
      case 12:
        g.outputs.push_back(parse_value_info(r.child(f, "output", as_index(g.outputs.size()))));
        break;
      case 13:
        g.value_infos.push_back(
            parse_value_info(r.child(f, "value_info", as_index(g.value_infos.size()))));
        break;
      case 15:
        r.read_bytes(f, "sparse_initializer");
        ++g.sparse_initializer_count;
        break;
      default:
        break;
    }
  }
  return g;
}

Function parse_function(MessageReader r) {
  Function fn;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        fn.name = r.read_string(f, "name");
        break;
      case 4:
        fn.inputs.push_back(r.read_string(f, "input"));
        break;
      case 5:
        fn.outputs.push_back(r.read_string(f, "output"));
        break;
      case 6:
        fn.attribute_names.push_back(r.read_string(f, "attribute"));
        break;
      case 7:
        fn.nodes.push_back(parse_node(r.child(f, "node", as_index(fn.nodes.size())), 0));
        break;
      case 9:
        fn.opset_imports.push_back(
            parse_operator_set_id(r.child(f, "opset_import", as_index(fn.opset_imports.size()))));
        break;
      case 10:
        fn.domain = r.read_string(f, "domain");
        break;
      case 11:
        fn.attribute_defaults.push_back(
            parse_attribute(r.child(f, "attribute_proto", as_index(fn.attribute_defaults.size())), 0));
        break;
      case 12:
        fn.value_infos.push_back(
            parse_value_info(r.child(f, "value_info", as_index(fn.value_infos.size()))));
        break;
      case 13:
        fn.overload = r.read_string(f, "overload");
        break;
      default:
        break;
    }
  }
  return fn;
}

}  // namespace

Model parse_model(std::span<const uint8_t> bytes, const std::string& source) {
  MessageReader r(bytes, source, "ModelProto");
  Model m;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        m.ir_version = r.read_int64(f, "ir_version");
        break;
      case 2:
        m.producer_name = r.read_string(f, "producer_name");
        break;
      case 3:
        m.producer_version = r.read_string(f, "producer_version");
        break;
      case 4:
        m.domain = r.read_string(f, "domain");
        break;
      case 5:
        m.model_version = r.read_int64(f, "model_version");
        break;
      case 7:
        // Protobuf would merge a repeated occurrence; ONNX writers emit one graph, the last wins.
        m.graph = parse_graph(r.child(f, "graph"), 0);
        m.has_graph = true;
        break;
      case 8:
        m.opset_imports.push_back(
            parse_operator_set_id(r.child(f, "opset_import", as_index(m.opset_imports.size()))));
        break;
      case 14:
        m.metadata_props.push_back(parse_string_string_entry(
            r.child(f, "metadata_props", as_index(m.metadata_props.size()))));
        break;
      case 25:
        m.functions.push_back(
            parse_function(r.child(f, "functions", as_index(m.functions.size()))));
        break;
      default:
        break;
    }
  }
  return m;
}

}  // namespace kiln::onnx::proto
