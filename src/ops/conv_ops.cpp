// Placeholder until the conv family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_conv_ops(OpRegistry&) {}
}  // namespace kiln::ops
