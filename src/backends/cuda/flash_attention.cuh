// The tensor-core kernel behind FusedAttention on CUDA (contract in ops/attention.hpp; launched
// by attention_kernels.cu, which picks the block shape as a tactic).
//
// A flash-attention style kernel on mma.sync: a block of kWarps warps owns 16 * kWarps query rows
// of one (batch, head) and streams 64-key tiles of K and V through shared memory; each warp
// computes its 16x64 score tile, updates a running max and sum per row (online softmax, float32)
// and accumulates P·V into a float32 tile that is rescaled as the max moves. Scores never reach
// global memory. Work past the sequence ends is skipped, not masked: a warp whose rows all lie past
// the last query only helps load tiles, and the last key tile multiplies only its 16-key steps
// that hold keys, so lengths that are not multiples of 64 (ViT's 197, Swin's 49) cost little more
// than their keys.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backends/cuda/cuda_common.cuh"

namespace kiln::cuda::attention {

struct AttentionParams {
  const void* q;
  const void* k;
  const void* v;
  const void* mask;  // null without a mask
  void* out;
  int64_t q_strides[4], k_strides[4], v_strides[4], out_strides[4], mask_strides[4];
  int batch, heads, query_length, key_length, head_dim, value_dim;
  float scale;
  bool nan_to_zero;
};

// The final value of one output element from its accumulated sum and the inverse of the row's
// softmax sum (inf when every key was masked: 0 * inf gives NaN, as softmax does).
__device__ __forceinline__ float finish(float accumulated, float inverse_sum, bool nan_to_zero) {
  const float value = accumulated * inverse_sum;
  return nan_to_zero && isnan(value) ? 0.0f : value;
}

// Each warp owns 16 query rows. Its Q fragments, score tile and output accumulator live in
// registers in the layouts of PTX's mma.m16n8k16 (a thread holds rows group and group + 8 of every
// fragment, two adjacent columns each), so the softmax works on the score accumulators directly
// and they become the A operand of P·V without leaving registers. Shared memory holds only the Q
// tile (read once) and the K and V tiles, double-buffered: cp.async fetches tile i + 1 while
// tile i is multiplied.
constexpr int kRowsPerWarp = 16;
constexpr int kBlockKeys = 64;  // keys per tile
constexpr int kKeyStep = 16;    // keys per mma k-step of P·V (and per pair of score tiles)
// Shared rows are padded by 8 elements (16 bytes): the 8 rows one ldmatrix phase reads then fall
// in different bank groups.
constexpr int kRowPad = 8;
constexpr float kLog2e = 1.4426950408889634f;

template <int kDim, int kWarps>
struct TileLayout {
  static constexpr int kBlockRows = kWarps * kRowsPerWarp;            // query rows per block
  static constexpr int kStride = kDim + kRowPad;                      // elements per shared row
  static constexpr size_t kQ = size_t{kBlockRows} * kStride * 2;      // the Q tile
  static constexpr size_t kKeys = size_t{kBlockKeys} * kStride * 2;  // one K or V tile
  static constexpr size_t kBytes = kQ + 4 * kKeys;                    // Q, two (K, V) buffers
};

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16 bytes from global to shared memory without a trip through registers; zeros when !valid.
__device__ __forceinline__ void copy_async_16(void* destination, const void* source, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(destination)), "l"(source),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void commit_copies() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Four 8x8 matrices of 16-bit values; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void load_matrices(uint32_t (&r)[4], const void* row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row_address)));
}
__device__ __forceinline__ void load_matrices_transposed(uint32_t (&r)[4], const void* row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row_address)));
}

// d += a · b for a 16x16 A fragment and a 16x8 B fragment, float32 accumulation.
template <typename T>
__device__ __forceinline__ void mma_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats rounded to T and packed (the lower column in the low half); `rounded` gets them back
// as floats, so sums can use exactly what the tensor cores see.
template <typename T>
__device__ __forceinline__ uint32_t pack_pair(float low, float high, float* rounded = nullptr) {
  uint32_t bits;
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 pair = __floats2half2_rn(low, high);
    if (rounded) *rounded = __low2float(pair) + __high2float(pair);
    memcpy(&bits, &pair, 4);
  } else {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
    if (rounded) *rounded = __low2float(pair) + __high2float(pair);
    memcpy(&bits, &pair, 4);
  }
  return bits;
}

// How a kernel instantiation treats the additive mask: none (the layer has no mask input), read
// in the softmax, or read ahead of the score multiplications (hides its latency, costs registers).
enum class MaskMode { kNone, kRead, kPreload };

