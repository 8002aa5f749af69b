// Lowers an engine's float32 compute to float16 or bfloat16 (fp32 accumulation stays inside the
// kernels). Graph inputs and outputs keep their declared dtypes: Cast nodes convert at the edges.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Converts every float32 tensor that flows through compute to `precision` (kFloat16 or kBFloat16):
// float32 constants are converted (once, even when shared), Cast(to=float32) retargets to
// `precision`, ConstantOfShape with a float32 value produces `precision`. Inputs an op reads as
// values (Resize's scales, ...) stay float32. Requires inferred shapes; re-infers them.
void lower_precision(ir::Graph& graph, DType precision);

}  // namespace kiln::passes
