// kiln's own depthwise convolution for CUDA, checked without a GPU: the Conv tactic string's
// round trip, the KILN_DEPTHWISE knob, which convolutions the own kernel takes, the launch plans'
// limits, and an emulation of the kernels' block code (depthwise_conv_block.hpp, compiled here
// for the host and run block by block, thread by thread, phase by phase) against a reference
// convolution: every output written, shared memory read only where staged (it starts as NaN),
// every 16-byte access aligned, for both layouts, float32 and a 16-bit stand-in type, the
// specialised and generic kernels, odd sizes, strides, pads, bias, residual and Relu.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backends/cuda/conv_tactic.hpp"
#include "backends/cuda/depthwise_conv_block.hpp"
#include "backends/cuda/depthwise_conv_plan.hpp"

// A 16-bit element for the emulation (bfloat16 bits: 8 elements per 16-byte vector, as fp16 and
// bf16 have on the GPU).
struct Bits16 {
  uint16_t bits;
};

template <>
struct kiln::cuda::depthwise::Element<Bits16> {
  static float load(Bits16 v) {
    const uint32_t word = static_cast<uint32_t>(v.bits) << 16;
    float f;
    std::memcpy(&f, &word, 4);
    return f;
  }
  static Bits16 store(float f) {  // round to nearest even (inputs here are finite)
    uint32_t word;
    std::memcpy(&word, &f, 4);
    word += 0x7fffu + ((word >> 16) & 1u);
    return Bits16{static_cast<uint16_t>(word >> 16)};
  }
};