// One thread's share of copying [kBlockKeys or kBlockRows][kDim] tiles with cp.async. The thread
// always copies the same 16-byte column chunk of rows first_row, first_row + kRowsPerPass, ...,
// so its offsets are computed once per kernel, not per chunk and tile.
template <typename T, int kDim, int kThreads>
struct TileCopier {
  static constexpr int kChunk = 8;  // 16 bytes of 16-bit values
  static constexpr int kChunksPerRow = kDim / kChunk;
  static_assert(kThreads % kChunksPerRow == 0, "every pass must cover whole rows");
  static constexpr int kRowsPerPass = kThreads / kChunksPerRow;
  int first_row;
  int shared_offset;     // elements into the shared tile
  int64_t global_offset;  // elements from the source's first row
  int64_t pass_stride;    // elements between the rows of consecutive passes
  bool column_valid;      // the chunk lies inside the valid width

  __device__ __forceinline__ TileCopier(int64_t row_stride, int width) {
    first_row = threadIdx.x / kChunksPerRow;
    const int column = (threadIdx.x % kChunksPerRow) * kChunk;
    shared_offset = first_row * (kDim + kRowPad) + column;
    global_offset = first_row * row_stride + column;
    pass_stride = kRowsPerPass * row_stride;
    column_valid = column < width;
  }

  // Queues the copy of `rows` rows starting at `source` (16-byte aligned rows), zero-filling
  // columns past the width and rows >= valid_rows.
  template <int kRows>
  __device__ __forceinline__ void copy(T* __restrict__ tile, const T* __restrict__ source, int valid_rows) const {
    static_assert(kRows % kRowsPerPass == 0, "tiles must be whole passes");
    const T* from = source + global_offset;
#pragma unroll
    for (int pass = 0; pass < kRows / kRowsPerPass; ++pass) {
      const bool valid = column_valid && first_row + pass * kRowsPerPass < valid_rows;
      copy_async_16(tile + shared_offset + pass * kRowsPerPass * (kDim + kRowPad), valid ? from : source, valid);
      from += pass_stride;
    }
  }
};

// 2^x on the special-function unit; 2^-inf = 0 (no range fix-ups: inputs are <= 0 or -inf).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// kWarps warps per block (16 query rows each).
template <typename T, int kDim, int kWarps, MaskMode kMask>
__global__ void __launch_bounds__(kWarps * 32) flash_attention_kernel(const __grid_constant__ AttentionParams p) {
  using Layout = TileLayout<kDim, kWarps>;
  constexpr int kThreads = kWarps * 32;
  constexpr int kBlockRows = Layout::kBlockRows;
  constexpr int kStride = Layout::kStride;
  constexpr int kKeyTiles = kBlockKeys / 8;  // 8-key column tiles of the score fragment
  constexpr int kSteps = kBlockKeys / kKeyStep;
  extern __shared__ __align__(16) unsigned char shared[];
  T* sQ = reinterpret_cast<T*>(shared);
  auto key_buffer = [&](int tile) { return reinterpret_cast<T*>(shared + Layout::kQ + (tile % 2) * 2 * Layout::kKeys); };
  auto value_buffer = [&](int tile) {
    return reinterpret_cast<T*>(shared + Layout::kQ + ((tile % 2) * 2 + 1) * Layout::kKeys);
  };

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int group = lane / 4;  // this thread's fragment rows: group and group + 8
  const int pair = lane % 4;   // and its column pair: 2 * pair, 2 * pair + 1 of each 8
  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int row0 = blockIdx.x * kBlockRows;
  const int warp_row = warp * kRowsPerWarp;
  // Warp-uniform: a warp with no query rows only loads tiles and meets the barriers.
  const bool computes = row0 + warp_row < p.query_length;
  const T* q = static_cast<const T*>(p.q) + b * p.q_strides[0] + h * p.q_strides[1];
  const T* k = static_cast<const T*>(p.k) + b * p.k_strides[0] + h * p.k_strides[1];
  const T* v = static_cast<const T*>(p.v) + b * p.v_strides[0] + h * p.v_strides[1];
  const int tiles = (p.key_length + kBlockKeys - 1) / kBlockKeys;

  // The mask rows of this thread's two query rows; rows past the last query read the last one
  // (their results are never stored), so mask reads need no row checks.
  const T* mask_rows[2] = {nullptr, nullptr};
  int64_t mask_key_stride = 0;
  if constexpr (kMask != MaskMode::kNone) {
    const T* mask = static_cast<const T*>(p.mask) + b * p.mask_strides[0] + h * p.mask_strides[1];
    mask_key_stride = p.mask_strides[3];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mask_rows[r] = mask + min(row0 + warp_row + group + 8 * r, p.query_length - 1) * p.mask_strides[2] +
                     2 * pair * mask_key_stride;
    }
  }

  const TileCopier<T, kDim, kThreads> key_copier(p.k_strides[2], p.head_dim);
  const TileCopier<T, kDim, kThreads> value_copier(p.v_strides[2], p.value_dim);
  auto fetch_keys = [&](int tile) {
    const int key0 = tile * kBlockKeys;
    key_copier.template copy<kBlockKeys>(key_buffer(tile), k + key0 * p.k_strides[2], p.key_length - key0);
    value_copier.template copy<kBlockKeys>(value_buffer(tile), v + key0 * p.v_strides[2], p.key_length - key0);
  };
  {
    const TileCopier<T, kDim, kThreads> query_copier(p.q_strides[2], p.head_dim);
    query_copier.template copy<kBlockRows>(sQ, q + row0 * p.q_strides[2], p.query_length - row0);
  }
  fetch_keys(0);
  commit_copies();

  uint32_t q_fragments[kDim / 16][4];
  float out[kDim / 8][4];
