// CumSum, ArgMax, ArgMin, TopK: op definitions (shape and dtype inference).
#include "ops/op_families.hpp"

namespace kiln::ops {

void register_index_ops(OpRegistry& /*registry*/) {}

}  // namespace kiln::ops
