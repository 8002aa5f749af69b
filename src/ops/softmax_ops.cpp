// Placeholder until the softmax family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_softmax_ops(OpRegistry&) {}
}  // namespace kiln::ops
