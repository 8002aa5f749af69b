// ConvTranspose: op definitions (shape and dtype inference).
#include "ops/op_families.hpp"

namespace kiln::ops {

void register_conv_transpose_ops(OpRegistry& /*registry*/) {}

}  // namespace kiln::ops