#pragma unroll
  for (int j = 0; j < kDim / 8; ++j) out[j][0] = out[j][1] = out[j][2] = out[j][3] = 0.0f;
  // Running max (log2 domain; -inf until a key is unmasked) and sum of the two rows.
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  const float scale = p.scale * kLog2e;

  // One key tile. kLast: the tile that holds the last key, where keys past it are skipped (whole
  // 16-key steps) or get probability 0; every other tile is full and needs no key checks.
  auto attend = [&]<bool kLast>(int tile) {
    const T* keys = key_buffer(tile);
    const T* values = value_buffer(tile);
    const int key0 = tile * kBlockKeys;
    // 16-key steps that hold keys
    const int steps = kLast ? min(kSteps, (p.key_length - key0 + kKeyStep - 1) / kKeyStep) : kSteps;

    // The mask's value (log2 domain) at fragment element (n, e); keys past the last read the
    // last key's column, their scores are dropped below.
    auto mask_value = [&](int n, int e) {
      int column = n * 8 + e % 2;
      if constexpr (kLast) column = min(column, p.key_length - 1 - key0 - 2 * pair);
      return to_float(mask_rows[e / 2][(key0 + column) * mask_key_stride]) * kLog2e;
    };
    [[maybe_unused]] float bias[kKeyTiles][4];  // read before the multiplications, their latency hides behind them
    if constexpr (kMask == MaskMode::kPreload) {
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) bias[n][e] = mask_value(n, e);
      }
    }

    // Scores of this warp's 16 rows against the tile's keys, 16 keys (two 8-key tiles) a step.
    float s[kKeyTiles][4];
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kDim / 16; ++kk) {
      if (kk * 16 >= p.head_dim) break;  // zero padding of a smaller head dim adds nothing
#pragma unroll
      for (int n = 0; n < kKeyTiles; n += 2) {
        if (kLast && n / 2 >= steps) break;
        uint32_t bk[4];  // B fragments (both k halves) of key tiles n and n + 1
        load_matrices(bk, keys + (n * 8 + (lane / 16) * 8 + lane % 8) * kStride + kk * 16 + ((lane / 8) % 2) * 8);
        mma_16x8x16<T>(s[n], q_fragments[kk], bk[0], bk[1]);
        mma_16x8x16<T>(s[n + 1], q_fragments[kk], bk[2], bk[3]);
      }
    }

    // Online softmax (log2 domain) on the fragments; a row's 4 threads are lanes 4g..4g+3.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[n][e] * scale;
        if constexpr (kMask == MaskMode::kPreload) {
          x += bias[n][e];
        } else if constexpr (kMask == MaskMode::kRead) {
          if (!kLast || n / 2 < steps) x += mask_value(n, e);
        }
        if constexpr (kLast) {
          if (key0 + n * 8 + pair * 2 + e % 2 >= p.key_length) x = -INFINITY;
        }
        s[n][e] = x;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], x);
      }
    }
    float rescale[2];
    float subtract[2];  // the running max, or 0 while every key so far is masked (exp2 gives 0)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float new_max = fmaxf(row_max[r], tile_max[r]);
      subtract[r] = new_max == -INFINITY ? 0.0f : new_max;
      rescale[r] = fast_exp2(row_max[r] - subtract[r]);  // 0 while nothing was accumulated
      row_max[r] = new_max;
    }
    // P, rounded to T, packed straight into A fragments: score tiles 2kk and 2kk + 1 make the
    // 16 keys of step kk. Steps past the last key are neither exponentiated nor multiplied.
    uint32_t p_fragments[kSteps][4];
    float tile_sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
      if (kLast && n / 2 >= steps) break;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float rounded;
        p_fragments[n / 2][(n % 2) * 2 + r] = pack_pair<T>(fast_exp2(s[n][2 * r] - subtract[r]),
                                                           fast_exp2(s[n][2 * r + 1] - subtract[r]), &rounded);
        tile_sum[r] += rounded;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_sum[r] += __shfl_xor_sync(0xffffffffu, tile_sum[r], 1);
      tile_sum[r] += __shfl_xor_sync(0xffffffffu, tile_sum[r], 2);
      row_sum[r] = row_sum[r] * rescale[r] + tile_sum[r];
    }
