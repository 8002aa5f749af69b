// Placeholder until the gemm family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_gemm_ops(OpRegistry&) {}
}  // namespace kiln::ops
