// kiln's fused ops: FusedElementwise (a chain of elementwise ops as one register program, see
// ops/fused_program.hpp).
#include <algorithm>
#include <string>

#include "ops/fused_program.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {

bool is_binary_fused_opcode(FusedOpcode opcode) {
  return static_cast<int>(opcode) >= static_cast<int>(FusedOpcode::kAdd);
}

const char* fused_opcode_name(FusedOpcode opcode) {
  switch (opcode) {
    case FusedOpcode::kLoadConstant:
      return "LoadConstant";
    case FusedOpcode::kRelu:
      return "Relu";
    case FusedOpcode::kSigmoid:
      return "Sigmoid";
    case FusedOpcode::kTanh:
      return "Tanh";
    case FusedOpcode::kErf:
      return "Erf";
    case FusedOpcode::kExp:
      return "Exp";
    case FusedOpcode::kLog:
      return "Log";
    case FusedOpcode::kSqrt:
      return "Sqrt";
    case FusedOpcode::kReciprocal:
      return "Reciprocal";
    case FusedOpcode::kNeg:
      return "Neg";
    case FusedOpcode::kAbs:
      return "Abs";
    case FusedOpcode::kGelu:
      return "Gelu";
    case FusedOpcode::kGeluTanh:
      return "GeluTanh";
    case FusedOpcode::kHardSigmoid:
      return "HardSigmoid";
    case FusedOpcode::kHardSwish:
      return "HardSwish";
    case FusedOpcode::kLeakyRelu:
      return "LeakyRelu";
    case FusedOpcode::kAdd:
      return "Add";
    case FusedOpcode::kSub:
      return "Sub";
    case FusedOpcode::kMul:
      return "Mul";
    case FusedOpcode::kDiv:
      return "Div";
    case FusedOpcode::kPow:
      return "Pow";
    case FusedOpcode::kMin:
      return "Min";
    case FusedOpcode::kMax:
      return "Max";
  }
  return "?";
}

namespace {

bool is_known_opcode(int64_t value) {
  if (value < 0 || value > 255) return false;
  return std::string_view(fused_opcode_name(static_cast<FusedOpcode>(value))) != "?";
}

}  // namespace

