// Placeholder until the pooling family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_pooling_ops(OpRegistry&) {}
}  // namespace kiln::ops
