// Placeholder until the reduce family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_reduce_ops(OpRegistry&) {}
}  // namespace kiln::ops
