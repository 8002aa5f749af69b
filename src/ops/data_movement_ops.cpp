// Placeholder until the data_movement family lands.
#include "ops/op_families.hpp"
namespace kiln::ops {
void register_data_movement_ops(OpRegistry&) {}
}  // namespace kiln::ops
