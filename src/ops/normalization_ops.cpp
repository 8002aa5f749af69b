// Placeholder until the normalization family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_normalization_ops(OpRegistry&) {}
}  // namespace kiln::ops
