// Placeholder until the elementwise family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_elementwise_ops(OpRegistry&) {}
}  // namespace kiln::ops
