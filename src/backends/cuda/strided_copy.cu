#include "backends/cuda/strided_copy.cuh"

#include <algorithm>
#include <cstdlib>

#include "backends/cuda/dm_common.cuh"

namespace kiln::cuda {
namespace {

template <typename Index>
struct CopyDims {
  int rank = 0;
  dm::Divider<Index> dims[kMaxCopyRank];
  int64_t strides[kMaxCopyRank];  // input strides, in words
};

// One word per thread; the output index is decomposed innermost dim first.
template <typename Word, typename Index>
__global__ void strided_copy_kernel(const Word* __restrict__ in, Word* __restrict__ out, Index n,
                                    CopyDims<Index> p) {
  KILN_DM_GRID_STRIDE(i, Index, n) {
    Index rest = i;
    int64_t offset = 0;
    for (int d = p.rank - 1; d > 0; --d) {
      const Index quotient = p.dims[d].div(rest);
      const Index coord = rest - quotient * static_cast<Index>(p.dims[d].divisor);
      rest = quotient;
      offset += static_cast<int64_t>(coord) * p.strides[d];
    }
    offset += static_cast<int64_t>(rest) * p.strides[0];
    out[i] = in[offset];
  }
}

constexpr int kTile = 32;
constexpr int kTileRows = 8;

// A copy that moves the input's contiguous dim (`rows`) to a non-innermost output position while
// the output's innermost dim (`cols`) is strided in the input. The remaining dims are batch dims.
struct TransposeDims {
  int batch_rank = 0;
  int64_t batch_dims[kMaxCopyRank];
  int64_t batch_in_strides[kMaxCopyRank];
  int64_t batch_out_strides[kMaxCopyRank];
  int64_t batch_count = 1;
  int64_t rows = 0;            // input stride 1
  int64_t cols = 0;            // output stride 1
  int64_t col_in_stride = 0;   // input stride of `cols`
  int64_t row_out_stride = 0;  // output stride of `rows`
};

// Each block stages a 32x32 tile in shared memory: it reads along `rows` (contiguous in the input)
// and writes along `cols` (contiguous in the output).
template <typename Word>
__global__ void tiled_transpose_kernel(const Word* __restrict__ in, Word* __restrict__ out,
                                       TransposeDims p) {
  __shared__ Word tile[kTile][kTile + 1];  // +1: column reads hit distinct banks
  const int64_t row_tiles = (p.rows + kTile - 1) / kTile;
  const int64_t col_tiles = (p.cols + kTile - 1) / kTile;
  const int tx = static_cast<int>(threadIdx.x);
  const int ty = static_cast<int>(threadIdx.y);
  for (int64_t b = blockIdx.z; b < p.batch_count; b += gridDim.z) {
    int64_t in_base = 0;
    int64_t out_base = 0;
    int64_t rest = b;
    for (int d = p.batch_rank - 1; d >= 0; --d) {
      const int64_t coord = rest % p.batch_dims[d];
      rest /= p.batch_dims[d];
      in_base += coord * p.batch_in_strides[d];
      out_base += coord * p.batch_out_strides[d];
    }
    for (int64_t rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
      for (int64_t ct = blockIdx.x; ct < col_tiles; ct += gridDim.x) {
        const int64_t r0 = rt * kTile;
        const int64_t c0 = ct * kTile;
        for (int j = ty; j < kTile; j += kTileRows) {
          const int64_t r = r0 + tx;
          const int64_t c = c0 + j;
          if (r < p.rows && c < p.cols) tile[j][tx] = in[in_base + r + c * p.col_in_stride];
        }
        __syncthreads();
        for (int j = ty; j < kTile; j += kTileRows) {
          const int64_t r = r0 + j;
          const int64_t c = c0 + tx;
          if (r < p.rows && c < p.cols) out[out_base + r * p.row_out_stride + c] = tile[tx][j];
        }
        __syncthreads();
      }
    }
  }
}

struct MergedCopy {
  std::vector<int64_t> dims;
  std::vector<int64_t> strides;
};

// Drops size-1 dims and merges each dim into its outer neighbour when the input walks the pair
// contiguously (the output is dense, so it always does).
MergedCopy merge_dims(const Shape& out_dims, const std::vector<int64_t>& in_strides) {
  MergedCopy merged;
  for (size_t d = 0; d < out_dims.size(); ++d) {
    if (out_dims[d] == 1) continue;
    if (!merged.dims.empty() && merged.strides.back() == in_strides[d] * out_dims[d]) {
      merged.dims.back() *= out_dims[d];
      merged.strides.back() = in_strides[d];
      continue;
    }
    merged.dims.push_back(out_dims[d]);
    merged.strides.push_back(in_strides[d]);
  }
  return merged;
}

uint64_t magnitude(int64_t v) {
  return v < 0 ? static_cast<uint64_t>(0) - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
}

template <typename Word>
void launch_generic(const LaunchContext& ctx, const void* in, void* out, const MergedCopy& copy) {
  const int64_t n = shape_numel(copy.dims);
  const auto* src = static_cast<const Word*>(in);
  auto* dst = static_cast<Word*>(out);
  dm::dispatch_index(n, [&]<typename Index>() {
    CopyDims<Index> p{};
    p.rank = static_cast<int>(copy.dims.size());
    for (size_t d = 0; d < copy.dims.size(); ++d) {
      p.dims[d] = dm::Divider<Index>::make(copy.dims[d]);
      p.strides[d] = copy.strides[d];
    }
    strided_copy_kernel<Word, Index>
        <<<grid_for(n), kBlockSize, 0, ctx.stream>>>(src, dst, static_cast<Index>(n), p);
  });
}

// The dim whose input stride is 1, when it is not the innermost one and the tile would be well
// filled; -1 otherwise.
int transpose_dim(const MergedCopy& copy) {
  const size_t rank = copy.dims.size();
  if (rank < 2 || copy.strides[rank - 1] == 1 || copy.dims[rank - 1] < 16) return -1;
  for (size_t d = 0; d + 1 < rank; ++d) {
    if (copy.strides[d] == 1) return copy.dims[d] >= 16 ? static_cast<int>(d) : -1;
  }
  return -1;
}

template <typename Word>
void launch_tiled(const LaunchContext& ctx, const void* in, void* out, const MergedCopy& copy,
                  int row_dim) {
  const size_t rank = copy.dims.size();
  const std::vector<int64_t> out_strides = dm::dense_strides(copy.dims);
  TransposeDims p{};
  p.rows = copy.dims[static_cast<size_t>(row_dim)];
  p.row_out_stride = out_strides[static_cast<size_t>(row_dim)];
  p.cols = copy.dims[rank - 1];
  p.col_in_stride = copy.strides[rank - 1];
  for (size_t d = 0; d + 1 < rank; ++d) {
    if (d == static_cast<size_t>(row_dim)) continue;
    p.batch_dims[p.batch_rank] = copy.dims[d];
    p.batch_in_strides[p.batch_rank] = copy.strides[d];
    p.batch_out_strides[p.batch_rank] = out_strides[d];
    p.batch_count *= copy.dims[d];
    ++p.batch_rank;
  }
  const int64_t row_tiles = (p.rows + kTile - 1) / kTile;
  const int64_t col_tiles = (p.cols + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(col_tiles, int64_t{1} << 30)),
                  static_cast<unsigned>(std::min<int64_t>(row_tiles, 65535)),
                  static_cast<unsigned>(std::min<int64_t>(p.batch_count, 65535)));
  tiled_transpose_kernel<Word><<<grid, dim3(kTile, kTileRows), 0, ctx.stream>>>(
      static_cast<const Word*>(in), static_cast<Word*>(out), p);
}

}  // namespace

