// Placeholder until the shape family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_shape_ops(OpRegistry&) {}
}  // namespace kiln::ops
