// DepthToSpace, SpaceToDepth: op definitions (shape and dtype inference).
#include "ops/op_families.hpp"

namespace kiln::ops {

void register_space_depth_ops(OpRegistry& /*registry*/) {}

}  // namespace kiln::ops
