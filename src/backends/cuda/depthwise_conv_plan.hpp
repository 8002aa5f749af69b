// kiln's own depthwise convolution on CUDA: which convolutions it runs (the Conv layer offers it
// as a tactic beside cuDNN's algorithms for those) and how a launch is laid out. Plain C++ (no
// CUDA headers): the CPU-only build tests the predicate and the plans, and the host emulation of
// depthwise_conv_block.hpp runs them.
//
// Layouts (the Conv layer's, ops/conv_ops.cpp): NCHW X [N, C, H, W], W [C, 1, kH, kW]; NHWC
// (kiln_layout) X [N, H, W, C], W [C, kH, kW, 1]. Either way W holds each channel's kH x kW taps
// contiguously. y = relu?(conv(x) + bias + residual), accumulated in float32.
//
// NCHW: a block owns one row tile of one or more (n, c) planes; it stages the tile's input rows
// (with the halo and zero padding) and the planes' weights in shared memory, then each thread
// computes 8 outputs along W of one row from a window of the staged rows read with 16-byte loads.
// NHWC: a block owns a chunk of channels (16 bytes per thread: 8 fp16/bf16 or 4 fp32 channels)
// and runs of 4 output pixels along W; the chunk's weights are staged in shared memory, a kernel
// row of them held in registers while the thread walks the input pixels of that row. Two kernels:
// "rows" reads the input pixels from global memory (through L1) as it walks runs down the rows;
// "tiled" owns a 2-D tile of output pixels and first stages the input tile it reads (halo and
// zero padding included) in shared memory, so each input pixel comes from global memory about
// once instead of once per kernel row that reads it. Builds time both (tactics kiln_depthwise and
// kiln_depthwise_tiled).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.hpp"
#include "kiln/types.hpp"

