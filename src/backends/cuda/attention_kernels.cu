// FusedAttention on CUDA (contract in ops/attention.hpp).
//
// float16/bfloat16 with head dims that are multiples of 16 (<= 128) run a flash-attention style
// kernel on tensor cores (WMMA): a block of 4 warps owns 64 query rows of one (batch, head) and
// streams 64-key tiles of K and V through shared memory; each warp computes its 16x64 score tile,
// updates a running max and sum per row (online softmax, float32) and accumulates P·V into a
// float32 tile that is rescaled as the max moves. Scores never reach global memory. The builder
// fuses attention only where this kernel applies (ops::attention_fits_tensor_cores).
#include <mma.h>

#include <cmath>

#include "backends/cuda/cuda_common.cuh"
#include "ops/attention.hpp"

namespace kiln::cuda {
namespace {

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

AttentionParams make_params(const LaunchContext& ctx, const ops::AttentionGeometry& g) {
  AttentionParams p{};
  p.q = ctx.inputs[0].data;
  p.k = ctx.inputs[1].data;
  p.v = ctx.inputs[2].data;
  p.mask = ctx.has_input(3) ? ctx.inputs[3].data : nullptr;
  p.out = ctx.outputs[0].data;
  for (int i = 0; i < 4; ++i) {
    p.q_strides[i] = g.q_strides[i];
    p.k_strides[i] = g.k_strides[i];
    p.v_strides[i] = g.v_strides[i];
    p.out_strides[i] = g.out_strides[i];
    p.mask_strides[i] = g.mask_strides[i];
  }
  p.batch = static_cast<int>(g.batch);
  p.heads = static_cast<int>(g.heads);
  p.query_length = static_cast<int>(g.query_length);
  p.key_length = static_cast<int>(g.key_length);
  p.head_dim = static_cast<int>(g.head_dim);
  p.value_dim = static_cast<int>(g.value_dim);
  p.scale = g.scale;
  p.nan_to_zero = g.nan_to_zero;
  return p;
}

// The final value of one output element from its accumulated sum and the row's softmax sum.
__device__ __forceinline__ float finish(float accumulated, float row_sum, bool nan_to_zero) {
  const float value = accumulated / row_sum;  // row_sum 0 (every key masked) gives NaN like softmax
  return nan_to_zero && isnan(value) ? 0.0f : value;
}

// ---- tensor-core kernel -----------------------------------------------------------------------

constexpr int kWarps = 4;
constexpr int kRowsPerWarp = 16;
constexpr int kBlockRows = kWarps * kRowsPerWarp;  // query rows per block
constexpr int kBlockKeys = 64;                     // keys per tile
constexpr int kHalfPad = 8;                        // shared-memory row padding (bank conflicts)
constexpr int kFloatPad = 4;

template <int kDim>
struct TileLayout {
  static constexpr int kHalfStride = kDim + kHalfPad;          // sQ, sK, sV rows
  static constexpr int kScoreStride = kBlockKeys + kFloatPad;  // sS rows (float)
  static constexpr int kProbStride = kBlockKeys + kHalfPad;    // sP rows
  static constexpr int kOutStride = kDim + kFloatPad;          // sO rows (float)
  static constexpr size_t kQ = size_t{kBlockRows} * kHalfStride * 2;
  static constexpr size_t kK = size_t{kBlockKeys} * kHalfStride * 2;
  static constexpr size_t kV = kK;
  static constexpr size_t kS = size_t{kBlockRows} * kScoreStride * 4;
  static constexpr size_t kP = size_t{kBlockRows} * kProbStride * 2;
  static constexpr size_t kO = size_t{kBlockRows} * kOutStride * 4;
  static constexpr size_t kBytes = kQ + kK + kV + kS + kP + kO;
};

// Copies `rows` rows of `width` valid elements (row stride `row_stride`, 16-byte aligned) into a
// [rows][kDim] shared tile, zero-filling columns >= width and rows past `valid_rows`.
template <typename T, int kDim>
__device__ __forceinline__ void load_tile(T* __restrict__ tile, const T* __restrict__ source, int64_t row_stride,
                                          int rows, int valid_rows, int width) {
  constexpr int kChunk = 8;  // 16 bytes of 16-bit values
  constexpr int kChunksPerRow = kDim / kChunk;
  constexpr int kStride = kDim + kHalfPad;
  for (int c = threadIdx.x; c < rows * kChunksPerRow; c += blockDim.x) {
    const int row = c / kChunksPerRow;
    const int col = (c % kChunksPerRow) * kChunk;
    Pack<T, kChunk> pack;
    if (row < valid_rows && col < width) {
      pack = *reinterpret_cast<const Pack<T, kChunk>*>(source + row * row_stride + col);
    } else {
#pragma unroll
      for (int i = 0; i < kChunk; ++i) pack.v[i] = from_float<T>(0.0f);
    }
    *reinterpret_cast<Pack<T, kChunk>*>(tile + row * kStride + col) = pack;
  }
}

template <typename T, int kDim>
__global__ void __launch_bounds__(kWarps * 32)
    flash_attention_kernel(const __grid_constant__ AttentionParams p) {
  using namespace nvcuda;
  using Layout = TileLayout<kDim>;
  extern __shared__ __align__(16) unsigned char shared[];
  T* sQ = reinterpret_cast<T*>(shared);
  T* sK = reinterpret_cast<T*>(shared + Layout::kQ);
  T* sV = reinterpret_cast<T*>(shared + Layout::kQ + Layout::kK);
  float* sS = reinterpret_cast<float*>(shared + Layout::kQ + Layout::kK + Layout::kV);
  T* sP = reinterpret_cast<T*>(shared + Layout::kQ + Layout::kK + Layout::kV + Layout::kS);
  float* sO = reinterpret_cast<float*>(shared + Layout::kQ + Layout::kK + Layout::kV + Layout::kS + Layout::kP);

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int b = blockIdx.z;
  const int h = blockIdx.y;
  const int row0 = blockIdx.x * kBlockRows;
  const T* q = static_cast<const T*>(p.q) + b * p.q_strides[0] + h * p.q_strides[1];
  const T* k = static_cast<const T*>(p.k) + b * p.k_strides[0] + h * p.k_strides[1];
  const T* v = static_cast<const T*>(p.v) + b * p.v_strides[0] + h * p.v_strides[1];
  const T* mask = p.mask ? static_cast<const T*>(p.mask) + b * p.mask_strides[0] + h * p.mask_strides[1] : nullptr;

  load_tile<T, kDim>(sQ, q + row0 * p.q_strides[2], p.q_strides[2], kBlockRows, p.query_length - row0, p.head_dim);
  for (int i = threadIdx.x; i < kBlockRows * Layout::kOutStride; i += blockDim.x) sO[i] = 0.0f;

  const int warp_row = warp * kRowsPerWarp;
  float* warp_scores = sS + warp_row * Layout::kScoreStride;
  T* warp_probs = sP + warp_row * Layout::kProbStride;
  float* warp_out = sO + warp_row * Layout::kOutStride;
  const int my_row = lane >> 1;  // this lane's row within the warp's 16, and which half of it
  const int half = lane & 1;
  const int query = row0 + warp_row + my_row;
  float row_max = -INFINITY, row_sum = 0.0f;

  __syncthreads();  // the Q tile is loaded
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> q_fragments[kDim / 16];
#pragma unroll
  for (int kk = 0; kk < kDim / 16; ++kk) {
    wmma::load_matrix_sync(q_fragments[kk], sQ + warp_row * Layout::kHalfStride + kk * 16, Layout::kHalfStride);
  }

  for (int key0 = 0; key0 < p.key_length; key0 += kBlockKeys) {
    __syncthreads();  // the previous tile's K and V are no longer read
    load_tile<T, kDim>(sK, k + key0 * p.k_strides[2], p.k_strides[2], kBlockKeys, p.key_length - key0, p.head_dim);
    load_tile<T, kDim>(sV, v + key0 * p.v_strides[2], p.v_strides[2], kBlockKeys, p.key_length - key0, p.value_dim);
    __syncthreads();

    // Scores: this warp's 16 rows of Q (fragments kept in registers) times the tile's 64 keys.
#pragma unroll
    for (int n = 0; n < kBlockKeys / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < kDim / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bt;
        wmma::load_matrix_sync(bt, sK + n * 16 * Layout::kHalfStride + kk * 16, Layout::kHalfStride);
        wmma::mma_sync(acc, q_fragments[kk], bt, acc);
      }
      wmma::store_matrix_sync(warp_scores + n * 16, acc, Layout::kScoreStride, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over the tile: a pair of lanes owns each of the warp's 16 rows, 32 keys per
    // lane, so the row statistics need one shuffle and the mask loads are independent.
    {
      const int key_base = key0 + half * 32;
      const float* scores_row = warp_scores + my_row * Layout::kScoreStride + half * 32;
      float s[32];
#pragma unroll
      for (int j = 0; j < 32; j += 4) {
        const float4 v = *reinterpret_cast<const float4*>(scores_row + j);
        s[j] = v.x * p.scale;
        s[j + 1] = v.y * p.scale;
        s[j + 2] = v.z * p.scale;
        s[j + 3] = v.w * p.scale;
      }
      if (mask != nullptr && query < p.query_length) {
        const T* mask_row = mask + query * p.mask_strides[2];
#pragma unroll
        for (int j = 0; j < 32; ++j) {
          if (key_base + j < p.key_length) s[j] += to_float(mask_row[(key_base + j) * p.mask_strides[3]]);
        }
      }
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        if (key_base + j >= p.key_length) s[j] = -INFINITY;
        tile_max = fmaxf(tile_max, s[j]);
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      const float new_max = fmaxf(row_max, tile_max);
      // Every key so far masked: nothing accumulated, probabilities 0 (the sum stays 0).
      const bool empty = new_max == -INFINITY;
      const float rescale = empty ? 1.0f : __expf(row_max - new_max);
      float tile_sum = 0.0f;
      T* probs_row = warp_probs + my_row * Layout::kProbStride + half * 32;
#pragma unroll
      for (int j = 0; j < 32; j += 8) {
        Pack<T, 8> pack;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          // Rounded to the storage type before summing, so the sum matches the P that meets V.
          pack.v[i] = from_float<T>(empty ? 0.0f : __expf(s[j + i] - new_max));
          tile_sum += to_float(pack.v[i]);
        }
        *reinterpret_cast<Pack<T, 8>*>(probs_row + j) = pack;
      }
      tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
      row_max = new_max;
      row_sum = row_sum * rescale + tile_sum;
      if (rescale != 1.0f) {  // the running max moved: shrink what was accumulated so far
        float* out_row = warp_out + my_row * Layout::kOutStride + half * (kDim / 2);
#pragma unroll
        for (int c = 0; c < kDim / 2; ++c) out_row[c] *= rescale;
      }
    }
    __syncwarp();
    // P · V, with this warp's P fragments loaded once per tile.
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> p_fragments[kBlockKeys / 16];
#pragma unroll
    for (int kk = 0; kk < kBlockKeys / 16; ++kk) {
      wmma::load_matrix_sync(p_fragments[kk], warp_probs + kk * 16, Layout::kProbStride);
    }
#pragma unroll
    for (int n = 0; n < kDim / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, warp_out + n * 16, Layout::kOutStride, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kBlockKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bv;
        wmma::load_matrix_sync(bv, sV + kk * 16 * Layout::kHalfStride + n * 16, Layout::kHalfStride);
        wmma::mma_sync(acc, p_fragments[kk], bv, acc);
      }
      wmma::store_matrix_sync(warp_out + n * 16, acc, Layout::kOutStride, wmma::mem_row_major);
    }
    __syncwarp();
  }

