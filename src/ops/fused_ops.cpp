// Placeholder until kiln's fused ops land.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_fused_ops(OpRegistry&) {}
}  // namespace kiln::ops
