// The mean over the middle axis of a dense [outer, reduced, inner] float tensor, the form both
// global average pooling of NHWC tensors ([N, H*W, C]) and a Reduce* over contiguous middle axes
// take. Sums are kept in double, as the reference kernels keep them.
#pragma once

#include <cstdint>

namespace kiln::cpu {

// out[o * inner + i] = (sum over j of in[(o * reduced + j) * inner + i]) / divisor: the rows are
// accumulated in strips of the inner axis, split over the calling context's threads. Divisor 1
// gives the sum; no rows (reduced 0) give 0 / divisor.
void middle_axis_mean(const float* in, int64_t outer, int64_t reduced, int64_t inner, double divisor, float* out);

}  // namespace kiln::cpu
