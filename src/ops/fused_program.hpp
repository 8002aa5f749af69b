// The register program of kiln's FusedElementwise op: a straight-line sequence of float32
// instructions evaluated once per output element. Shared by the op's infer function, the CPU
// kernel, the CUDA launcher (this header is also compiled by nvcc) and the fusion pass.
//
// Attribute "program" (INTS): 4 ints per instruction, [opcode, dst, src_a, src_b]. Registers
// 0..N-1 hold the N inputs' elements (broadcast to the output shape); others are temporaries.
// The last instruction's dst register is the output.
// Attribute "constants" (FLOATS, optional): scalars referenced by index:
//   kLoadConstant     dst = constants[src_a]                  (src_b unused)
//   kLeakyRelu        dst = LeakyRelu(src_a), alpha = constants[src_b]
//   kHardSigmoid      dst = HardSigmoid(src_a), alpha = constants[src_b], beta = constants[src_b +
//   1] other unary ops   dst = op(src_a)                         (src_b unused) binary ops dst =
//   op(src_a, src_b)
#pragma once

#include <math.h>

#include <cstdint>
#include <string_view>
#include <vector>

// Functions both the host compiler and nvcc (host and device) compile.
#if defined(__CUDACC__)
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif

namespace kiln::ops {

// Stored in engine files: never renumber.
enum class FusedOpcode : uint8_t {
  kLoadConstant = 0,
  // unary
  kRelu = 1,
  kSigmoid = 2,
  kTanh = 3,
  kErf = 4,
  kExp = 5,
  kLog = 6,
  kSqrt = 7,
  kReciprocal = 8,
  kNeg = 9,
  kAbs = 10,
  kGelu = 11,      // approximate="none"
  kGeluTanh = 12,  // approximate="tanh"
  kHardSigmoid = 13,
  kHardSwish = 14,
  kLeakyRelu = 15,
  // binary
  kAdd = 32,
  kSub = 33,
  kMul = 34,
  kDiv = 35,
  kPow = 36,
  kMin = 37,
  kMax = 38,
};

inline constexpr int kFusedMaxInputs = 8;
inline constexpr int kFusedMaxInstructions = 64;
inline constexpr int kFusedMaxRegisters = 32;

// One decoded instruction. Constants are resolved into `p0`/`p1` so kernels never index the
// constant table: kLoadConstant's value, LeakyRelu's alpha, HardSigmoid's alpha and beta.
struct FusedInstruction {
  FusedOpcode opcode;
  uint8_t dst;
  uint8_t a;
  uint8_t b;
  float p0;
  float p1;
};

// A validated program, a plain struct so the CUDA launcher can pass it by value.
struct FusedProgram {
  int num_instructions = 0;
  int num_inputs = 0;
  int num_registers = 0;    // 1 + the highest register used
  int output_register = 0;  // dst of the last instruction
  FusedInstruction code[kFusedMaxInstructions];
};

// One instruction on its operand values, in float32: the formulas of the CPU reference's unfused
// elementwise kernels, evaluated alike by the CPU and the CUDA FusedElementwise kernels.
KILN_HOST_DEVICE inline float evaluate_fused(const FusedInstruction& inst, float x, float y) {
  switch (inst.opcode) {
    case FusedOpcode::kLoadConstant:
      return inst.p0;
    case FusedOpcode::kRelu:
      return x < 0.0f ? 0.0f : x;  // keeps NaN
    case FusedOpcode::kSigmoid:  // no overflow of exp for large |x|
      return x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
    case FusedOpcode::kTanh:
      return tanhf(x);
    case FusedOpcode::kErf:
      return erff(x);
    case FusedOpcode::kExp:
      return expf(x);
    case FusedOpcode::kLog:
      return logf(x);
    case FusedOpcode::kSqrt:
      return sqrtf(x);
    case FusedOpcode::kReciprocal:
      return 1.0f / x;
    case FusedOpcode::kNeg:
      return -x;
    case FusedOpcode::kAbs:
      return fabsf(x);
    case FusedOpcode::kGelu:
      return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case FusedOpcode::kGeluTanh:
      return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case FusedOpcode::kHardSigmoid:
      return fmaxf(0.0f, fminf(1.0f, inst.p0 * x + inst.p1));
    case FusedOpcode::kHardSwish:
      return x * fmaxf(0.0f, fminf(1.0f, x / 6.0f + 0.5f));
    case FusedOpcode::kLeakyRelu:
      return x < 0.0f ? inst.p0 * x : x;
    case FusedOpcode::kAdd:
      return x + y;
    case FusedOpcode::kSub:
      return x - y;
    case FusedOpcode::kMul:
      return x * y;
    case FusedOpcode::kDiv:
      return x / y;
    case FusedOpcode::kPow:
      return powf(x, y);
    // NaN in either operand propagates, as in the unfused kernels (fminf/fmaxf would drop it).
    case FusedOpcode::kMin:
      return x != x ? x : (x < y ? x : y);
    case FusedOpcode::kMax:
      return x != x ? x : (x > y ? x : y);
  }
  return x;
}

bool is_binary_fused_opcode(FusedOpcode opcode);
// "Add", "Relu", ... for messages; "?" for an unknown value.
const char* fused_opcode_name(FusedOpcode opcode);

// Decodes and validates `program` for `num_inputs` inputs: length a positive multiple of 4 and at
// most kFusedMaxInstructions instructions, known opcodes, registers below kFusedMaxRegisters, every
// register read after it was loaded (an input or an earlier dst), constant indices in range.
// Throws kiln::Error(kInvalidArgument) "<context>: <problem>".
FusedProgram parse_fused_program(std::string_view context, const std::vector<int64_t>& program,
                                 const std::vector<float>& constants, int num_inputs);

}  // namespace kiln::ops