namespace kiln::cuda {
namespace {

using depthwise::Element;

// ---- the tactic string -----------------------------------------------------------------------

TEST(ConvTactic, RoundTrips) {
  for (const ConvTactic& tactic : {ConvTactic::cudnn(0, 0), ConvTactic::cudnn(6, 1), ConvTactic::cudnn(7, 2),
                                   ConvTactic::kiln_depthwise(), ConvTactic::kiln_depthwise(true)}) {
    const std::string text = encode_conv_tactic(tactic);
    const std::optional<ConvTactic> decoded = decode_conv_tactic(text);
    ASSERT_TRUE(decoded.has_value()) << text;
    EXPECT_EQ(*decoded, tactic) << text;
  }
  EXPECT_EQ(encode_conv_tactic(ConvTactic::cudnn(6, 1)), "cudnn:algo=6,math=1");  // engines already carry these
  EXPECT_EQ(encode_conv_tactic(ConvTactic::kiln_depthwise()), "kiln_depthwise");
  EXPECT_EQ(encode_conv_tactic(ConvTactic::kiln_depthwise(true)), "kiln_depthwise_tiled");
}

TEST(ConvTactic, RefusesOtherText) {
  for (const char* text :
       {"", "kiln_depthwise:", "kiln_depthwise ", "KILN_DEPTHWISE", "kiln_depthwise_tiled ", "kiln_depthwise_tile", "cudnn:algo=1", "cudnn:algo=1,math=",
        "cudnn:algo=1,math=2x", "cudnn:algo=-1,math=0", "cudnn:algo=+1,math=0", "cudnn:algo=1,math=0,",
        "cudnn:math=1,algo=0", "lt:00ff", "cudnn:algo=99999999999,math=0"}) {
    EXPECT_FALSE(decode_conv_tactic(text).has_value()) << text;
  }
}

// ---- KILN_DEPTHWISE --------------------------------------------------------------------------

TEST(DepthwiseMode, ParsesTheKnob) {
  EXPECT_EQ(parse_depthwise_mode(nullptr), DepthwiseMode::kAuto);
  EXPECT_EQ(parse_depthwise_mode(""), DepthwiseMode::kAuto);
  EXPECT_EQ(parse_depthwise_mode("off"), DepthwiseMode::kOff);
  EXPECT_EQ(parse_depthwise_mode("force"), DepthwiseMode::kForce);
  EXPECT_EQ(parse_depthwise_mode("tiled"), DepthwiseMode::kForceTiled);
  try {
    parse_depthwise_mode("on");
    FAIL() << "expected kiln::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("KILN_DEPTHWISE must be 'off', 'force' or 'tiled' (or unset), got 'on'"),
              std::string::npos)
        << error.what();
  }
}

// ---- which convolutions ----------------------------------------------------------------------

// A depthwise problem with output extents from the pads (pad_bottom/pad_right as given).
DepthwiseConvProblem depthwise(DType dtype, bool nhwc, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb, int64_t pr) {
  DepthwiseConvProblem p;
  p.dtype = dtype;
  p.nhwc = nhwc;
  p.batch = n;
  p.channels = p.out_channels = p.group = c;
  p.weight_channels = 1;
  p.in_h = h;
  p.in_w = w;
  p.kernel_h = kh;
  p.kernel_w = kw;
  p.stride_h = sh;
  p.stride_w = sw;
  p.pad_top = pt;
  p.pad_left = pl;
  p.out_h = (h + pt + pb - kh) / sh + 1;
  p.out_w = (w + pl + pr - kw) / sw + 1;
  return p;
}

DepthwiseConvProblem convnext_7x7(bool nhwc) {
  return depthwise(DType::kFloat16, nhwc, 32, 96, 56, 56, 7, 7, 1, 1, 3, 3, 3, 3);
}

TEST(DepthwiseSupport, TakesDepthwiseConvolutions) {
  for (const bool nhwc : {false, true}) {
    EXPECT_EQ(depthwise_conv_unsupported(convnext_7x7(nhwc)), "");
    for (const DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      EXPECT_EQ(depthwise_conv_unsupported(depthwise(dtype, nhwc, 32, 144, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1)), "");
      EXPECT_EQ(depthwise_conv_unsupported(depthwise(dtype, nhwc, 1, 240, 28, 28, 5, 5, 2, 2, 2, 2, 2, 2)), "");
    }
    // Odd sizes, asymmetric pads, generic kernels (9x9, 1x3, stride 3), a 31x31 kernel.
    EXPECT_EQ(depthwise_conv_unsupported(depthwise(DType::kFloat16, nhwc, 3, 7, 15, 17, 3, 3, 2, 2, 0, 1, 1, 0)), "");
    EXPECT_EQ(depthwise_conv_unsupported(depthwise(DType::kFloat32, nhwc, 2, 5, 20, 20, 9, 9, 1, 1, 4, 4, 4, 4)), "");
    EXPECT_EQ(depthwise_conv_unsupported(depthwise(DType::kFloat32, nhwc, 2, 5, 20, 20, 1, 3, 3, 3, 0, 1, 0, 1)), "");
    EXPECT_EQ(depthwise_conv_unsupported(depthwise(DType::kFloat16, nhwc, 1, 64, 64, 64, 31, 31, 1, 1, 15, 15, 15, 15)),
              "");
  }
  EXPECT_EQ(depthwise_specialized_kernel(convnext_7x7(false)), 7);
  EXPECT_EQ(depthwise_specialized_kernel(depthwise(DType::kFloat16, false, 1, 8, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1)), 3);
  EXPECT_EQ(depthwise_specialized_kernel(depthwise(DType::kFloat16, false, 1, 8, 9, 9, 5, 5, 1, 2, 2, 2, 2, 2)), 5);
  EXPECT_EQ(depthwise_specialized_kernel(depthwise(DType::kFloat16, false, 1, 8, 9, 9, 3, 3, 1, 3, 1, 1, 1, 1)), 0);
  EXPECT_EQ(depthwise_specialized_kernel(depthwise(DType::kFloat16, false, 1, 8, 9, 9, 3, 5, 1, 1, 1, 1, 1, 1)), 0);
}

TEST(DepthwiseSupport, LeavesOtherConvolutionsToCudnn) {
  const auto unsupported = [](DepthwiseConvProblem p, auto change) {
    change(p);
    return depthwise_conv_unsupported(p);
  };
  for (const bool nhwc : {false, true}) {
    const DepthwiseConvProblem base = convnext_7x7(nhwc);
    EXPECT_EQ(unsupported(base, [](auto& p) { p.dtype = DType::kFloat64; }), "dtype float64");
    EXPECT_EQ(unsupported(base, [](auto& p) { p.dtype = DType::kInt32; }), "dtype int32");
    // Grouped, and a channel multiplier of 2 (C_out = 2 * group).
    EXPECT_NE(unsupported(base,
                          [](auto& p) {
                            p.group = 48;
                            p.weight_channels = 2;
                          }),
              "");
    EXPECT_NE(unsupported(base, [](auto& p) { p.out_channels = 192; }), "");
    EXPECT_EQ(unsupported(base, [](auto& p) { p.dilation_h = 2; }), "dilation");
    EXPECT_NE(unsupported(base, [](auto& p) { p.kernel_h = p.kernel_w = 33; }), "");
    EXPECT_NE(unsupported(base, [](auto& p) { p.stride_w = 0; }), "");
    EXPECT_NE(unsupported(base, [](auto& p) { p.pad_left = -1; }), "");
    EXPECT_EQ(unsupported(base, [](auto& p) { p.batch = 8192; }), "tensors of 2^31 or more elements");
    EXPECT_EQ(unsupported(base, [](auto& p) { p.out_w = 0; }), "empty tensor");
  }
  // NCHW rows too wide for one staged row tile.
  EXPECT_EQ(depthwise_conv_unsupported(depthwise(DType::kFloat32, false, 1, 4, 8, 20000, 7, 7, 1, 1, 3, 3, 3, 3)),
            "rows too wide for a shared-memory tile");
  EXPECT_EQ(depthwise_conv_unsupported(depthwise(DType::kFloat32, true, 1, 4, 8, 20000, 7, 7, 1, 1, 3, 3, 3, 3)), "");
  try {
    plan_depthwise_conv(depthwise(DType::kFloat32, false, 1, 4, 8, 20000, 7, 7, 1, 1, 3, 3, 3, 3), 132);
    FAIL() << "expected kiln::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInternal);
  }
}

// ---- plans -----------------------------------------------------------------------------------

TEST(DepthwisePlan, FitsTheLaunchLimits) {
  // ConvNeXt-T's 7x7 stage-1 convolution: two balanced 28-row tiles of each 56x56 plane.
  const DepthwiseConvPlan convnext = plan_depthwise_conv(convnext_7x7(false), 132);
  EXPECT_EQ(convnext.kernel, 7);
  EXPECT_EQ(convnext.nchw.strips, 7);
  EXPECT_EQ(convnext.nchw.tiles, 2);
  EXPECT_EQ(convnext.nchw.tile_rows, 28);
  EXPECT_EQ(convnext.nchw.planes_per_block, 1);
  EXPECT_EQ(convnext.nchw.in_rows, 34);
  EXPECT_EQ(convnext.nchw.threads, 224);
  EXPECT_EQ(convnext.nchw.blocks, 32 * 96 * 2);
  // Small planes share a block.
  const DepthwiseConvPlan small =
      plan_depthwise_conv(depthwise(DType::kFloat16, false, 32, 768, 7, 7, 7, 7, 1, 1, 3, 3, 3, 3), 132);
  EXPECT_EQ(small.nchw.planes_per_block, 36);
  EXPECT_EQ(small.nchw.threads, 256);
  // NHWC: 96 fp16 channels are 12 groups of 8, 4 groups per block.
  const DepthwiseConvPlan nhwc = plan_depthwise_conv(convnext_7x7(true), 132);
  EXPECT_EQ(nhwc.nhwc_vector.vector, 8);
  EXPECT_EQ(nhwc.nhwc_vector.groups_per_block, 4);
  EXPECT_EQ(nhwc.nhwc_vector.channel_blocks, 3);
  EXPECT_EQ(nhwc.nhwc_vector.threads, 256);
  EXPECT_EQ(nhwc.nhwc_scalar.vector, 1);
  EXPECT_EQ(nhwc.nhwc_scalar.groups_per_block, 32);
  EXPECT_EQ(plan_depthwise_conv(depthwise(DType::kFloat16, true, 2, 12, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1), 132)
                .nhwc_vector.threads,
            0);  // 12 channels are no whole number of 8-channel vectors

  std::vector<DepthwiseConvProblem> problems;
  for (const bool nhwc_layout : {false, true}) {
    for (const DType dtype : {DType::kFloat32, DType::kFloat16}) {
      problems.push_back(depthwise(dtype, nhwc_layout, 32, 32, 112, 112, 3, 3, 1, 1, 1, 1, 1, 1));
      problems.push_back(depthwise(dtype, nhwc_layout, 32, 96, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1));
      problems.push_back(depthwise(dtype, nhwc_layout, 1, 1152, 7, 7, 5, 5, 1, 1, 2, 2, 2, 2));
      problems.push_back(depthwise(dtype, nhwc_layout, 1, 64, 300, 300, 31, 31, 1, 1, 15, 15, 15, 15));
      problems.push_back(depthwise(dtype, nhwc_layout, 1, 3, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0));
    }
  }
  for (const DepthwiseConvProblem& p : problems) {
    const DepthwiseConvPlan plan = plan_depthwise_conv(p, 132);
    if (!p.nhwc) {
      const DepthwiseNchwPlan& n = plan.nchw;
      EXPECT_GT(n.threads, 0);
      EXPECT_LE(n.threads, kDepthwiseThreads);
      EXPECT_EQ(n.threads % 32, 0);
      EXPECT_LE(n.shared_bytes, kDepthwiseSharedBytes);
      EXPECT_GE(int64_t{n.tiles} * n.tile_rows, p.out_h);
      EXPECT_LT(int64_t{n.tiles - 1} * n.tile_rows, p.out_h);  // no empty tile
      EXPECT_EQ(n.pitch * 16 / depthwise_vector_width(p.dtype) % 16, 0);
    } else {
      for (const DepthwiseNhwcPlan* n : {&plan.nhwc_vector, &plan.nhwc_scalar}) {
        if (n->threads == 0) continue;
        EXPECT_LE(n->threads, kDepthwiseThreads);
        EXPECT_LE(n->shared_bytes, kDepthwiseSharedBytes);
        EXPECT_EQ(p.channels % (n->vector * n->groups_per_block), 0);
        EXPECT_GE(n->pixel_blocks * n->iterations * n->slots, n->strips);
        EXPECT_LE(n->channel_blocks, 65535);
      }
    }
  }
}

// ---- the block code, emulated ----------------------------------------------------------------

// A buffer whose data start `offset` elements past a 16-byte boundary.
template <typename T>
class Buffer {
 public:
  Buffer(size_t count, size_t offset) : storage_(new T[count + 16]), data_(nullptr) {
    T* base = storage_.get();
    while (reinterpret_cast<uintptr_t>(base) % 16 != 0) ++base;
    data_ = base + offset;
  }
  T* data() const { return data_; }

