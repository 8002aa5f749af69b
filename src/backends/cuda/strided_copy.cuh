// The generic "strided copy" of the CUDA data movement kernels: a dense output whose elements are
// read from an input through arbitrary (possibly zero or negative) element strides plus a base
// offset. Transpose, Slice, Expand and Tile are all such copies.
//
// On the host the copy is simplified before launch: size-1 dims are dropped and adjacent dims the
// input walks contiguously are merged. Then, in order of preference:
//   - a fully contiguous copy becomes one cudaMemcpyAsync;
//   - a copy whose innermost dim is contiguous in the input moves the widest word (up to 16 bytes)
//     that the sizes, strides and addresses allow;
//   - a copy that transposes a contiguous input dim into a non-innermost output dim (e.g. swapping
//     the last two dims, NHWC <-> NCHW) uses a 32x32 shared-memory tile so that both the reads and
//     the writes are coalesced;
//   - anything else is one element per thread.
#pragma once

#include <cstdint>
#include <vector>

#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda {

// Dims a strided copy may have after merging (Tile doubles the rank of its input).
inline constexpr int kMaxCopyRank = 16;

// out[c_0, ..., c_{r-1}] = in[offset + sum_d c_d * in_strides[d]] for every coordinate of the dense
// `out_dims`. Strides and offset are in elements of `element_size` bytes. Launches nothing for an
// empty output; fails with kUnsupported for more than kMaxCopyRank non-mergeable dims.
void launch_strided_copy(const LaunchContext& ctx, const void* in, void* out, size_t element_size,
                         const Shape& out_dims, const std::vector<int64_t>& in_strides,
                         int64_t in_offset = 0);

}  // namespace kiln::cuda
