// Einsum: op definition (shape and dtype inference). The builder lowers every Einsum to
// Transpose/Reshape/MatMul/ReduceSum (src/passes/einsum_lowering.cpp), so no backend has a kernel.
#include "ops/op_families.hpp"

namespace kiln::ops {

void register_einsum_ops(OpRegistry& /*registry*/) {}

}  // namespace kiln::ops