#pragma unroll
    for (int j = 0; j < kDim / 8; ++j) {
      out[j][0] *= rescale[0];
      out[j][1] *= rescale[0];
      out[j][2] *= rescale[1];
      out[j][3] *= rescale[1];
    }

    // out += P · V; V's B fragments come transposed out of its row-major tile.
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) {
      if (kLast && kk >= steps) break;
#pragma unroll
      for (int j = 0; j < kDim / 8; j += 2) {
        if (j * 8 >= p.value_dim) break;
        uint32_t bv[4];  // B fragments (both k halves) of value columns 8j.. and 8(j + 1)..
        load_matrices_transposed(bv, values + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * kStride + j * 8 +
                                         (lane / 16) * 8);
        mma_16x8x16<T>(out[j], p_fragments[kk], bv[0], bv[1]);
        mma_16x8x16<T>(out[j + 1], p_fragments[kk], bv[2], bv[3]);
      }
    }
  };

  for (int tile = 0; tile < tiles; ++tile) {
    if (tile + 1 < tiles) {  // the buffer it fills was last read before the previous barrier
      fetch_keys(tile + 1);
      commit_copies();
      wait_copies<1>();
    } else {
      wait_copies<0>();
    }
    __syncthreads();
    if (computes) {
      if (tile == 0) {
#pragma unroll
        for (int kk = 0; kk < kDim / 16; ++kk) {
          load_matrices(q_fragments[kk], sQ + (warp_row + lane % 16) * kStride + kk * 16 + (lane / 16) * 8);
        }
      }
      if (tile + 1 < tiles) {
        attend.template operator()<false>(tile);
      } else {
        attend.template operator()<true>(tile);
      }
    }
    __syncthreads();  // every warp is done with this tile's buffers before they are refilled
  }
  if (!computes) return;

  // Normalise, stage this warp's rows in its own rows of the Q tile (its Q is in registers now)
  // and store them as 16-byte chunks. A row whose keys were all masked has sum 0: 0 * inf gives
  // NaN, as softmax does.
  T* stage = sQ + warp_row * kStride;
  const float inverse_sum[2] = {1.0f / row_sum[0], 1.0f / row_sum[1]};
#pragma unroll
  for (int j = 0; j < kDim / 8; ++j) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint32_t bits = pack_pair<T>(finish(out[j][2 * r], inverse_sum[r], p.nan_to_zero),
                                         finish(out[j][2 * r + 1], inverse_sum[r], p.nan_to_zero));
      *reinterpret_cast<uint32_t*>(stage + (group + 8 * r) * kStride + j * 8 + pair * 2) = bits;
    }
  }
  __syncwarp();
  T* out_base = static_cast<T*>(p.out) + b * p.out_strides[0] + h * p.out_strides[1];
  constexpr int kChunksPerRow = kDim / 8;
  for (int c = lane; c < kRowsPerWarp * kChunksPerRow; c += 32) {
    const int row = c / kChunksPerRow;
    const int col = (c % kChunksPerRow) * 8;
    const int query = row0 + warp_row + row;
    if (query < p.query_length && col < p.value_dim) {
      *reinterpret_cast<Pack<T, 8>*>(out_base + query * p.out_strides[2] + col) =
          *reinterpret_cast<const Pack<T, 8>*>(stage + row * kStride + col);
    }
  }
}

}  // namespace kiln::cuda::attention
