// What one thread block of the depthwise convolution kernels does (depthwise_conv_plan.hpp
// describes the plans). Written once for two compilers: nvcc compiles it into the kernels of
// depthwise_conv_kernels.cu, and the host compiler into an emulation that runs a plan's blocks
// thread by thread (tests/unit/depthwise_conv_test.cpp), so the CPU-only build checks the index
// math, the tiling and the 16-byte alignment of every vector access against a reference.
//
// A block runs in two phases with a barrier between them: stage (weights and, for NCHW, the
// input tile into shared memory) and compute (outputs, the epilogue, stores). Element types
// convert through Element<T> (float here; fp16/bf16 in the .cu, a stand-in in the test).
#pragma once

#include <cstdint>

#include "backends/cuda/depthwise_conv_plan.hpp"
#include "ops/scalar_math.h"

#if defined(__CUDACC__)
#define KILN_DW_DEVICE __device__ __forceinline__
#define KILN_DW_UNROLL _Pragma("unroll")
#else
#include <cmath>
#include <cstring>
#include <stdexcept>
#define KILN_DW_DEVICE inline
#define KILN_DW_UNROLL
#endif

namespace kiln::cuda::depthwise {

// Loads (to float) and stores (from float, rounding to nearest) of an element type.
template <typename T>
struct Element;

template <>
struct Element<float> {
  static KILN_DW_DEVICE float load(float v) { return v; }
  static KILN_DW_DEVICE float store(float v) { return v; }
};

// Elements per 16-byte access.
template <typename T>
inline constexpr int kPack = static_cast<int>(16 / sizeof(T));

template <typename T>
struct alignas(16) Pack {
  T v[kPack<T>];
};

KILN_DW_DEVICE float fused_multiply_add(float a, float b, float c) {
#if defined(__CUDACC__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

#if !defined(__CUDACC__)
// The emulation's check of what the GPU requires of a 16-byte access.
inline void require_aligned(const void* address) {
  if (reinterpret_cast<uintptr_t>(address) % 16 != 0) throw std::logic_error("misaligned 16-byte access");
}
#endif

// to[0, kPack<T>) = from[0, kPack<T>); `from` 16-byte aligned.
template <typename T>
KILN_DW_DEVICE void load_pack(const T* from, T* to) {
#if defined(__CUDACC__)
  const Pack<T> pack = *reinterpret_cast<const Pack<T>*>(from);
  KILN_DW_UNROLL
  for (int e = 0; e < kPack<T>; ++e) to[e] = pack.v[e];
#else
  require_aligned(from);
  std::memcpy(to, from, 16);
#endif
}

// to[0, kPack<T>) = from[0, kPack<T>); `to` 16-byte aligned.
template <typename T>
KILN_DW_DEVICE void store_pack(T* to, const T* from) {
#if defined(__CUDACC__)
  Pack<T> pack;
  KILN_DW_UNROLL
  for (int e = 0; e < kPack<T>; ++e) pack.v[e] = from[e];
  *reinterpret_cast<Pack<T>*>(to) = pack;
#else
  require_aligned(to);
  std::memcpy(to, from, 16);
#endif
}

// N floats from shared memory; with N a multiple of 4, `from` must be 16-byte aligned.
template <int N>
KILN_DW_DEVICE void load_floats(const float* from, float (&to)[N]) {
  if constexpr (N % 4 == 0) {
    KILN_DW_UNROLL
    for (int q = 0; q < N; q += 4) {
#if defined(__CUDACC__)
      const float4 four = *reinterpret_cast<const float4*>(from + q);
      to[q] = four.x;
      to[q + 1] = four.y;
      to[q + 2] = four.z;
      to[q + 3] = four.w;
#else
      require_aligned(from + q);
      std::memcpy(to + q, from + q, 16);
#endif
    }
  } else {
    KILN_DW_UNROLL
    for (int e = 0; e < N; ++e) to[e] = from[e];
  }
}

// The epilogue after the bias: + residual, then the scalar table's Relu (NaN stays NaN, as the CPU
// reference and a standalone Relu have it).
KILN_DW_DEVICE float finish(float value, bool relu) { return relu ? kiln_relu<float>(value) : value; }

KILN_DW_DEVICE int min_int(int a, int b) { return a < b ? a : b; }
KILN_DW_DEVICE int max_int(int a, int b) { return a > b ? a : b; }

// A thread's walk over the flat indices thread, thread + threads, ... of a [plane][row][column]
// space (rows, columns >= 1), as (plane, row, column): divisions only at the start, then adds
// with carries (a staging loop may take a dozen steps on narrow planes).
struct Walk {
  int plane, row, column;
  int plane_step, row_step, column_step;
};

KILN_DW_DEVICE Walk walk_start(int thread, int threads, int rows, int columns) {
  const int per_plane = rows * columns;
  Walk w;
  w.plane = thread / per_plane;
  w.row = (thread - w.plane * per_plane) / columns;
  w.column = thread - w.plane * per_plane - w.row * columns;
  w.plane_step = threads / per_plane;
  w.row_step = (threads - w.plane_step * per_plane) / columns;
  w.column_step = threads - w.plane_step * per_plane - w.row_step * columns;
  return w;
}

KILN_DW_DEVICE void walk_next(Walk& w, int rows, int columns) {
  w.column += w.column_step;
  int carry = 0;
  if (w.column >= columns) {
    w.column -= columns;
    carry = 1;
  }
  w.row += w.row_step + carry;  // row_step < rows: at most one wrap
  carry = 0;
  if (w.row >= rows) {
    w.row -= rows;
    carry = 1;
  }
  w.plane += w.plane_step + carry;
}

// The tensors and the convolution's geometry, fields both layouts' argument blocks share.
template <typename Args, typename T>
void set_tensors_and_geometry(Args& a, const DepthwiseConvProblem& p, const T* x, const T* w, const T* bias,
                              const T* residual, T* y) {
  a.x = x;
  a.w = w;
  a.bias = bias;
  a.residual = residual;
  a.y = y;
  a.channels = static_cast<int>(p.channels);
  a.in_h = static_cast<int>(p.in_h);
  a.in_w = static_cast<int>(p.in_w);
  a.out_h = static_cast<int>(p.out_h);
  a.out_w = static_cast<int>(p.out_w);
  a.kernel_h = static_cast<int>(p.kernel_h);
  a.kernel_w = static_cast<int>(p.kernel_w);
  a.stride_h = static_cast<int>(p.stride_h);
  a.stride_w = static_cast<int>(p.stride_w);
  a.pad_top = static_cast<int>(p.pad_top);
  a.pad_left = static_cast<int>(p.pad_left);
}

// ---- NCHW -----------------------------------------------------------------------------------

template <typename T>
struct NchwArgs {
  const T* x = nullptr;
  const T* w = nullptr;
  const T* bias = nullptr;      // null: none
  const T* residual = nullptr;  // null: none
  T* y = nullptr;
  int planes = 0, channels = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int kernel_h = 0, kernel_w = 0, stride_h = 0, stride_w = 0, pad_top = 0, pad_left = 0;
  int strips = 0, tile_rows = 0, tiles = 0, planes_per_block = 0, in_rows = 0, pitch = 0, weight_pitch = 0;
  bool relu = false;
  bool vector_input = false;   // X's rows start 16-byte aligned (in_w % kPack == 0, X aligned)
  bool vector_output = false;  // so do Y's and the residual's
};

template <typename T>
NchwArgs<T> make_nchw_args(const DepthwiseConvPlan& plan, const T* x, const T* w, const T* bias, const T* residual,
                           T* y) {
  const DepthwiseConvProblem& p = plan.problem;
  NchwArgs<T> a;
  set_tensors_and_geometry(a, p, x, w, bias, residual, y);
  a.planes = static_cast<int>(p.batch * p.channels);
  a.strips = plan.nchw.strips;
  a.tile_rows = plan.nchw.tile_rows;
  a.tiles = plan.nchw.tiles;
  a.planes_per_block = plan.nchw.planes_per_block;
  a.in_rows = plan.nchw.in_rows;
  a.pitch = plan.nchw.pitch;
  a.weight_pitch = plan.nchw.weight_pitch;
  a.relu = p.relu;
  const auto aligned = [](const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; };
  a.vector_input = p.in_w % kPack<T> == 0 && aligned(x);
  a.vector_output = p.out_w % kPack<T> == 0 && aligned(y) && (residual == nullptr || aligned(residual));
  return a;
}

// The part of an NCHW block's work that every phase derives from the block index.
struct NchwTile {
  int first_plane;  // planes first_plane .. + planes_per_block (those < planes)
  int oy0;          // first output row
  int rows;         // output rows of this tile
  int iy0;          // input row of staged row 0 (may be negative: padding)
};

template <typename T>
KILN_DW_DEVICE NchwTile nchw_tile(const NchwArgs<T>& a, int block) {
  const int plane_block = block / a.tiles;
  const int tile = block - plane_block * a.tiles;
  NchwTile t;
  t.first_plane = plane_block * a.planes_per_block;
  t.oy0 = tile * a.tile_rows;
  t.rows = min_int(a.tile_rows, a.out_h - t.oy0);
  t.iy0 = t.oy0 * a.stride_h - a.pad_top;
  return t;
}

template <typename T>
KILN_DW_DEVICE float* nchw_weights(const NchwArgs<T>& a, unsigned char* shared, int plane_in_block) {
  return reinterpret_cast<float*>(shared) + plane_in_block * a.weight_pitch;
}

template <typename T>
KILN_DW_DEVICE T* nchw_staged(const NchwArgs<T>& a, unsigned char* shared, int plane_in_block) {
  return reinterpret_cast<T*>(shared + static_cast<size_t>(a.planes_per_block) * a.weight_pitch * sizeof(float)) +
         plane_in_block * a.in_rows * a.pitch;
}

// Phase 1: the planes' weights as floats (rows of round_up(kW, 4)) and the input rows the tile's
// outputs read: staged column col holds input column col - pad_left, zero outside the input.
template <typename T>
KILN_DW_DEVICE void nchw_stage(const NchwArgs<T>& a, int block, int thread, int threads, unsigned char* shared) {
  const NchwTile t = nchw_tile(a, block);
  const int taps = a.kernel_h * a.kernel_w;
  const int weight_row = a.weight_pitch / a.kernel_h;
  for (int i = thread; i < a.planes_per_block * taps; i += threads) {
    const int j = i / taps;
    const int tap = i - j * taps;
    const int plane = t.first_plane + j;
    if (plane >= a.planes) break;
    const int ky = tap / a.kernel_w;
    const int kx = tap - ky * a.kernel_w;
    nchw_weights(a, shared, j)[ky * weight_row + kx] = Element<T>::load(a.w[(plane % a.channels) * taps + tap]);
  }
  const int in_rows = (t.rows - 1) * a.stride_h + a.kernel_h;
  // Columns [0, left) are left padding, [left, left + copy) input columns 0.., the rest zeros.
  const int left = min_int(a.pad_left, a.pitch);
  const int copy = max_int(0, min_int(a.in_w, a.pitch - a.pad_left));
  const int right = a.pitch - left - copy;
  const T zero = Element<T>::store(0.0f);
  if (a.vector_input) {
    constexpr int P = kPack<T>;
    const int chunks = (copy + P - 1) / P;
    for (Walk it = walk_start(thread, threads, in_rows, max_int(chunks, 1));
         chunks > 0 && it.plane < a.planes_per_block; walk_next(it, in_rows, chunks)) {
      const int j = it.plane, r = it.row, q = it.column;
      const int plane = t.first_plane + j;
      const int iy = t.iy0 + r;
      T values[P];
      if (plane < a.planes && iy >= 0 && iy < a.in_h) {
        load_pack(a.x + (plane * a.in_h + iy) * a.in_w + q * P, values);
      } else {
        KILN_DW_UNROLL
        for (int e = 0; e < P; ++e) values[e] = zero;
      }
      T* to = nchw_staged(a, shared, j) + r * a.pitch + left + q * P;
      const int count = min_int(P, copy - q * P);  // the last chunk may pass the staged width
      KILN_DW_UNROLL
      for (int e = 0; e < P; ++e) {
        if (e < count) to[e] = values[e];
      }
    }
  } else {
    for (Walk it = walk_start(thread, threads, in_rows, max_int(copy, 1));
         copy > 0 && it.plane < a.planes_per_block; walk_next(it, in_rows, copy)) {
      const int j = it.plane, r = it.row, col = it.column;
      const int plane = t.first_plane + j;
      const int iy = t.iy0 + r;
      const bool inside = plane < a.planes && iy >= 0 && iy < a.in_h;
      nchw_staged(a, shared, j)[r * a.pitch + left + col] =
          inside ? a.x[(plane * a.in_h + iy) * a.in_w + col] : zero;
    }
  }
  const int halo = left + right;
  for (Walk it = walk_start(thread, threads, in_rows, max_int(halo, 1)); halo > 0 && it.plane < a.planes_per_block;
       walk_next(it, in_rows, halo)) {
    const int h = it.column;
    nchw_staged(a, shared, it.plane)[it.row * a.pitch + (h < left ? h : h + copy)] = zero;
  }
}

// Output columns ox0 .. ox0 + kRowOutputs of one row: + residual, activation, stored (16-byte
// stores where Y allows).
template <typename T>
KILN_DW_DEVICE void nchw_store(const NchwArgs<T>& a, int offset, int ox0, const float (&acc)[kDepthwiseRowOutputs]) {
  constexpr int P = kPack<T>;
  static_assert(kDepthwiseRowOutputs % P == 0, "a run of outputs is whole 16-byte vectors");
  KILN_DW_UNROLL
  for (int first = 0; first < kDepthwiseRowOutputs; first += P) {
    if (a.vector_output && ox0 + first + P <= a.out_w) {
      float values[P];
      KILN_DW_UNROLL
      for (int e = 0; e < P; ++e) values[e] = acc[first + e];
      if (a.residual != nullptr) {
        T residual[P];
        load_pack(a.residual + offset + first, residual);
        KILN_DW_UNROLL
        for (int e = 0; e < P; ++e) values[e] += Element<T>::load(residual[e]);
      }
      T out[P];
      KILN_DW_UNROLL
      for (int e = 0; e < P; ++e) out[e] = Element<T>::store(finish(values[e], a.relu));
      store_pack(a.y + offset + first, out);
    } else {
      KILN_DW_UNROLL
      for (int e = 0; e < P; ++e) {
        if (ox0 + first + e >= a.out_w) break;
        float value = acc[first + e];
        if (a.residual != nullptr) value += Element<T>::load(a.residual[offset + first + e]);
        a.y[offset + first + e] = Element<T>::store(finish(value, a.relu));
      }
    }
  }
}

// Phase 2: each thread computes runs of kRowOutputs outputs along W. KH, KW, SW > 0: that kernel
// size and W stride, the window of each kernel row read as 16-byte vectors into registers; 0:
// runtime loops over the staged elements.
template <typename T, int KH, int KW, int SW>
KILN_DW_DEVICE void nchw_compute(const NchwArgs<T>& a, int block, int thread, int threads, unsigned char* shared) {
  constexpr int V = kDepthwiseRowOutputs;
  const NchwTile t = nchw_tile(a, block);
  const int per_plane = t.rows * a.strips;
  const int stride_w = SW > 0 ? SW : a.stride_w;
  for (int item = thread; item < a.planes_per_block * per_plane; item += threads) {
    const int j = item / per_plane;
    const int rest = item - j * per_plane;
    const int r = rest / a.strips;
    const int strip = rest - r * a.strips;
    const int plane = t.first_plane + j;
    if (plane >= a.planes) break;  // items of later planes are beyond the last plane too
    const int channel = plane % a.channels;
    const float start = a.bias != nullptr ? Element<T>::load(a.bias[channel]) : 0.0f;
    float acc[V];
    KILN_DW_UNROLL
    for (int v = 0; v < V; ++v) acc[v] = start;
    const float* weights = nchw_weights(a, shared, j);
    const T* rows = nchw_staged(a, shared, j) + r * a.stride_h * a.pitch + strip * V * stride_w;
    if constexpr (KH > 0) {
      constexpr int P = kPack<T>;
      constexpr int kWindow = (V - 1) * SW + KW;
      constexpr int kPacks = (kWindow + P - 1) / P;
      constexpr int kWeightRow = (KW + 3) / 4 * 4;
      KILN_DW_UNROLL
      for (int ky = 0; ky < KH; ++ky) {
        T raw[kPacks * P];
        KILN_DW_UNROLL
        for (int q = 0; q < kPacks; ++q) load_pack(rows + ky * a.pitch + q * P, raw + q * P);
        float in[kWindow];
        KILN_DW_UNROLL
        for (int i = 0; i < kWindow; ++i) in[i] = Element<T>::load(raw[i]);
        float w[kWeightRow];
        load_floats(weights + ky * kWeightRow, w);
        KILN_DW_UNROLL
        for (int kx = 0; kx < KW; ++kx) {
          KILN_DW_UNROLL
          for (int v = 0; v < V; ++v) acc[v] = fused_multiply_add(w[kx], in[v * SW + kx], acc[v]);
        }
      }
    } else {
      const int weight_row = a.weight_pitch / a.kernel_h;
      for (int ky = 0; ky < a.kernel_h; ++ky) {
        const T* row = rows + ky * a.pitch;
        for (int kx = 0; kx < a.kernel_w; ++kx) {
          const float w = weights[ky * weight_row + kx];
          KILN_DW_UNROLL
          for (int v = 0; v < V; ++v) acc[v] = fused_multiply_add(w, Element<T>::load(row[v * stride_w + kx]), acc[v]);
        }
      }
    }
    const int ox0 = strip * V;
    nchw_store(a, (plane * a.out_h + t.oy0 + r) * a.out_w + ox0, ox0, acc);
  }
}

// ---- NHWC -----------------------------------------------------------------------------------

template <typename T>
struct NhwcArgs {
  const T* x = nullptr;
  const T* w = nullptr;
  const T* bias = nullptr;
  const T* residual = nullptr;
  T* y = nullptr;
  int channels = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int kernel_h = 0, kernel_w = 0, stride_h = 0, stride_w = 0, pad_top = 0, pad_left = 0;
  int groups_per_block = 0, slots = 0, strips_per_row = 0, strips = 0, iterations = 0;
  bool relu = false;
};

// `plan` is plan.nhwc_vector or plan.nhwc_scalar.
template <typename T>
NhwcArgs<T> make_nhwc_args(const DepthwiseConvPlan& plan, const DepthwiseNhwcPlan& nhwc, const T* x, const T* w,
                           const T* bias, const T* residual, T* y) {
  const DepthwiseConvProblem& p = plan.problem;
  NhwcArgs<T> a;
  set_tensors_and_geometry(a, p, x, w, bias, residual, y);
  a.groups_per_block = nhwc.groups_per_block;
  a.slots = nhwc.slots;
  a.strips_per_row = nhwc.strips_per_row;
  a.strips = static_cast<int>(nhwc.strips);
  a.iterations = nhwc.iterations;
  a.relu = p.relu;
  return a;
}

// Whether the 16-byte channel vectors of plan.nhwc_vector can run on these tensors.
template <typename T>
bool nhwc_vectors_fit(const DepthwiseConvPlan& plan, const T* x, const T* residual, const T* y) {
  const auto aligned = [](const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; };
  return plan.nhwc_vector.threads > 0 && aligned(x) && aligned(y) && (residual == nullptr || aligned(residual));
}

// P channels at `from` (16-byte aligned when P > 1) as floats.
template <typename T, int P>
KILN_DW_DEVICE void load_channels(const T* from, float (&to)[P]) {
  if constexpr (P == 1) {
    to[0] = Element<T>::load(*from);
  } else {
    static_assert(P == kPack<T>, "channel vectors are 16 bytes");
    T raw[P];
    load_pack(from, raw);
    KILN_DW_UNROLL
    for (int e = 0; e < P; ++e) to[e] = Element<T>::load(raw[e]);
  }
}

// The epilogue of one NHWC run: output pixels ox0 .. ox0 + kPixelOutputs - 1 (those inside the
// row) of output row `row` (n * out_h + oy), P channels from `channel`: + residual, the Relu,
// rounding to T, stored (16 bytes at a time when P > 1). Both NHWC kernels end this way.
template <typename T, int P, typename Args>
KILN_DW_DEVICE void nhwc_store_run(const Args& a, int row, int ox0, int channel,
                                   const float (&acc)[kDepthwisePixelOutputs][P]) {
  KILN_DW_UNROLL
  for (int v = 0; v < kDepthwisePixelOutputs; ++v) {
    if (ox0 + v >= a.out_w) break;
    const int offset = (row * a.out_w + ox0 + v) * a.channels + channel;
    float values[P];
    KILN_DW_UNROLL
    for (int e = 0; e < P; ++e) values[e] = acc[v][e];
    if (a.residual != nullptr) {
      float residual[P];
      load_channels<T, P>(a.residual + offset, residual);
      KILN_DW_UNROLL
      for (int e = 0; e < P; ++e) values[e] += residual[e];
    }
    T out[P];
    KILN_DW_UNROLL
    for (int e = 0; e < P; ++e) out[e] = Element<T>::store(finish(values[e], a.relu));
    if constexpr (P == 1) {
      a.y[offset] = out[0];
    } else {
      store_pack(a.y + offset, out);
    }
  }
}

// Phase 1: the weights of channel chunk `chunk` (groups_per_block * P channels) as floats,
// [tap][channel of the chunk]. W's slice for the chunk is contiguous: coalesced reads.
template <typename T, int P>
KILN_DW_DEVICE void nhwc_stage(const NhwcArgs<T>& a, int chunk, int thread, int threads, unsigned char* shared) {
  float* weights = reinterpret_cast<float*>(shared);
  const int taps = a.kernel_h * a.kernel_w;
  const int chunk_channels = a.groups_per_block * P;
  const T* from = a.w + chunk * chunk_channels * taps;
  for (int i = thread; i < chunk_channels * taps; i += threads) {
    const int channel = i / taps;
    const int tap = i - channel * taps;
    weights[tap * chunk_channels + channel] = Element<T>::load(from[i]);
  }
}

// Phase 2: each thread computes P channels of runs of kPixelOutputs output pixels along W,
// walking `iterations` sets of runs. KH, KW, SW > 0: that kernel size and W stride, a kernel
// row's weights in registers; 0: runtime loops.
template <typename T, int P, int KH, int KW, int SW>
KILN_DW_DEVICE void nhwc_compute(const NhwcArgs<T>& a, int pixel_block, int chunk, int thread,
                                 unsigned char* shared) {
  constexpr int VW = kDepthwisePixelOutputs;
  const int group = thread % a.groups_per_block;
  const int slot = thread / a.groups_per_block;
  const int chunk_channels = a.groups_per_block * P;
  const int channel = chunk * chunk_channels + group * P;
  const float* weights = reinterpret_cast<const float*>(shared) + group * P;
  const int stride_w = SW > 0 ? SW : a.stride_w;
  float start[P];
  KILN_DW_UNROLL
  for (int e = 0; e < P; ++e) start[e] = a.bias != nullptr ? Element<T>::load(a.bias[channel + e]) : 0.0f;
  for (int it = 0; it < a.iterations; ++it) {
    const int strip = (pixel_block * a.iterations + it) * a.slots + slot;
    if (strip >= a.strips) return;
    const int row = strip / a.strips_per_row;  // n * out_h + oy
    const int ox0 = (strip - row * a.strips_per_row) * VW;
    const int n = row / a.out_h;
    const int oy = row - n * a.out_h;
    float acc[VW][P];
    KILN_DW_UNROLL
    for (int v = 0; v < VW; ++v) {
      KILN_DW_UNROLL
      for (int e = 0; e < P; ++e) acc[v][e] = start[e];
    }
    const int ix0 = ox0 * stride_w - a.pad_left;
    const int kernel_h = KH > 0 ? KH : a.kernel_h;
    for (int ky = 0; ky < kernel_h; ++ky) {
      const int iy = oy * a.stride_h - a.pad_top + ky;
      if (iy < 0 || iy >= a.in_h) continue;
      const T* pixels = a.x + (n * a.in_h + iy) * a.in_w * a.channels + channel;
      if constexpr (KH > 0) {
        constexpr int kWindow = (VW - 1) * SW + KW;
        float w[KW][P];
        KILN_DW_UNROLL
        for (int kx = 0; kx < KW; ++kx) load_floats(weights + (ky * KW + kx) * chunk_channels, w[kx]);
        KILN_DW_UNROLL
        for (int i = 0; i < kWindow; ++i) {
          const int ix = ix0 + i;
          if (ix < 0 || ix >= a.in_w) continue;
          float in[P];
          load_channels<T, P>(pixels + ix * a.channels, in);
          KILN_DW_UNROLL
          for (int v = 0; v < VW; ++v) {
            const int kx = i - v * SW;
            if (kx < 0 || kx >= KW) continue;
            KILN_DW_UNROLL
            for (int e = 0; e < P; ++e) acc[v][e] = fused_multiply_add(w[kx][e], in[e], acc[v][e]);
          }
        }
      } else {
        for (int kx = 0; kx < a.kernel_w; ++kx) {
          float w[P];
          load_floats(weights + (ky * a.kernel_w + kx) * chunk_channels, w);
          KILN_DW_UNROLL
          for (int v = 0; v < VW; ++v) {
            const int ix = ix0 + v * stride_w + kx;
            if (ix < 0 || ix >= a.in_w) continue;
            float in[P];
            load_channels<T, P>(pixels + ix * a.channels, in);
            KILN_DW_UNROLL
            for (int e = 0; e < P; ++e) acc[v][e] = fused_multiply_add(w[e], in[e], acc[v][e]);
          }
        }
      }
    }
    nhwc_store_run<T, P>(a, row, ox0, channel, acc);
  }
}

// ---- NHWC, tiled ---------------------------------------------------------------------------

template <typename T>
struct NhwcTileArgs {
  const T* x = nullptr;
  const T* w = nullptr;
  const T* bias = nullptr;
  const T* residual = nullptr;
  T* y = nullptr;
  int channels = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int kernel_h = 0, kernel_w = 0, stride_h = 0, stride_w = 0, pad_top = 0, pad_left = 0;
  int groups_per_block = 0, tile_h = 0, tile_w = 0, in_rows = 0, in_cols = 0, pixel_pitch = 0, tiles_h = 0,
      tiles_w = 0;
  bool relu = false;
};

template <typename T>
NhwcTileArgs<T> make_nhwc_tile_args(const DepthwiseConvPlan& plan, const T* x, const T* w, const T* bias,
                                    const T* residual, T* y) {
  const DepthwiseNhwcTilePlan& t = plan.nhwc_tiled;
  NhwcTileArgs<T> a;
  set_tensors_and_geometry(a, plan.problem, x, w, bias, residual, y);
  a.groups_per_block = t.groups_per_block;
  a.tile_h = t.tile_h;
  a.tile_w = t.tile_w;
  a.in_rows = t.in_rows;
  a.in_cols = t.in_cols;
  a.pixel_pitch = t.pixel_pitch;
  a.tiles_h = t.tiles_h;
  a.tiles_w = t.tiles_w;
  a.relu = plan.problem.relu;
  return a;
}

// Whether the tiled kernel can run plan on these tensors (it reads and writes 16-byte vectors).
template <typename T>
bool nhwc_tiled_fits(const DepthwiseConvPlan& plan, const T* x, const T* residual, const T* y) {
  return plan.nhwc_tiled.threads > 0 && nhwc_vectors_fit(plan, x, residual, y);
}

// Where a tiled block's tile lies: image n, first output row and column, and the input pixel
// that staged pixel (0, 0) holds (negative: padding).
struct NhwcTile {
  int n, oy0, ox0, iy0, ix0;
};

template <typename T>
KILN_DW_DEVICE NhwcTile nhwc_tile(const NhwcTileArgs<T>& a, int block) {
  const int per_image = a.tiles_h * a.tiles_w;
  NhwcTile t;
  t.n = block / per_image;
  const int in_image = block - t.n * per_image;
  const int tile_row = in_image / a.tiles_w;
  t.oy0 = tile_row * a.tile_h;
  t.ox0 = (in_image - tile_row * a.tiles_w) * a.tile_w;
  t.iy0 = t.oy0 * a.stride_h - a.pad_top;
  t.ix0 = t.ox0 * a.stride_w - a.pad_left;
  return t;
}

// Phase 1: the chunk's weights as floats, [tap][channel of the chunk] (as nhwc_stage), then the
// tile's input pixels, P channels (16 bytes) at a time, zeros outside the image.
template <typename T, int P>
KILN_DW_DEVICE void nhwc_tile_stage(const NhwcTileArgs<T>& a, int block, int chunk, int thread, int threads,
                                    unsigned char* shared) {
  float* weights = reinterpret_cast<float*>(shared);
  const int taps = a.kernel_h * a.kernel_w;
  const int chunk_channels = a.groups_per_block * P;
  const T* from = a.w + chunk * chunk_channels * taps;
  for (int i = thread; i < chunk_channels * taps; i += threads) {
    const int channel = i / taps;
    const int tap = i - channel * taps;
    weights[tap * chunk_channels + channel] = Element<T>::load(from[i]);
  }
  T* staged = reinterpret_cast<T*>(shared + static_cast<size_t>(taps) * chunk_channels * sizeof(float));
  const NhwcTile t = nhwc_tile(a, block);
  const T zero = Element<T>::store(0.0f);
  const int count = a.in_rows * a.in_cols * a.groups_per_block;
  for (int i = thread; i < count; i += threads) {
    const int group = i % a.groups_per_block;
    const int pixel = i / a.groups_per_block;
    const int row = pixel / a.in_cols;
    const int col = pixel - row * a.in_cols;
    const int iy = t.iy0 + row, ix = t.ix0 + col;
    T values[P];
    if (iy >= 0 && iy < a.in_h && ix >= 0 && ix < a.in_w) {
      load_pack(a.x + ((t.n * a.in_h + iy) * a.in_w + ix) * a.channels + chunk * chunk_channels + group * P, values);
    } else {
      KILN_DW_UNROLL
      for (int e = 0; e < P; ++e) values[e] = zero;
    }
    store_pack(staged + pixel * a.pixel_pitch + group * P, values);
  }
}

// Phase 2: each thread computes P channels of one run of kPixelOutputs output pixels along W of
// the tile, reading only staged pixels (the halo and padding are there, so no bounds checks).
template <typename T, int P, int KH, int KW, int SW>
KILN_DW_DEVICE void nhwc_tile_compute(const NhwcTileArgs<T>& a, int block, int chunk, int thread,
                                      unsigned char* shared) {
  static_assert(KH > 0 && KW > 0 && SW > 0, "the tiled kernel has specialised shapes only");
  constexpr int VW = kDepthwisePixelOutputs;
  constexpr int kWindow = (VW - 1) * SW + KW;
  const int group = thread % a.groups_per_block;
  const int run = thread / a.groups_per_block;
  const int runs_per_row = a.tile_w / VW;
  const int sy = run / runs_per_row;
  const int sx = run - sy * runs_per_row;
  const NhwcTile t = nhwc_tile(a, block);
  const int oy = t.oy0 + sy, ox0 = t.ox0 + sx * VW;
  if (sy >= a.tile_h || oy >= a.out_h || ox0 >= a.out_w) return;
  const int chunk_channels = a.groups_per_block * P;
  const int channel = chunk * chunk_channels + group * P;
  const float* weights = reinterpret_cast<const float*>(shared) + group * P;
  const T* staged = reinterpret_cast<const T*>(shared + static_cast<size_t>(KH * KW) * chunk_channels * sizeof(float));
  float acc[VW][P];
  KILN_DW_UNROLL
  for (int e = 0; e < P; ++e) {
    const float start = a.bias != nullptr ? Element<T>::load(a.bias[channel + e]) : 0.0f;
    KILN_DW_UNROLL
    for (int v = 0; v < VW; ++v) acc[v][e] = start;
  }
  KILN_DW_UNROLL
  for (int ky = 0; ky < KH; ++ky) {
    const T* pixels = staged + ((sy * a.stride_h + ky) * a.in_cols + sx * VW * SW) * a.pixel_pitch + group * P;
    float w[KW][P];
    KILN_DW_UNROLL
    for (int kx = 0; kx < KW; ++kx) load_floats(weights + (ky * KW + kx) * chunk_channels, w[kx]);
    KILN_DW_UNROLL
    for (int i = 0; i < kWindow; ++i) {
      float in[P];
      load_channels<T, P>(pixels + i * a.pixel_pitch, in);
      KILN_DW_UNROLL
      for (int v = 0; v < VW; ++v) {
        const int kx = i - v * SW;
        if (kx < 0 || kx >= KW) continue;
        KILN_DW_UNROLL
        for (int e = 0; e < P; ++e) acc[v][e] = fused_multiply_add(w[kx][e], in[e], acc[v][e]);
      }
    }
  }
  nhwc_store_run<T, P>(a, t.n * a.out_h + oy, ox0, channel, acc);
}

// Calls f.template operator()<KH, KW, SW>() for the compiled specialisation of a `kernel`-square
// window (3, 5, 7; stride 1 or 2 along W), <0, 0, 0> for the generic kernel. The launcher and the
// CPU emulation in the tests dispatch the same way.
template <typename F>
void with_kernel_shape(int kernel, int64_t stride_w, F&& f) {
  const bool unit = stride_w == 1;
  switch (kernel) {
    case 3: unit ? f.template operator()<3, 3, 1>() : f.template operator()<3, 3, 2>(); return;
    case 5: unit ? f.template operator()<5, 5, 1>() : f.template operator()<5, 5, 2>(); return;
    case 7: unit ? f.template operator()<7, 7, 1>() : f.template operator()<7, 7, 2>(); return;
    default: f.template operator()<0, 0, 0>(); return;
  }
}

}  // namespace kiln::cuda::depthwise
