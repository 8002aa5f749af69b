// Row reductions of the Reduce* family, exposed to other CUDA families that reduce contiguous
// rows with the same semantics (GlobalAveragePool = mean, GlobalMaxPool = max per plane).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda::nn {

enum class ReduceOp : int {
  kSum,
  kMean,
  kMax,
  kMin,
  kProd,
  kL1,
  kL2,
  kSumSquare,
  kLogSum,
  kLogSumExp,
};

// Workspace bytes launch_row_reduce wants for these sizes (0 unless long rows are split across
// blocks). Ask for it in prepare; with less at launch the rows are simply not split.
size_t row_reduce_workspace(const LaunchContext& ctx, DType dtype, int64_t rows, int64_t length);

// out[r] = op over in[r * length, (r + 1) * length) for r < rows; `in` and `out` have the same
// dtype (float32/float16/bfloat16; int32/int64 for Sum, Prod, Max, Min). Enqueues on ctx.stream
// and may use ctx.workspace.
void launch_row_reduce(const LaunchContext& ctx, ReduceOp op, const TensorView& in,
                       const TensorView& out, int64_t rows, int64_t length);

}  // namespace kiln::cuda::nn
