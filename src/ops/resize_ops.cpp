// Placeholder until the resize family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_resize_ops(OpRegistry&) {}
}  // namespace kiln::ops