 private:
  std::unique_ptr<T[]> storage_;
  T* data_;
};


// Shared memory of one block, filled with NaN so that reading what no thread staged shows, with
// 64 guard bytes after it.
std::vector<float> poisoned_shared(int64_t bytes) {
  return std::vector<float>(static_cast<size_t>(bytes / 4 + 16), std::numeric_limits<float>::quiet_NaN());
}

// Runs a block's stage phase with its threads in order, then again in reverse order into fresh
// memory: the two must agree byte for byte (else two threads write one word: a race on the GPU),
// and nothing may be written past the block's shared memory.
template <typename Stage>
std::vector<float> staged_shared(int64_t bytes, int threads, Stage&& stage) {
  std::vector<float> forward = poisoned_shared(bytes), backward = poisoned_shared(bytes);
  for (int t = 0; t < threads; ++t) stage(t, reinterpret_cast<unsigned char*>(forward.data()));
  for (int t = threads; t-- > 0;) stage(t, reinterpret_cast<unsigned char*>(backward.data()));
  EXPECT_EQ(std::memcmp(forward.data(), backward.data(), forward.size() * 4), 0) << "stage writes race";
  for (size_t i = static_cast<size_t>(bytes / 4); i < forward.size(); ++i) {
    EXPECT_TRUE(std::isnan(forward[i])) << "stage wrote past its shared memory at float " << i;
  }
  return forward;
}

// Runs the launch launch_depthwise_conv would make, block by block on the host. Returns whether
// NHWC ran with 16-byte channel vectors.
template <typename T>
bool emulate(const DepthwiseConvPlan& plan, const T* x, const T* w, const T* bias, const T* residual, T* y) {
  if (plan.tiled && depthwise::nhwc_tiled_fits(plan, x, residual, y)) {
    const DepthwiseNhwcTilePlan& n = plan.nhwc_tiled;
    const depthwise::NhwcTileArgs<T> args = depthwise::make_nhwc_tile_args(plan, x, w, bias, residual, y);
    depthwise::with_kernel_shape(plan.kernel, plan.problem.stride_w, [&]<int KH, int KW, int SW>() {
      if constexpr (KH > 0) {
        for (int chunk = 0; chunk < n.channel_blocks; ++chunk) {
          for (int block = 0; block < n.blocks; ++block) {
            std::vector<float> shared = staged_shared(n.shared_bytes, n.threads, [&](int t, unsigned char* bytes) {
              depthwise::nhwc_tile_stage<T, depthwise::kPack<T>>(args, block, chunk, t, n.threads, bytes);
            });
            auto* bytes = reinterpret_cast<unsigned char*>(shared.data());
            for (int t = 0; t < n.threads; ++t) {
              depthwise::nhwc_tile_compute<T, depthwise::kPack<T>, KH, KW, SW>(args, block, chunk, t, bytes);
            }
          }
        }
      } else {
        ADD_FAILURE() << "a tiled plan for the generic kernel shape";
      }
    });
    return true;
  }
  if (!plan.problem.nhwc) {
    const depthwise::NchwArgs<T> args = depthwise::make_nchw_args(plan, x, w, bias, residual, y);
    const DepthwiseNchwPlan& n = plan.nchw;
    depthwise::with_kernel_shape(plan.kernel, plan.problem.stride_w, [&]<int KH, int KW, int SW>() {
      for (int block = 0; block < n.blocks; ++block) {
        std::vector<float> shared = staged_shared(n.shared_bytes, n.threads, [&](int t, unsigned char* bytes) {
          depthwise::nchw_stage(args, block, t, n.threads, bytes);
        });
        auto* bytes = reinterpret_cast<unsigned char*>(shared.data());
        for (int t = 0; t < n.threads; ++t) depthwise::nchw_compute<T, KH, KW, SW>(args, block, t, n.threads, bytes);
      }
    });
    return false;
  }
  const bool vectors = depthwise::nhwc_vectors_fit(plan, x, residual, y);
  const DepthwiseNhwcPlan& n = vectors ? plan.nhwc_vector : plan.nhwc_scalar;
  const depthwise::NhwcArgs<T> args = depthwise::make_nhwc_args(plan, n, x, w, bias, residual, y);
  const auto run = [&]<int P, int KH, int KW, int SW>() {
    for (int chunk = 0; chunk < n.channel_blocks; ++chunk) {
      for (int block = 0; block < n.pixel_blocks; ++block) {
        std::vector<float> shared = staged_shared(n.shared_bytes, n.threads, [&](int t, unsigned char* bytes) {
          depthwise::nhwc_stage<T, P>(args, chunk, t, n.threads, bytes);
        });
        auto* bytes = reinterpret_cast<unsigned char*>(shared.data());
        for (int t = 0; t < n.threads; ++t) depthwise::nhwc_compute<T, P, KH, KW, SW>(args, block, chunk, t, bytes);
      }
    }
  };
  if (vectors) {
    depthwise::with_kernel_shape(plan.kernel, plan.problem.stride_w, [&]<int KH, int KW, int SW>() {
      run.template operator()<depthwise::kPack<T>, KH, KW, SW>();
    });
  } else {
    run.template operator()<1, 0, 0, 0>();
  }
  return vectors;
}

struct Options {
  bool bias = true, residual = false, relu = false;
  size_t misalign = 0;  // elements by which X, the residual and Y are off 16-byte alignment
  bool tiled = false;   // NHWC: the tiled kernel where the plan has one
};

// Emulates `p` on random data and compares with a double-precision reference computed from the
// same (rounded) inputs. Returns whether NHWC used channel vectors.
template <typename T>
bool check_against_reference(DepthwiseConvProblem p, const Options& options, double tolerance) {
  p.bias = options.bias;
  p.residual = options.residual;
  p.relu = options.relu;
  const int64_t x_count = p.batch * p.channels * p.in_h * p.in_w;
  const int64_t y_count = p.batch * p.channels * p.out_h * p.out_w;
  const int64_t taps = p.kernel_h * p.kernel_w;
  std::mt19937 rng(static_cast<uint32_t>(x_count * 31 + taps * 7 + p.stride_w));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const auto fill = [&](T* data, int64_t count) {
    for (int64_t i = 0; i < count; ++i) data[i] = Element<T>::store(uniform(rng));
  };
  Buffer<T> x(static_cast<size_t>(x_count), options.misalign), w(static_cast<size_t>(p.channels * taps), 0),
      bias(static_cast<size_t>(p.channels), 0), residual(static_cast<size_t>(y_count), options.misalign),
      y(static_cast<size_t>(y_count), options.misalign);
  fill(x.data(), x_count);
  fill(w.data(), p.channels * taps);
  fill(bias.data(), p.channels);
  fill(residual.data(), y_count);
  for (int64_t i = 0; i < y_count; ++i) y.data()[i] = Element<T>::store(std::numeric_limits<float>::quiet_NaN());

  DepthwiseConvPlan plan = plan_depthwise_conv(p, 4);
  plan.tiled = options.tiled;
  const bool vectors = emulate<T>(plan, x.data(), w.data(), options.bias ? bias.data() : nullptr,
                                  options.residual ? residual.data() : nullptr, y.data());

  const auto x_at = [&](int64_t n, int64_t c, int64_t h, int64_t col) {
    const int64_t i = p.nhwc ? ((n * p.in_h + h) * p.in_w + col) * p.channels + c
                             : ((n * p.channels + c) * p.in_h + h) * p.in_w + col;
    return static_cast<double>(Element<T>::load(x.data()[i]));
  };
  int64_t checked = 0;
  for (int64_t n = 0; n < p.batch; ++n) {
    for (int64_t c = 0; c < p.channels; ++c) {
      for (int64_t oy = 0; oy < p.out_h; ++oy) {
        for (int64_t ox = 0; ox < p.out_w; ++ox) {
          double want = options.bias ? Element<T>::load(bias.data()[c]) : 0.0;
          for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
            for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
              const int64_t iy = oy * p.stride_h - p.pad_top + ky, ix = ox * p.stride_w - p.pad_left + kx;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              want += Element<T>::load(w.data()[c * taps + ky * p.kernel_w + kx]) * x_at(n, c, iy, ix);
            }
          }
          const int64_t i = p.nhwc ? ((n * p.out_h + oy) * p.out_w + ox) * p.channels + c
                                   : ((n * p.channels + c) * p.out_h + oy) * p.out_w + ox;
          if (options.residual) want += Element<T>::load(residual.data()[i]);
          if (options.relu) want = want > 0.0 ? want : 0.0;
          const double got = Element<T>::load(y.data()[i]);
          // float32 sums of hundreds of taps (31x31) round more than those of 49.
          const double allowed = tolerance * std::max(1.0, std::abs(want)) * std::max(1.0, taps / 49.0);
          if (!(std::abs(got - want) <= allowed)) {
            ADD_FAILURE() << "y[n " << n << ", c " << c << ", y " << oy << ", x " << ox << "] = " << got << ", want "
                          << want;
            return vectors;
          }
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, y_count);
  return vectors;
}

struct Shape {
  int64_t n, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr;
};

// Every specialisation (3, 5, 7 x stride 1, 2) and generic kernels; odd sizes (15x17), asymmetric
// pads, pads wider than the kernel's reach, single-pixel images, row tiles (60 rows), several
// planes per block with a partial last block (37 channels of 7x7 planes), a 31x31 kernel whose
// tile is cut down to fit shared memory, input columns no output reads, and channel counts with
// and without 8-channel vectors.
const Shape kShapes[] = {
    {2, 8, 15, 17, 3, 3, 1, 1, 1, 1, 1, 1},   {3, 16, 15, 17, 3, 3, 2, 2, 1, 1, 1, 1},
    {1, 8, 16, 16, 3, 3, 2, 2, 0, 0, 1, 1},   {2, 24, 14, 13, 5, 5, 1, 1, 2, 2, 2, 2},
    {1, 8, 17, 15, 5, 5, 2, 2, 2, 2, 2, 2},   {2, 16, 12, 24, 7, 7, 1, 1, 3, 3, 3, 3},
    {1, 8, 13, 9, 7, 7, 2, 2, 3, 3, 3, 3},    {2, 37, 7, 7, 7, 7, 1, 1, 3, 3, 3, 3},
    {1, 8, 60, 40, 3, 3, 1, 1, 1, 1, 1, 1},   {1, 7, 9, 11, 3, 3, 1, 2, 0, 1, 2, 0},
    {2, 5, 10, 12, 3, 5, 1, 3, 1, 2, 1, 2},   {1, 8, 11, 10, 9, 9, 2, 1, 4, 4, 4, 4},
    {1, 3, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1},     {2, 6, 5, 6, 1, 1, 1, 1, 0, 0, 0, 0},
    {1, 8, 6, 7, 3, 3, 1, 1, 4, 5, 4, 5},     {1, 4, 40, 300, 31, 31, 1, 1, 15, 15, 15, 15},
    {1, 8, 8, 33, 3, 3, 3, 3, 1, 1, 1, 1},    {3, 1, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1},
    {2, 8, 6, 40, 2, 2, 1, 5, 1, 1, 0, 0},  // staged rows narrower than the input (39 of 40 columns)
};

DepthwiseConvProblem problem_of(const Shape& s, DType dtype, bool nhwc) {
  return depthwise(dtype, nhwc, s.n, s.c, s.h, s.w, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.pb, s.pr);
}

std::string describe(const Shape& s, bool nhwc) {
  return std::string(nhwc ? "NHWC" : "NCHW") + " n" + std::to_string(s.n) + " c" + std::to_string(s.c) + " " +
         std::to_string(s.h) + "x" + std::to_string(s.w) + " k" + std::to_string(s.kh) + "x" + std::to_string(s.kw) +
         " s" + std::to_string(s.sh) + "," + std::to_string(s.sw) + " pads " + std::to_string(s.pt) + "," +
         std::to_string(s.pl) + "," + std::to_string(s.pb) + "," + std::to_string(s.pr);
}

TEST(DepthwiseEmulation, Float32MatchesTheReference) {
  for (const bool nhwc : {false, true}) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(describe(s, nhwc));
      check_against_reference<float>(problem_of(s, DType::kFloat32, nhwc), Options{}, 1e-5);
    }
  }
}