void launch_strided_copy(const LaunchContext& ctx, const void* in, void* out, size_t element_size,
                         const Shape& out_dims, const std::vector<int64_t>& in_strides,
                         int64_t in_offset) {
  KILN_ASSERT(out_dims.size() == in_strides.size(), "strided copy: ", out_dims.size(), " dims but ",
              in_strides.size(), " strides");
  const int64_t n = shape_numel(out_dims);
  if (n == 0) return;
  const auto* src =
      static_cast<const uint8_t*>(in) + in_offset * static_cast<int64_t>(element_size);
  MergedCopy copy = merge_dims(out_dims, in_strides);
  if (copy.dims.empty() || (copy.dims.size() == 1 && copy.strides[0] == 1)) {
    KILN_CUDA_CHECK(cudaMemcpyAsync(out, src, static_cast<size_t>(n) * element_size,
                                    cudaMemcpyDeviceToDevice, ctx.stream));
    return;
  }
  if (copy.dims.size() > static_cast<size_t>(kMaxCopyRank)) {
    ctx.fail(ErrorCode::kUnsupported, "a strided copy with ", copy.dims.size(),
             " non-mergeable dims (the CUDA backend handles ", kMaxCopyRank, ")");
  }
  const size_t rank = copy.dims.size();
  if (const int row_dim = transpose_dim(copy); row_dim >= 0 && element_size <= 8) {
    dm::dispatch_word(ctx, element_size,
                      [&]<typename Word>() { launch_tiled<Word>(ctx, src, out, copy, row_dim); });
    check_launch(ctx);
    return;
  }
  size_t word = element_size;
  if (copy.strides[rank - 1] == 1) {
    // Widen the innermost (contiguous) dim to the largest word every size, stride and address
    // allows; the other dims' strides must then be whole words too.
    uint64_t bits = static_cast<uint64_t>(copy.dims[rank - 1]) * element_size;
    bits |= dm::address_of(src) | dm::address_of(out);
    for (size_t d = 0; d + 1 < rank; ++d) bits |= magnitude(copy.strides[d]) * element_size;
    word = dm::common_word_size({bits});
    if (word != element_size) {
      for (size_t d = 0; d < rank; ++d) {
        if (d + 1 == rank) {
          copy.dims[d] =
              copy.dims[d] * static_cast<int64_t>(element_size) / static_cast<int64_t>(word);
        } else {
          copy.strides[d] =
              copy.strides[d] * static_cast<int64_t>(element_size) / static_cast<int64_t>(word);
        }
      }
    }
  }
  dm::dispatch_word(ctx, word, [&]<typename Word>() { launch_generic<Word>(ctx, src, out, copy); });
  check_launch(ctx);
}

}  // namespace kiln::cuda
