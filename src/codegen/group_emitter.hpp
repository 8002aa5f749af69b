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
};

struct GroupKernelSource {
  std::string source;
  std::vector<KernelEntry> entries;
  std::vector<int64_t> unit;   // kiln_kernel_unit (ops/group_kernel_abi.hpp)
  int64_t multiplier = 1;      // kiln_kernel_multiplier
  int vector_width = 1;        // elements per thread access (for explain and tests)
};

// Writes the module for `plan`. Throws kiln::Error(kInternal) only on a plan it cannot emit
// (plan_group accepted nothing this cannot emit).
GroupKernelSource emit_group_kernel(const GroupPlan& plan);

}  // namespace kiln::codegen