TEST(DepthwiseEmulation, SixteenBitMatchesTheReference) {
  for (const bool nhwc : {false, true}) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(describe(s, nhwc));
      const bool vectors = check_against_reference<Bits16>(problem_of(s, DType::kFloat16, nhwc), Options{}, 1e-2);
      if (nhwc) {
        EXPECT_EQ(vectors, s.c % 8 == 0);
      }
    }
  }
}

TEST(DepthwiseEmulation, EpilogueAndUnalignedBuffers) {
  const Options variants[] = {
      {false, false, false, 0}, {true, true, true, 0}, {false, true, false, 0},
      {true, false, true, 0},   {true, true, true, 1}, {false, true, true, 3},
  };
  for (const bool nhwc : {false, true}) {
    for (const Shape& s : {kShapes[0], kShapes[1], kShapes[5], kShapes[7], kShapes[9], kShapes[11]}) {
      for (const Options& options : variants) {
        SCOPED_TRACE(describe(s, nhwc) + " bias " + std::to_string(options.bias) + " residual " +
                     std::to_string(options.residual) + " relu " + std::to_string(options.relu) + " misalign " +
                     std::to_string(options.misalign));
        check_against_reference<float>(problem_of(s, DType::kFloat32, nhwc), options, 1e-5);
        const bool vectors = check_against_reference<Bits16>(problem_of(s, DType::kBFloat16, nhwc), options, 1e-2);
        if (nhwc && options.misalign != 0) {
          EXPECT_FALSE(vectors);
        }
      }
    }
  }
}

