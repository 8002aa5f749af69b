#include "passes/elementwise_fusion.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include "ops/fused_program.hpp"
#include "passes/pass.hpp"

namespace kiln::passes {
namespace {

using ops::FusedOpcode;

// The opcode computing `node`, or nullopt when the op (or its arity) is not fusible.
std::optional<FusedOpcode> opcode_of(const ir::Node& node) {
  static const std::unordered_map<std::string, FusedOpcode> unary = {
      {"Relu", FusedOpcode::kRelu},
      {"Sigmoid", FusedOpcode::kSigmoid},
      {"Tanh", FusedOpcode::kTanh},
      {"Erf", FusedOpcode::kErf},
      {"Exp", FusedOpcode::kExp},
      {"Log", FusedOpcode::kLog},
      {"Sqrt", FusedOpcode::kSqrt},
      {"Reciprocal", FusedOpcode::kReciprocal},
      {"Neg", FusedOpcode::kNeg},
      {"Abs", FusedOpcode::kAbs},
      {"Gelu", FusedOpcode::kGelu},
      {"HardSigmoid", FusedOpcode::kHardSigmoid},
      {"HardSwish", FusedOpcode::kHardSwish},
      {"LeakyRelu", FusedOpcode::kLeakyRelu},
  };
  static const std::unordered_map<std::string, FusedOpcode> binary = {
      {"Add", FusedOpcode::kAdd}, {"Sub", FusedOpcode::kSub}, {"Mul", FusedOpcode::kMul},
      {"Div", FusedOpcode::kDiv}, {"Pow", FusedOpcode::kPow}, {"Min", FusedOpcode::kMin},
      {"Max", FusedOpcode::kMax},
  };
  if (!node.domain.empty()) return std::nullopt;
  if (auto it = unary.find(node.op_type); it != unary.end()) {
    if (node.inputs.size() != 1) return std::nullopt;
    if (it->second == FusedOpcode::kGelu) {
      const std::string approximate = node.attrs.get_string_or("approximate", "none");
      if (approximate == "tanh") return FusedOpcode::kGeluTanh;
      if (approximate != "none") return std::nullopt;
    }
    return it->second;
  }
  if (auto it = binary.find(node.op_type); it != binary.end()) {
    const bool variadic = it->second == FusedOpcode::kMin || it->second == FusedOpcode::kMax;
    if (node.inputs.size() < 2 || (!variadic && node.inputs.size() != 2)) return std::nullopt;
    return it->second;
  }
  return std::nullopt;
}

bool is_float_dtype(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat16 || dtype == DType::kBFloat16;
}

bool is_fusible(const ir::Graph& graph, const ir::Node& node) {
  if (node.removed || node.outputs.size() != 1 || !opcode_of(node)) return false;
  const ir::Value& out = graph.value(node.outputs[0]);
  if (!is_float_dtype(out.dtype) || !shape_is_static(out.shape)) return false;
  for (ir::ValueId in : node.inputs) {
    if (in < 0) return false;
    const ir::Value& v = graph.value(in);
    if (v.dtype != out.dtype || !shape_is_static(v.shape)) return false;
  }
  return true;
}

// Numpy broadcast of two static shapes; nullopt when they do not broadcast.
std::optional<Shape> broadcast_static(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()), 1);
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t da = i < out.size() - a.size() ? 1 : a[i - (out.size() - a.size())];
    const int64_t db = i < out.size() - b.size() ? 1 : b[i - (out.size() - b.size())];
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

struct FusedCode {
  std::vector<ir::ValueId> inputs;
  std::vector<int64_t> program;
  std::vector<float> constants;
};

// Hands out the lowest free register.
class RegisterFile {
 public:
  int allocate() {
    for (int r = 0; r < ops::kFusedMaxRegisters; ++r) {
      if (!used_[r]) {
        used_[r] = true;
        return r;
      }
    }
    return -1;
  }
  void release(int r) { used_[r] = false; }

