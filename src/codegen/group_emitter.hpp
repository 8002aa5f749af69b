// CUDA C++ source for one planned fusion group (codegen/group_plan.hpp): a module of a few entry
// points that compute the same thing with different block shapes (the launcher times them as
// tactics). The source includes nothing: it starts with the scalar math of ops/scalar_math.h and
// the 16-bit float conversions, so NVRTC compiles it without headers.
#pragma once

#include <string>
#include <vector>

#include "codegen/group_plan.hpp"

namespace kiln::codegen {

struct KernelEntry {
  std::string name;       // the __global__ function's name in the module
  int block = 0;          // threads per block
  int64_t per_block = 1;  // work units per block and grid step
  bool index64 = false;
  // Column entries that split the reduced rows across blocks: floats of workspace per (work
  // unit, split); 0 for every other entry.
  int64_t split_partials = 0;
};

struct GroupKernelSource {
  std::string source;
  std::vector<KernelEntry> entries;
  std::vector<int64_t> unit;   // kiln_kernel_unit (ops/group_kernel_abi.hpp)
  int64_t multiplier = 1;      // kiln_kernel_multiplier
  std::vector<int64_t> split_rows;  // kiln_kernel_split_rows (empty: no entry splits rows)
  int vector_width = 1;        // elements per thread access (for explain and tests)
  // NVRTC options the module must be compiled with (the source's second line names them too).
  std::vector<std::string> nvrtc_options;
};

// True when every float tensor the kernel of `plan` reads or writes is stored in 16 bits (fp16 or
// bf16). Such a module compiles with --prec-div=false: float division becomes div.full.f32 and
// reciprocals rcp.approx.f32 (at most 2 ulp of float, full range, NaN and infinity kept), an
// error far below the 16-bit rounding every result then goes through, and about half the
// instructions of a correctly rounded division, which bounds the speed of chains like GELU and
// SiLU. Modules touching fp32 tensors keep correctly rounded division, as the CPU reference.
bool uses_half_precision_math(const GroupPlan& plan);

// Writes the module for `plan`. Throws kiln::Error(kInternal) only on a plan it cannot emit
// (plan_group accepted nothing this cannot emit).
GroupKernelSource emit_group_kernel(const GroupPlan& plan);

}  // namespace kiln::codegen