// The tiled NHWC kernel: every shape it has a plan for (specialised 3/5/7 windows, C a multiple
// of the channel vector), with its halo, padding and partial tiles, in both element types, with
// every epilogue; the rest fall back to the rows kernel, as the launch does.
TEST(DepthwiseEmulation, TiledNhwcMatchesTheReference) {
  int tiled_shapes = 0;
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(describe(s, true));
    const DepthwiseConvProblem p16 = problem_of(s, DType::kFloat16, true);
    const DepthwiseConvPlan plan = plan_depthwise_conv(p16, 4);
    EXPECT_EQ(plan.nhwc_tiled.threads > 0, plan.kernel != 0 && s.c % 8 == 0);
    tiled_shapes += plan.nhwc_tiled.threads > 0;
    for (const Options& options : {Options{true, false, false, 0, true}, Options{false, true, true, 0, true},
                                   Options{true, true, true, 1, true}}) {
      check_against_reference<float>(problem_of(s, DType::kFloat32, true), options, 1e-5);
      check_against_reference<Bits16>(p16, options, 1e-2);
    }
  }
  EXPECT_GE(tiled_shapes, 6);
}

TEST(DepthwisePlan, TiledNhwcFitsItsLimits) {
  // ConvNeXt's 7x7 stage convolutions, MobileNetV3's and EfficientNet's 3x3 / 5x5 ones (b32).
  for (const auto& [c, hw, k, stride] : {std::tuple{96, 56, 7, 1}, {192, 28, 7, 1}, {384, 14, 7, 1}, {768, 7, 7, 1},
                                        {72, 56, 3, 1}, {120, 28, 5, 1}, {96, 112, 3, 2}, {240, 28, 5, 2}}) {
    const int64_t pad = k / 2, out = (hw + 2 * pad - k) / stride + 1;
    for (const DType dtype : {DType::kFloat16, DType::kFloat32}) {
      const DepthwiseConvProblem p = depthwise(dtype, true, 32, c, hw, hw, k, k, stride, stride, pad, pad, pad, pad);
      const DepthwiseNhwcTilePlan t = plan_depthwise_conv(p, 132).nhwc_tiled;
      SCOPED_TRACE(testing::Message() << "c" << c << " hw" << hw << " k" << k << " " << dtype_name(dtype));
      ASSERT_GT(t.threads, 0);
      EXPECT_LE(t.threads, kDepthwiseThreads);
      EXPECT_EQ(t.tile_w % kDepthwisePixelOutputs, 0);
      EXPECT_LE(t.shared_bytes, kDepthwiseSharedBytes);
      EXPECT_EQ(t.in_rows, (t.tile_h - 1) * stride + k);
      EXPECT_EQ(t.in_cols, (t.tile_w - 1) * stride + k);
      EXPECT_GE(static_cast<int64_t>(t.tiles_h) * t.tile_h, out);
      EXPECT_LT(static_cast<int64_t>(t.tiles_h - 1) * t.tile_h, out);
      EXPECT_GE(static_cast<int64_t>(t.tiles_w) * t.tile_w, out);
      EXPECT_EQ(t.blocks, 32 * static_cast<int64_t>(t.tiles_h) * t.tiles_w);
      EXPECT_EQ(t.channel_blocks * t.groups_per_block * t.vector, c);
      // Staged pixels are 16-byte aligned and a warp's neighbouring runs start 16 bytes of
      // banks apart: the pitch is the chunk's channels plus one vector.
      EXPECT_EQ(t.pixel_pitch, t.groups_per_block * t.vector + t.vector);
    }
  }
  // No tiled plan for the generic kernel shape or channel counts off the vector width.
  EXPECT_EQ(plan_depthwise_conv(depthwise(DType::kFloat16, true, 1, 16, 20, 20, 9, 9, 1, 1, 4, 4, 4, 4), 132)
                .nhwc_tiled.threads,
            0);
  EXPECT_EQ(plan_depthwise_conv(depthwise(DType::kFloat16, true, 1, 12, 20, 20, 3, 3, 1, 1, 1, 1, 1, 1), 132)
                .nhwc_tiled.threads,
            0);
}

// The fused Relu keeps NaN, as a standalone Relu, PyTorch and ONNX Runtime do (it gave 0 before).
TEST(DepthwiseEmulation, FusedReluKeepsNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(depthwise::finish(nan, true)));
  EXPECT_TRUE(std::isnan(depthwise::finish(nan, false)));
  EXPECT_EQ(depthwise::finish(-2.0f, true), 0.0f);
  EXPECT_EQ(depthwise::finish(3.0f, true), 3.0f);
  EXPECT_EQ(depthwise::finish(-2.0f, false), -2.0f);
}

}  // namespace
}  // namespace kiln::cuda