FusedProgram parse_fused_program(std::string_view context, const std::vector<int64_t>& program,
                                 const std::vector<float>& constants, int num_inputs) {
  auto fail_program = [&](size_t instruction, auto&&... parts) {
    kiln::fail(ErrorCode::kInvalidArgument, context, ": FusedElementwise program instruction ",
               instruction, ": ", parts...);
  };
  if (num_inputs < 1 || num_inputs > kFusedMaxInputs) {
    kiln::fail(ErrorCode::kInvalidArgument, context, ": FusedElementwise takes 1..",
               kFusedMaxInputs, " inputs, got ", num_inputs);
  }
  if (program.empty() || program.size() % 4 != 0) {
    kiln::fail(
        ErrorCode::kInvalidArgument, context,
        ": FusedElementwise attribute 'program' must hold a positive multiple of 4 ints, got ",
        program.size());
  }
  const size_t count = program.size() / 4;
  if (count > static_cast<size_t>(kFusedMaxInstructions)) {
    kiln::fail(ErrorCode::kInvalidArgument, context, ": FusedElementwise program has ", count,
               " instructions, at most ", kFusedMaxInstructions, " are supported");
  }
  FusedProgram parsed{};
  parsed.num_instructions = static_cast<int>(count);
  parsed.num_inputs = num_inputs;
  parsed.num_registers = num_inputs;
  bool loaded[kFusedMaxRegisters] = {};
  for (int r = 0; r < num_inputs; ++r) loaded[r] = true;

  auto check_register = [&](size_t i, const char* role, int64_t reg, bool must_be_loaded) {
    if (reg < 0 || reg >= kFusedMaxRegisters) {
      fail_program(i, role, " register ", reg, " is outside [0, ", kFusedMaxRegisters, ")");
    }
    if (must_be_loaded && !loaded[reg]) {
      fail_program(i, role, " register ", reg, " is read before it is written");
    }
  };
  auto check_constant = [&](size_t i, int64_t index, int64_t needed) {
    if (index < 0 || index + needed > static_cast<int64_t>(constants.size())) {
      fail_program(i, "constant index ", index, " (", needed, " value(s)) is outside the ",
                   constants.size(), " constants");
    }
  };

  for (size_t i = 0; i < count; ++i) {
    const int64_t op = program[4 * i];
    const int64_t dst = program[4 * i + 1];
    const int64_t a = program[4 * i + 2];
    const int64_t b = program[4 * i + 3];
    if (!is_known_opcode(op)) fail_program(i, "unknown opcode ", op);
    const FusedOpcode opcode = static_cast<FusedOpcode>(op);
    FusedInstruction& inst = parsed.code[i];
    inst = FusedInstruction{opcode, 0, 0, 0, 0.0f, 0.0f};
    check_register(i, "destination", dst, false);
    switch (opcode) {
      case FusedOpcode::kLoadConstant:
        check_constant(i, a, 1);
        inst.p0 = constants[static_cast<size_t>(a)];
        break;
      case FusedOpcode::kLeakyRelu:
        check_register(i, "source", a, true);
        check_constant(i, b, 1);
        inst.a = static_cast<uint8_t>(a);
        inst.p0 = constants[static_cast<size_t>(b)];
        break;
      case FusedOpcode::kHardSigmoid:
        check_register(i, "source", a, true);
        check_constant(i, b, 2);
        inst.a = static_cast<uint8_t>(a);
        inst.p0 = constants[static_cast<size_t>(b)];
        inst.p1 = constants[static_cast<size_t>(b) + 1];
        break;
      default:
        check_register(i, "source", a, true);
        inst.a = static_cast<uint8_t>(a);
        if (is_binary_fused_opcode(opcode)) {
          check_register(i, "second source", b, true);
          inst.b = static_cast<uint8_t>(b);
        }
        break;
    }
    inst.dst = static_cast<uint8_t>(dst);
    loaded[dst] = true;
    const int highest = std::max({static_cast<int>(dst), int{inst.a}, int{inst.b}});
    if (highest + 1 > parsed.num_registers) parsed.num_registers = highest + 1;
  }
  parsed.output_register = parsed.code[count - 1].dst;
  return parsed;
}

namespace {

void infer_fused_elementwise(InferContext& ctx) {
  const int num_inputs = static_cast<int>(ctx.num_inputs());
  const DType dtype = ctx.input(0).dtype;
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    ctx.fail("input 0 has dtype ", dtype_name(dtype), ", expected float32, float16 or bfloat16");
  }
  Shape shape = ctx.input(0).shape;
  for (int i = 0; i < num_inputs; ++i) {
    const ValueInfo& in = ctx.input(static_cast<size_t>(i));
    if (!in.present) ctx.fail("input ", i, " is absent");
    if (in.dtype != dtype) {
      ctx.fail("input ", i, " has dtype ", dtype_name(in.dtype), ", expected ", dtype_name(dtype),
               " like input 0");
    }
    if (i > 0) shape = broadcast_shapes(ctx, shape, in.shape);
  }
  const Attribute* constants = ctx.attrs().find("constants");
  const std::vector<float> no_constants;
  const std::string context =
      "node '" + std::string(ctx.node_name()) + "' (" + std::string(ctx.op()) + ")";
  parse_fused_program(context, ctx.attrs().get_ints("program"),
                      constants ? ctx.attrs().get_floats("constants") : no_constants, num_inputs);
  ctx.output(0).dtype = dtype;
  ctx.output(0).shape = std::move(shape);
}

}  // namespace

void register_fused_ops(OpRegistry& registry) {
  OpDef def;
  def.name = "FusedElementwise";
  def.min_inputs = 1;
  def.max_inputs = kFusedMaxInputs;
  def.infer = infer_fused_elementwise;
  registry.add(std::move(def));
}

}  // namespace kiln::ops