  // Normalise and write this warp's rows (each lane its half of its row).
  if (query < p.query_length) {
    T* out = static_cast<T*>(p.out) + b * p.out_strides[0] + h * p.out_strides[1] + query * p.out_strides[2];
    const float* out_row = warp_out + my_row * Layout::kOutStride;
    const int half_width = p.value_dim / 2;
    for (int c = half * half_width; c < (half + 1) * half_width; ++c) {
      out[c * p.out_strides[3]] = from_float<T>(finish(out_row[c], row_sum, p.nan_to_zero));
    }
  }
}

// ---- launch -------------------------------------------------------------------------------------

struct AttentionState : LayerState {
  ops::AttentionGeometry geometry;
  int tile_dim = 0;  // 64 or 128: the head dims padded to the kernel's tile
};

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

// The tensor-core kernel needs more than the default 48 KB of dynamic shared memory.
template <typename T, int kDim>
void set_shared_limit() {
  KILN_CUDA_CHECK(cudaFuncSetAttribute(flash_attention_kernel<T, kDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(TileLayout<kDim>::kBytes)));
}

// Calls f.template operator()<T, kDim>() for the 16-bit dtype and tile of a prepared layer.
template <typename F>
void dispatch_tile(const LaunchContext& ctx, int tile_dim, F&& f) {
  dispatch_float(ctx, ctx.outputs[0].dtype, [&]<typename T>() {
    if constexpr (std::is_same_v<T, float>) {
      ctx.fail(ErrorCode::kInternal, "float32 reached the tensor-core attention kernel");
    } else if (tile_dim == 64) {
      f.template operator()<T, 64>();
    } else {
      f.template operator()<T, 128>();
    }
  });
}

std::unique_ptr<LayerState> prepare_attention(LaunchContext& ctx, size_t* workspace_bytes) {
  *workspace_bytes = 0;
  auto state = std::make_unique<AttentionState>();
  const std::string label = "node '" + std::string(ctx.node_name) + "' (FusedAttention) on cuda";
  const ops::AttentionGeometry& g = state->geometry =
      ops::resolve_attention(label, ctx.attrs, ctx.inputs[0].shape, ctx.inputs[1].shape, ctx.inputs[2].shape,
                             ctx.has_input(3) ? &ctx.inputs[3].shape : nullptr);
  if (!ops::attention_fits_tensor_cores(ctx.outputs[0].dtype, g)) {
    ctx.fail(ErrorCode::kUnsupported, "the CUDA kernel needs float16/bfloat16, head dims multiples of 16 up to 128 ",
             "and K not transposed; got ", dtype_name(ctx.outputs[0].dtype), ", head dim ", g.head_dim,
             ", value dim ", g.value_dim, ctx.attrs.get_int_or("k_transposed", 0) ? ", K transposed" : "");
  }
  state->tile_dim = std::max(g.head_dim, g.value_dim) <= 64 ? 64 : 128;
  dispatch_tile(ctx, state->tile_dim, [&]<typename T, int kDim>() { set_shared_limit<T, kDim>(); });
  return state;
}

void launch_attention(LaunchContext& ctx) {
  const auto* state = dynamic_cast<const AttentionState*>(ctx.state);
  if (state == nullptr) ctx.fail(ErrorCode::kInternal, "launched without a prepared state");
  const ops::AttentionGeometry& g = state->geometry;
  if (ctx.outputs[0].numel() == 0) return;
  const AttentionParams params = make_params(ctx, g);
  // Activations sit at 256-byte and weights at 64-byte offsets, so this only fails for foreign
  // buffers.
  if (!aligned16(params.q) || !aligned16(params.k) || !aligned16(params.v)) {
    ctx.fail(ErrorCode::kInvalidArgument, "Q, K and V must be 16-byte aligned");
  }
  const dim3 grid(static_cast<unsigned>((g.query_length + kBlockRows - 1) / kBlockRows), static_cast<unsigned>(g.heads),
                  static_cast<unsigned>(g.batch));
  dispatch_tile(ctx, state->tile_dim, [&]<typename T, int kDim>() {
    flash_attention_kernel<T, kDim><<<grid, kWarps * 32, TileLayout<kDim>::kBytes, ctx.stream>>>(params);
  });
  check_launch(ctx);
}

}  // namespace

void register_attention_kernels(CudaKernelRegistry& registry) {
  registry.add("FusedAttention", CudaKernel{prepare_attention, launch_attention});
}

}  // namespace kiln::cuda