 private:
  bool used_[ops::kFusedMaxRegisters] = {};
};

// Builds the program for `members` (node indices in topological order). Numel-1 constants become
// LOAD_CONSTANT instructions when `fold_scalars`. Returns nullopt when a limit is exceeded or the
// inputs would not broadcast to the last node's output shape.
std::optional<FusedCode> emit(const ir::Graph& graph, const std::vector<int32_t>& members,
                              bool fold_scalars) {
  std::map<ir::ValueId, size_t> produced;  // value -> member position
  for (size_t m = 0; m < members.size(); ++m) {
    produced[graph.nodes[static_cast<size_t>(members[m])].outputs[0]] = m;
  }
  auto is_scalar_constant = [&](ir::ValueId v) {
    return fold_scalars && graph.is_constant(v) && graph.value(v).constant->numel() == 1;
  };

  FusedCode code;
  std::map<ir::ValueId, size_t> last_use;
  for (size_t m = 0; m < members.size(); ++m) {
    for (ir::ValueId in : graph.nodes[static_cast<size_t>(members[m])].inputs) {
      last_use[in] = m;
      if (produced.count(in) || is_scalar_constant(in)) continue;
      if (std::find(code.inputs.begin(), code.inputs.end(), in) == code.inputs.end()) {
        code.inputs.push_back(in);
      }
    }
  }
  if (code.inputs.empty() || code.inputs.size() > static_cast<size_t>(ops::kFusedMaxInputs)) {
    return std::nullopt;
  }
  const Shape& out_shape =
      graph.value(graph.nodes[static_cast<size_t>(members.back())].outputs[0]).shape;
  std::optional<Shape> shape = graph.value(code.inputs[0]).shape;
  for (size_t i = 1; i < code.inputs.size() && shape; ++i) {
    shape = broadcast_static(*shape, graph.value(code.inputs[i]).shape);
  }
  if (!shape || *shape != out_shape) return std::nullopt;

  RegisterFile registers;
  std::map<ir::ValueId, int> reg_of;
  for (ir::ValueId in : code.inputs) reg_of[in] = registers.allocate();
  int highest = static_cast<int>(code.inputs.size()) - 1;
  auto allocate = [&]() {
    const int r = registers.allocate();
    highest = std::max(highest, r);
    return r;
  };
  auto instruction = [&](FusedOpcode op, int dst, int64_t a, int64_t b) {
    code.program.insert(code.program.end(), {static_cast<int64_t>(op), dst, a, b});
  };

  for (size_t m = 0; m < members.size(); ++m) {
    const ir::Node& node = graph.nodes[static_cast<size_t>(members[m])];
    const FusedOpcode op = *opcode_of(node);
    std::vector<int> sources;
    for (ir::ValueId in : node.inputs) {
      if (!reg_of.count(in)) {  // a scalar constant, loaded on first use
        const int r = allocate();
        if (r < 0) return std::nullopt;
        code.constants.push_back(
            static_cast<float>(read_as_double(view_of(*graph.value(in).constant), 0)));
        instruction(FusedOpcode::kLoadConstant, r, static_cast<int64_t>(code.constants.size()) - 1,
                    0);
        reg_of[in] = r;
      }
      sources.push_back(reg_of.at(in));
    }
    auto release_sources = [&]() {
      for (ir::ValueId in : node.inputs) {
        auto it = reg_of.find(in);
        if (it != reg_of.end() && last_use.at(in) == m) {
          registers.release(it->second);
          reg_of.erase(it);
        }
      }
    };
    int dst = -1;
    if (sources.size() > 2) {  // variadic Min/Max: a left fold into a fresh register
      dst = allocate();
      if (dst < 0) return std::nullopt;
      instruction(op, dst, sources[0], sources[1]);
      for (size_t s = 2; s < sources.size(); ++s) instruction(op, dst, dst, sources[s]);
      release_sources();
    } else {
      release_sources();  // the destination may reuse a source: each element is read, then written
      dst = allocate();
      if (dst < 0) return std::nullopt;
      int64_t b = sources.size() > 1 ? sources[1] : 0;
      if (op == FusedOpcode::kLeakyRelu) {
        code.constants.push_back(node.attrs.get_float_or("alpha", 0.01f));
        b = static_cast<int64_t>(code.constants.size()) - 1;
      } else if (op == FusedOpcode::kHardSigmoid) {
        code.constants.push_back(node.attrs.get_float_or("alpha", 0.2f));
        code.constants.push_back(node.attrs.get_float_or("beta", 0.5f));
        b = static_cast<int64_t>(code.constants.size()) - 2;
      }
      instruction(op, dst, sources[0], b);
    }
    reg_of[node.outputs[0]] = dst;
  }
  if (code.program.size() / 4 > static_cast<size_t>(ops::kFusedMaxInstructions))
    return std::nullopt;
  if (highest >= ops::kFusedMaxRegisters) return std::nullopt;
  return code;
}

std::optional<FusedCode> emit_any(const ir::Graph& graph, std::vector<int32_t> members) {
  std::sort(members.begin(), members.end());
  if (auto code = emit(graph, members, true)) return code;
  // A constant like [1, 1] can decide the output's rank: keep such constants as inputs.
  return emit(graph, members, false);
}

}  // namespace

int fuse_elementwise_chains(ir::Graph& graph) {
  int fused = 0;
  std::vector<bool> taken(graph.nodes.size(), false);
  for (size_t index = graph.nodes.size(); index-- > 0;) {
    if (taken[index] || !is_fusible(graph, graph.nodes[index])) continue;
    std::vector<int32_t> members = {static_cast<int32_t>(index)};
    std::vector<bool> in_group(graph.nodes.size(), false);
    in_group[index] = true;
    std::optional<FusedCode> code;
    for (bool grew = true; grew;) {
      grew = false;
      const std::vector<int32_t> current = members;
      for (int32_t member : current) {
        for (ir::ValueId in : graph.nodes[static_cast<size_t>(member)].inputs) {
          const int32_t producer = graph.value(in).producer;
          if (producer < 0) continue;
          const size_t p = static_cast<size_t>(producer);
          if (in_group[p] || taken[p] || !is_fusible(graph, graph.nodes[p])) continue;
          if (is_graph_output(graph, in)) continue;
          bool readers_inside = true;
          for (int32_t reader : consumers_of(graph, in)) {
            readers_inside &= in_group[static_cast<size_t>(reader)];
          }
          if (!readers_inside) continue;
          members.push_back(producer);
          std::optional<FusedCode> candidate = emit_any(graph, members);
          if (!candidate) {
            members.pop_back();
            continue;
          }
          in_group[p] = true;
          code = std::move(candidate);
          grew = true;
        }
      }
    }
    if (members.size() < 2 || !code) continue;

    ir::Node node;
    node.name = graph.nodes[index].name;
    node.op_type = "FusedElementwise";
    node.inputs = code->inputs;
    node.outputs = graph.nodes[index].outputs;
    node.attrs.set("program", Attribute::of_ints(std::move(code->program)));
    if (!code->constants.empty()) {
      node.attrs.set("constants", Attribute::of_floats(std::move(code->constants)));
    }
    for (int32_t member : members) {
      taken[static_cast<size_t>(member)] = true;
      graph.nodes[static_cast<size_t>(member)].removed = true;
    }
    graph.nodes[index] = std::move(node);
    ++fused;
  }
  if (fused) graph.compact();
  return fused;
}

}  // namespace kiln::passes