namespace kiln::cuda {

// KILN_DEPTHWISE: unset or empty: the own kernel is a tactic like cuDNN's algorithms (and the
// choice outside a tuning run); "off": cuDNN only; "force": the own kernel whenever it supports
// the convolution, whatever is recorded; "tiled": as "force", with the tiled NHWC kernel wherever
// it applies.
enum class DepthwiseMode { kAuto, kOff, kForce, kForceTiled };

// `value` is the variable's value (null when unset). Throws kInvalidArgument naming the variable
// and the value for anything but "", "off" and "force".
inline DepthwiseMode parse_depthwise_mode(const char* value) {
  if (value == nullptr || std::string(value).empty()) return DepthwiseMode::kAuto;
  const std::string text(value);
  if (text == "off") return DepthwiseMode::kOff;
  if (text == "force") return DepthwiseMode::kForce;
  if (text == "tiled") return DepthwiseMode::kForceTiled;
  fail(ErrorCode::kInvalidArgument, "KILN_DEPTHWISE must be 'off', 'force' or 'tiled' (or unset), got '", text, "'");
}

// One 2-D convolution as the Conv layer has it, dims in NCHW order whatever the layout.
struct DepthwiseConvProblem {
  DType dtype = DType::kFloat32;  // X, W, B, residual and Y alike
  bool nhwc = false;
  int64_t batch = 0, channels = 0;  // N, C_in
  int64_t out_channels = 0;         // W's dim 0 (C_out)
  int64_t weight_channels = 0;      // W's C_in / group dim
  int64_t group = 1;
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 0, kernel_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0;  // the end pads follow from out_h and out_w
  bool bias = false, residual = false, relu = false;
};

inline constexpr int kDepthwiseThreads = 256;       // most threads per block
inline constexpr int kDepthwiseRowOutputs = 8;      // NCHW: outputs along W per thread
inline constexpr int kDepthwisePixelOutputs = 4;    // NHWC: output pixels along W per thread
inline constexpr int64_t kDepthwiseMaxKernel = 32;  // larger kernels: cuDNN
// Dynamic shared memory per block: at most the default 48 KiB, so no launch needs an opt-in.
inline constexpr int64_t kDepthwiseSharedBytes = 48 * 1024;

// Elements of `dtype` in one 16-byte access: 4 float32, 8 float16/bfloat16.
inline int depthwise_vector_width(DType dtype) { return dtype == DType::kFloat32 ? 4 : 8; }

// The compiled specialisation that runs `problem`: 3, 5 or 7 for square kernels of that size with
// a W stride of 1 or 2 (kernel width and stride as template parameters, the window in
// registers), 0 for the generic kernel (runtime loops).
inline int depthwise_specialized_kernel(const DepthwiseConvProblem& problem) {
  const int64_t k = problem.kernel_h;
  if (k != problem.kernel_w || (k != 3 && k != 5 && k != 7)) return 0;
  return problem.stride_w == 1 || problem.stride_w == 2 ? static_cast<int>(k) : 0;
}

// NCHW launch: blocks x threads, `shared_bytes` of dynamic shared memory holding, per plane of
// the block, `weight_pitch` floats of weights (kH rows of round_up(kW, 4)) and then the staged
// input rows (`in_rows` x `pitch` elements each).
struct DepthwiseNchwPlan {
  int strips = 0;            // thread runs of 8 outputs per output row: ceil(out_w / 8)
  int tile_rows = 0;         // output rows of a block (the last tile of a plane may have fewer)
  int tiles = 0;             // row tiles per plane
  int planes_per_block = 0;  // (n, c) planes per block (> 1 for small planes)
  int in_rows = 0;           // staged input rows per plane: (tile_rows - 1) * stride_h + kernel_h
  int pitch = 0;             // elements per staged row, a multiple of 16 bytes
  int weight_pitch = 0;      // floats of weights per plane
  int threads = 0;           // 0: no plan fits in shared memory
  int64_t blocks = 0;
  int64_t shared_bytes = 0;
};

// NHWC launch: grid (pixel_blocks, channel_blocks) x threads. A block's threads are
// `groups_per_block` channel groups of `vector` channels (fastest) times `slots` runs of 4 output
// pixels; it walks `iterations` sets of `slots` runs. Dynamic shared memory: the channel chunk's
// weights as [kH * kW][groups_per_block * vector] floats.
struct DepthwiseNhwcPlan {
  int vector = 0;            // channels per thread
  int groups_per_block = 0;  // channel groups per block, a power of two dividing C / vector
  int slots = 0;
  int strips_per_row = 0;    // ceil(out_w / 4)
  int64_t strips = 0;        // N * out_h * strips_per_row
  int iterations = 0;
  int64_t pixel_blocks = 0;
  int64_t channel_blocks = 0;
  int threads = 0;           // 0: no plan (C not a multiple of `vector`, or weights too large)
  int64_t shared_bytes = 0;
};

// NHWC tiled launch: grid (blocks, channel_blocks) x threads; block b owns output tile
// (n, tile row, tile column) = (b / (tiles_h * tiles_w), (b / tiles_w) % tiles_h, b % tiles_w)
// of tile_h x tile_w pixels and `groups_per_block` groups of `vector` channels. Its threads are
// the groups (fastest) times runs of 4 pixels along W (tile_w / 4 per tile row) times tile_h
// rows. Dynamic shared memory: the chunk's weights as [kH * kW][groups_per_block * vector]
// floats, then the staged input as [in_rows][in_cols][pixel_pitch] elements.
struct DepthwiseNhwcTilePlan {
  int vector = 0;
  int groups_per_block = 0;
  int tile_h = 0, tile_w = 0;    // output pixels per tile (tile_w a multiple of 4)
  int in_rows = 0, in_cols = 0;  // staged input pixels: (tile - 1) * stride + kernel per axis
  int pixel_pitch = 0;           // elements per staged pixel: the chunk's channels and 16 bytes of
                                 // padding, so that a warp's runs fall in different banks
  int tiles_h = 0, tiles_w = 0;
  int64_t blocks = 0;  // N * tiles_h * tiles_w
  int64_t channel_blocks = 0;
  int threads = 0;  // 0: no plan (generic kernel shape, C not a multiple of `vector`, tile too large)
  int64_t shared_bytes = 0;
};

struct DepthwiseConvPlan {
  DepthwiseConvProblem problem;
  int kernel = 0;  // depthwise_specialized_kernel(problem)
  DepthwiseNchwPlan nchw;                  // problem.nhwc false
  DepthwiseNhwcPlan nhwc_vector;           // problem.nhwc: 16-byte channel vectors, when C allows
  DepthwiseNhwcPlan nhwc_scalar;           // problem.nhwc: one channel per thread (C odd, or
                                           // tensors not 16-byte aligned at launch)
  DepthwiseNhwcTilePlan nhwc_tiled;        // problem.nhwc: the tiled kernel, when it applies
  bool tiled = false;  // the launch runs nhwc_tiled (where the tensors allow 16-byte vectors)
};

namespace detail {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

inline DepthwiseNchwPlan plan_depthwise_nchw(const DepthwiseConvProblem& p) {
  const int64_t vector = depthwise_vector_width(p.dtype);
  const int64_t element_bytes = 16 / vector;
  constexpr int64_t kOutputs = kDepthwiseRowOutputs;
  DepthwiseNchwPlan plan;
  const int64_t strips = ceil_div(p.out_w, kOutputs);
  // A thread reads its window as whole 16-byte vectors from an aligned start (kOutputs *
  // stride_w elements per run are a multiple of 16 bytes), so rows hold the last run's vectors.
  const int64_t window = (kOutputs - 1) * p.stride_w + p.kernel_w;
  const int64_t pitch = round_up((strips - 1) * kOutputs * p.stride_w + round_up(window, vector), vector);
  const int64_t weight_pitch = p.kernel_h * round_up(p.kernel_w, 4);
  const int64_t planes = p.batch * p.channels;
  // About kDepthwiseThreads runs per block: whole planes (several when they are small) or
  // balanced row tiles of one.
  const int64_t rows_per_block = std::max<int64_t>(1, kDepthwiseThreads / strips);
  int64_t tile_rows = std::min(p.out_h, rows_per_block);
  int64_t planes_per_block =
      p.out_h <= rows_per_block ? std::clamp<int64_t>(rows_per_block / p.out_h, 1, planes) : 1;
  tile_rows = ceil_div(p.out_h, ceil_div(p.out_h, tile_rows));
  const auto shared_bytes = [&](int64_t rows, int64_t per_block) {
    const int64_t in_rows = (rows - 1) * p.stride_h + p.kernel_h;
    return per_block * (weight_pitch * 4 + in_rows * pitch * element_bytes);
  };
  while (shared_bytes(tile_rows, planes_per_block) > kDepthwiseSharedBytes && planes_per_block > 1) {
    planes_per_block = std::max<int64_t>(1, planes_per_block / 2);
  }
  while (shared_bytes(tile_rows, planes_per_block) > kDepthwiseSharedBytes && tile_rows > 1) {
    tile_rows = ceil_div(tile_rows, 2);
  }
  if (shared_bytes(tile_rows, planes_per_block) > kDepthwiseSharedBytes) return plan;
  const int64_t tiles = ceil_div(p.out_h, tile_rows);
  tile_rows = ceil_div(p.out_h, tiles);  // balance the tiles (never more rows than before)
  plan.strips = static_cast<int>(strips);
  plan.tile_rows = static_cast<int>(tile_rows);
  plan.tiles = static_cast<int>(tiles);
  plan.planes_per_block = static_cast<int>(planes_per_block);
  plan.in_rows = static_cast<int>((tile_rows - 1) * p.stride_h + p.kernel_h);
  plan.pitch = static_cast<int>(pitch);
  plan.weight_pitch = static_cast<int>(weight_pitch);
  const int64_t runs = planes_per_block * tile_rows * strips;
  plan.threads = static_cast<int>(std::min<int64_t>(kDepthwiseThreads, round_up(runs, 32)));
  plan.blocks = ceil_div(planes, planes_per_block) * tiles;
  plan.shared_bytes = shared_bytes(tile_rows, planes_per_block);
  return plan;
}

inline DepthwiseNhwcPlan plan_depthwise_nhwc(const DepthwiseConvProblem& p, int vector, int multiprocessors) {
  DepthwiseNhwcPlan plan;
  if (p.channels % vector != 0) return plan;
  const int64_t groups = p.channels / vector;
  const int64_t taps = p.kernel_h * p.kernel_w;
  // Channel groups per block: with 16-byte vectors at most 8, so that a warp's weight loads touch
  // at most 128 bytes (one shared-memory wavefront, the lanes of a group reading the same words).
  int64_t per_block = 1;
  while (per_block * 2 <= (vector == 1 ? 32 : 8) && groups % (per_block * 2) == 0) per_block *= 2;
  while (taps * per_block * vector * 4 > kDepthwiseSharedBytes && per_block > 1) per_block /= 2;
  if (taps * per_block * vector * 4 > kDepthwiseSharedBytes) return plan;
  const int64_t strips_per_row = ceil_div(p.out_w, kDepthwisePixelOutputs);
  const int64_t strips = p.batch * p.out_h * strips_per_row;
  const int64_t slots = std::min<int64_t>(kDepthwiseThreads / per_block, strips);
  const int64_t slot_sets = ceil_div(strips, slots);
  const int64_t channel_blocks = groups / per_block;
  if (channel_blocks > 65535) return plan;  // grid.y
  // A block walks several slot sets down the rows (its weights staged once, the rows it read last
  // still in L1), as long as that leaves about 8 blocks per multiprocessor.
  const int64_t target_blocks = 8 * static_cast<int64_t>(std::max(1, multiprocessors));
  const int64_t iterations = std::clamp<int64_t>(slot_sets * channel_blocks / target_blocks, 1, 8);
  plan.vector = vector;
  plan.groups_per_block = static_cast<int>(per_block);
  plan.slots = static_cast<int>(slots);
  plan.strips_per_row = static_cast<int>(strips_per_row);
  plan.strips = strips;
  plan.iterations = static_cast<int>(iterations);
  plan.pixel_blocks = ceil_div(slot_sets, iterations);
  plan.channel_blocks = channel_blocks;
  plan.threads = static_cast<int>(per_block * slots);
  plan.shared_bytes = taps * per_block * vector * 4;
  return plan;
}

// Per candidate channel chunk (groups per block) and tile width (runs of 4 pixels per tile row),
// the tallest tile that fits the block and shared memory. Kept: the one with the least estimated
// time, its work (each output's taps, plus staging each input pixel of the tile, halo included,
// as 4 taps' worth) divided by how well it fills the GPU (about 1024 resident threads per
// multiprocessor wanted; shared memory and the block size bound the blocks per multiprocessor).
inline DepthwiseNhwcTilePlan plan_depthwise_nhwc_tiled(const DepthwiseConvProblem& p, int kernel, int multiprocessors) {
  DepthwiseNhwcTilePlan plan;
  const int64_t vector = depthwise_vector_width(p.dtype);
  if (kernel == 0 || p.channels % vector != 0) return plan;
  const DepthwiseNhwcPlan rows = plan_depthwise_nhwc(p, static_cast<int>(vector), 1);
  if (rows.threads == 0) return plan;
  constexpr int64_t kSharedPerMultiprocessor = 227 * 1024;  // sm_80 / sm_90, less a block's reserve
  constexpr double kWantedThreads = 1024.0;
  const int64_t element_bytes = 16 / vector;
  const int64_t taps = p.kernel_h * p.kernel_w;
  const double sms = multiprocessors > 0 ? multiprocessors : 132;
  double best_cost = -1.0;
  for (int64_t groups = rows.groups_per_block; groups >= 1; groups /= 2) {
    const int64_t chunk_channels = groups * vector;
    const int64_t pitch = chunk_channels + vector;  // 16 bytes of padding
    const int64_t weight_bytes = taps * chunk_channels * 4;
    const int64_t slots = kDepthwiseThreads / groups;
    for (int64_t runs = 1; runs <= slots; runs *= 2) {
      const int64_t tile_w = runs * kDepthwisePixelOutputs;
      if (runs > 1 && (runs / 2) * kDepthwisePixelOutputs >= p.out_w) break;  // already as wide as the image
      const int64_t in_cols = (tile_w - 1) * p.stride_w + p.kernel_w;
      int64_t tile_h = std::min<int64_t>(slots / runs, p.out_h);
      const auto bytes = [&](int64_t h) {
        return weight_bytes + ((h - 1) * p.stride_h + p.kernel_h) * in_cols * pitch * element_bytes;
      };
      while (tile_h > 1 && bytes(tile_h) > kDepthwiseSharedBytes) --tile_h;
      if (bytes(tile_h) > kDepthwiseSharedBytes) continue;
      const int64_t tiles_h = ceil_div(p.out_h, tile_h), tiles_w = ceil_div(p.out_w, tile_w);
      tile_h = ceil_div(p.out_h, tiles_h);  // balance the tiles (never taller than before)
      const int64_t in_rows = (tile_h - 1) * p.stride_h + p.kernel_h;
      const int64_t threads = groups * runs * tile_h;
      const int64_t blocks = p.batch * tiles_h * tiles_w * (p.channels / chunk_channels);
      const int64_t per_multiprocessor =
          std::min({kSharedPerMultiprocessor / bytes(tile_h), int64_t{2048} / round_up(threads, 32), int64_t{32}});
      const double resident = static_cast<double>(std::min<int64_t>(per_multiprocessor, ceil_div(blocks, 132))) *
                              static_cast<double>(threads);
      const double fill = std::min(1.0, resident / kWantedThreads) *
                          std::min(1.0, static_cast<double>(blocks * threads) / (sms * kWantedThreads));
      const double work = static_cast<double>(blocks) * static_cast<double>(groups) *
                          static_cast<double>(tile_h * tile_w * taps + 4 * in_rows * in_cols);
      const double cost = work / std::max(fill, 1e-3);
      if (best_cost >= 0 && cost >= best_cost) continue;
      best_cost = cost;
      plan.groups_per_block = static_cast<int>(groups);
      plan.tile_h = static_cast<int>(tile_h);
      plan.tile_w = static_cast<int>(tile_w);
      plan.in_rows = static_cast<int>(in_rows);
      plan.in_cols = static_cast<int>(in_cols);
      plan.pixel_pitch = static_cast<int>(pitch);
      plan.tiles_h = static_cast<int>(tiles_h);
      plan.tiles_w = static_cast<int>(tiles_w);
      plan.threads = static_cast<int>(threads);
      plan.shared_bytes = bytes(tile_h);
      plan.channel_blocks = p.channels / chunk_channels;
    }
  }
  if (best_cost < 0 || p.batch * plan.tiles_h * plan.tiles_w >= (int64_t{1} << 31) || plan.channel_blocks > 65535) {
    return DepthwiseNhwcTilePlan{};
  }
  plan.vector = static_cast<int>(vector);
  plan.blocks = p.batch * plan.tiles_h * plan.tiles_w;
  return plan;
}

}  // namespace detail

// Empty when the own kernel runs `problem`, else why not (for KILN_LOG_TACTICS): a dtype other
// than float32/float16/bfloat16, not depthwise (group == C_in == C_out, one input channel per
// group; channel multipliers > 1 stay with cuDNN), dilation, kernels over 32, tensors of 2^31 or
// more elements, or rows too wide for a shared-memory tile.
inline std::string depthwise_conv_unsupported(const DepthwiseConvProblem& p) {
  if (p.dtype != DType::kFloat32 && p.dtype != DType::kFloat16 && p.dtype != DType::kBFloat16) {
    return "dtype " + std::string(dtype_name(p.dtype));
  }
  if (p.group != p.channels || p.out_channels != p.channels || p.weight_channels != 1) {
    return "not depthwise with one output channel per group (group " + std::to_string(p.group) + ", C_in " +
           std::to_string(p.channels) + ", C_out " + std::to_string(p.out_channels) + ")";
  }
  if (p.batch < 1 || p.channels < 1 || p.in_h < 1 || p.in_w < 1 || p.out_h < 1 || p.out_w < 1) {
    return "empty tensor";
  }
  if (p.kernel_h < 1 || p.kernel_w < 1 || p.kernel_h > kDepthwiseMaxKernel || p.kernel_w > kDepthwiseMaxKernel) {
    return "kernel " + std::to_string(p.kernel_h) + "x" + std::to_string(p.kernel_w) + " (at most " +
           std::to_string(kDepthwiseMaxKernel) + ")";
  }
  constexpr int64_t kMaxStep = int64_t{1} << 20;
  if (p.stride_h < 1 || p.stride_w < 1 || p.stride_h > kMaxStep || p.stride_w > kMaxStep || p.pad_top < 0 ||
      p.pad_left < 0 || p.pad_top > kMaxStep || p.pad_left > kMaxStep) {
    return "strides or pads out of range";
  }
  if (p.dilation_h != 1 || p.dilation_w != 1) return "dilation";
  // The kernels index with 32-bit ints: every element offset, and every input coordinate a
  // window reaches, must fit.
  constexpr int64_t kLimit = int64_t{1} << 31;
  if (p.batch * p.channels * p.in_h * p.in_w >= kLimit || p.batch * p.channels * p.out_h * p.out_w >= kLimit ||
      (p.out_h - 1) * p.stride_h + p.kernel_h + p.pad_top >= kLimit / 2 ||
      (p.out_w - 1) * p.stride_w + p.kernel_w + p.pad_left >= kLimit / 2) {
    return "tensors of 2^31 or more elements";
  }
  if (!p.nhwc && detail::plan_depthwise_nchw(p).threads == 0) return "rows too wide for a shared-memory tile";
  if (p.nhwc && detail::plan_depthwise_nhwc(p, 1, 1).threads == 0) {
    return "too many weights or channels for a block grid";
  }
  return "";
}

// The launch of `problem` on a GPU with `multiprocessors` SMs. Needs
// depthwise_conv_unsupported(problem) to be empty (kInternal otherwise).
inline DepthwiseConvPlan plan_depthwise_conv(const DepthwiseConvProblem& problem, int multiprocessors) {
  const std::string unsupported = depthwise_conv_unsupported(problem);
  if (!unsupported.empty()) {
    fail(ErrorCode::kInternal, "depthwise convolution plan for an unsupported problem: ", unsupported);
  }
  DepthwiseConvPlan plan;
  plan.problem = problem;
  plan.kernel = depthwise_specialized_kernel(problem);
  if (problem.nhwc) {
    plan.nhwc_vector = detail::plan_depthwise_nhwc(problem, depthwise_vector_width(problem.dtype), multiprocessors);
    plan.nhwc_scalar = detail::plan_depthwise_nhwc(problem, 1, multiprocessors);
    plan.nhwc_tiled = detail::plan_depthwise_nhwc_tiled(problem, plan.kernel, multiprocessors);
  } else {
    plan.nchw = detail::plan_depthwise_nchw(problem);
  }
  return plan;
}

}  // namespace kiln::cuda
