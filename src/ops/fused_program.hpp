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

#include <cstdint>
#include <string_view>
#include <vector>

#include "ops/scalar_math.h"

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

// One instruction on its operand values, in float32, with the scalar table's formulas
// (ops/scalar_math.h), as the unfused CPU and CUDA kernels compute them.
KILN_HOST_DEVICE inline float evaluate_fused(const FusedInstruction& inst, float x, float y) {
  switch (inst.opcode) {
    case FusedOpcode::kLoadConstant:
      return inst.p0;
    case FusedOpcode::kRelu:
      return kiln_relu<float>(x);
    case FusedOpcode::kSigmoid:
      return kiln_sigmoid<float>(x);
    case FusedOpcode::kTanh:
      return kiln_tanh<float>(x);
    case FusedOpcode::kErf:
      return kiln_erf<float>(x);
    case FusedOpcode::kExp:
      return kiln_exp<float>(x);
    case FusedOpcode::kLog:
      return kiln_log<float>(x);
    case FusedOpcode::kSqrt:
      return kiln_sqrt<float>(x);
    case FusedOpcode::kReciprocal:
      return kiln_reciprocal<float>(x);
    case FusedOpcode::kNeg:
      return kiln_neg<float>(x);
    case FusedOpcode::kAbs:
      return kiln_abs<float>(x);
    case FusedOpcode::kGelu:
      return kiln_gelu<float>(x);
    case FusedOpcode::kGeluTanh:
      return kiln_gelu_tanh<float>(x);
    case FusedOpcode::kHardSigmoid:
      return kiln_hard_sigmoid<float>(x, inst.p0, inst.p1);
    case FusedOpcode::kHardSwish:
      return kiln_hard_swish<float>(x);
    case FusedOpcode::kLeakyRelu:
      return kiln_leaky_relu<float>(x, inst.p0);
    case FusedOpcode::kAdd:
      return kiln_add<float>(x, y);
    case FusedOpcode::kSub:
      return kiln_sub<float>(x, y);
    case FusedOpcode::kMul:
      return kiln_mul<float>(x, y);
    case FusedOpcode::kDiv:
      return kiln_div<float>(x, y);
    case FusedOpcode::kPow:
      return kiln_pow<float>(x, y);
    case FusedOpcode::kMin:
      return kiln_min<float>(x, y);
    case FusedOpcode::kMax:
      return kiln_max<float>(x, y);
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
