// InstanceNormalization, GroupNormalization: op definitions (shape and dtype inference).
#include "ops/op_families.hpp"

namespace kiln::ops {

void register_group_normalization_ops(OpRegistry& /*registry*/) {}

}  // namespace kiln::ops
