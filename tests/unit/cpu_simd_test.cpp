// The vectorised loops of the CPU kernels' fast paths (src/backends/cpu/simd_math.hpp) at every
// level this CPU has, against the scalar table (the reference kernels' formulas) and, where the
// reference itself is inexact (Gelu of negative x), against the function computed in double:
// ulp distances over a dense sample of every float range that matters, the special values (NaN,
// infinities, signed zeros, denormals, the ends of each polynomial's interval) and every length
// of a vector tail.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backends/cpu/simd_math.hpp"
#include "base/error.hpp"
#include "ops/scalar_math.h"

namespace kiln::cpu {
namespace {

using simd::Level;
using simd::Unary;

// Sets KILN_CPU_SIMD for the scope; the previous value comes back after.
class ScopedSimdLevel {
 public:
  explicit ScopedSimdLevel(const char* value) {
    if (const char* old = std::getenv("KILN_CPU_SIMD")) previous_ = old, had_ = true;
    setenv("KILN_CPU_SIMD", value, 1);
    simd::level();  // the loops dispatch on the level last read
  }
  ~ScopedSimdLevel() {
    if (had_) {
      setenv("KILN_CPU_SIMD", previous_.c_str(), 1);
    } else {
      unsetenv("KILN_CPU_SIMD");
    }
    simd::level();
  }

 private:
  std::string previous_;
  bool had_ = false;
};

// The vector levels this CPU runs (those a wider request falls back from are skipped).
std::vector<const char*> vector_levels() {
  std::vector<const char*> levels;
  for (const char* name : {"avx2", "avx512"}) {
    const ScopedSimdLevel scope(name);
    if (std::string(simd::level_name(simd::level())) == name) levels.push_back(name);
  }
  return levels;
}

// Distance in representable floats (0 for equal values, also +0 and -0).
int64_t ulp_distance(float a, float b) {
  auto ordered = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, sizeof i);
    return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
  };
  return std::llabs(ordered(a) - ordered(b));
}

float scalar_reference(Unary f, float x) {
  switch (f) {
    case Unary::kExp: return kiln_exp<float>(x);
    case Unary::kSigmoid: return kiln_sigmoid<float>(x);
    case Unary::kTanh: return kiln_tanh<float>(x);
    case Unary::kErf: return kiln_erf<float>(x);
    case Unary::kGelu: return kiln_gelu<float>(x);
    case Unary::kGeluTanh: return kiln_gelu_tanh<float>(x);
    case Unary::kSilu: return kiln_mul<float>(x, kiln_sigmoid<float>(x));
  }
  return 0.0f;
}

// The function in double, for the cases where the float formula cancels.
double exact(Unary f, double x) {
  switch (f) {
    case Unary::kGelu: return 0.5 * x * std::erfc(-x * 0.70710678118654752);
    case Unary::kGeluTanh: {
      const double inner = 0.79788456080286536 * (x + 0.044715 * x * x * x);
      return x / (1.0 + std::exp(-2.0 * inner));
    }
    default: return 0.0;
  }
}

const char* name_of(Unary f) {
  switch (f) {
    case Unary::kExp: return "exp";
    case Unary::kSigmoid: return "sigmoid";
    case Unary::kTanh: return "tanh";
    case Unary::kErf: return "erf";
    case Unary::kGelu: return "gelu";
    case Unary::kGeluTanh: return "gelu_tanh";
    case Unary::kSilu: return "silu";
  }
  return "?";
}

// Every float of [-limit, limit] with a mantissa step of `step` ulps, plus special values.
std::vector<float> sample(float limit, int32_t step) {
  std::vector<float> xs;
  int32_t bits_limit;
  std::memcpy(&bits_limit, &limit, sizeof bits_limit);
  for (int32_t bits = 0; bits <= bits_limit; bits += step) {
    float x;
    std::memcpy(&x, &bits, sizeof x);
    xs.push_back(x);
    xs.push_back(-x);
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::denorm_min(),
                  std::numeric_limits<float>::min(), std::numeric_limits<float>::max(), 0.625f,
                  0.875f, 10.0f, 88.72283f, 88.72284f, 89.0f, -87.33654f, -103.27893f, -103.97208f,
                  -104.0f, -150.0f, 1e-20f, 1e-30f}) {
    xs.push_back(x);
    xs.push_back(-x);
  }
  return xs;
}

std::vector<float> run(Unary f, const std::vector<float>& xs) {
  std::vector<float> ys(xs.size());
  simd::unary(f, xs.data(), ys.data(), static_cast<int64_t>(xs.size()));
  return ys;
}

// Gelu's float argument x / sqrt(2) (and the tanh form's inner polynomial) is rounded before
// erfc (the exponential) sees it, which costs about x^2 ulps of the result in the negative tail
// whatever the formula; the scalar reference, which cancels there, is further off still.
struct Tolerance {
  int64_t ulps;           // against the scalar table
  double exact_ulps = 0;  // > 0: against the double function instead, exact_ulps + 3 x^2 ulps
  float absolute = 0.0f;  // also accepted: this absolute difference (results far below 1)
};

Tolerance tolerance_of(Unary f) {
  switch (f) {
    case Unary::kExp: return {2};
    case Unary::kSigmoid: return {3};
    case Unary::kTanh: return {3};
    case Unary::kErf: return {3, 0, 1e-37f};
    case Unary::kGelu: return {0, 4, 1e-37f};
    case Unary::kGeluTanh: return {0, 4, 1e-37f};
    case Unary::kSilu: return {3, 0, 1e-35f};  // below that, sigmoid(x) is a denormal of few bits
  }
  return {0};
}

TEST(CpuSimd, UnaryFunctionsMatchTheScalarTableAtEveryLevel) {
  const std::vector<const char*> levels = vector_levels();
  if (levels.empty()) GTEST_SKIP() << "this CPU has no vector level (AVX2+FMA or AVX-512)";
  for (Unary f : {Unary::kExp, Unary::kSigmoid, Unary::kTanh, Unary::kErf, Unary::kGelu, Unary::kGeluTanh,
                  Unary::kSilu}) {
    const float limit = f == Unary::kExp ? 110.0f : 30.0f;
    const std::vector<float> xs = sample(limit, 509);
    const Tolerance tolerance = tolerance_of(f);
    for (const char* level : levels) {
      const ScopedSimdLevel scope(level);
      const std::vector<float> ys = run(f, xs);
      int64_t worst = 0;
      float worst_x = 0.0f;
      size_t failures = 0;
      for (size_t i = 0; i < xs.size(); ++i) {
        const float x = xs[i];
        const float want = scalar_reference(f, x);
        const float got = ys[i];
        if (std::isnan(want) || std::isnan(got)) {
          if (std::isnan(want) != std::isnan(got) && failures++ < 5) {
            ADD_FAILURE() << name_of(f) << " at " << level << ": f(" << x << ") = " << got << ", reference " << want;
          }
          continue;
        }
        int64_t distance;
        if (tolerance.exact_ulps > 0 && std::isfinite(x)) {
          const float truth = static_cast<float>(exact(f, x));
          distance = ulp_distance(got, truth);
          if (std::fabs(got - truth) <= tolerance.absolute) distance = 0;
          if (distance > tolerance.exact_ulps + 3.0 * x * x && failures++ < 5) {
            ADD_FAILURE() << name_of(f) << " at " << level << ": f(" << x << ") = " << got << ", exact " << truth
                          << " (" << distance << " ulp)";
          }
        } else {
          distance = ulp_distance(got, want);
          if (std::fabs(got - want) <= tolerance.absolute) distance = 0;
          if (distance > tolerance.ulps && failures++ < 5) {
            ADD_FAILURE() << name_of(f) << " at " << level << ": f(" << x << ") = " << got << ", reference " << want
                          << " (" << distance << " ulp)";
          }
        }
        if (distance > worst) worst = distance, worst_x = x;
      }
      std::printf("%-10s %-7s worst %lld ulp at %.9g over %zu values\n", name_of(f), level,
                  static_cast<long long>(worst), worst_x, xs.size());
    }
  }
}

TEST(CpuSimd, NanInfinityAndZeroAreTheScalarTables) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> xs{nan, -nan, inf, -inf, 0.0f, -0.0f};
  for (const char* level : vector_levels()) {
    const ScopedSimdLevel scope(level);
    for (Unary f : {Unary::kExp, Unary::kSigmoid, Unary::kTanh, Unary::kErf, Unary::kGelu, Unary::kGeluTanh,
                  Unary::kSilu}) {
      const std::vector<float> ys = run(f, xs);
      for (size_t i = 0; i < xs.size(); ++i) {
        const float want = scalar_reference(f, xs[i]);
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(ys[i])) << name_of(f) << "(" << xs[i] << ") at " << level << ": " << ys[i];
        } else {
          EXPECT_EQ(ys[i], want) << name_of(f) << "(" << xs[i] << ") at " << level;
          EXPECT_EQ(std::signbit(ys[i]), std::signbit(want)) << name_of(f) << "(" << xs[i] << ") at " << level;
        }
      }
    }
  }
}

TEST(CpuSimd, EveryTailLengthAndInPlaceCalls) {
  for (const char* level : vector_levels()) {
    const ScopedSimdLevel scope(level);
    for (int64_t n = 0; n <= 40; ++n) {
      std::vector<float> x(static_cast<size_t>(n) + 1, 123.0f);  // one guard element after the row
      for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = 0.25f * static_cast<float>(i) - 4.0f;
      std::vector<float> y(x.size(), -5.0f);
      simd::unary(Unary::kSigmoid, x.data(), y.data(), n);
      EXPECT_EQ(y[static_cast<size_t>(n)], -5.0f) << "wrote past the row, n = " << n;
      std::vector<float> in_place = x;
      simd::unary(Unary::kSigmoid, in_place.data(), in_place.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const auto j = static_cast<size_t>(i);
        EXPECT_LE(ulp_distance(y[j], kiln_sigmoid<float>(x[j])), 3) << "n = " << n << ", i = " << i;
        EXPECT_EQ(in_place[j], y[j]);
      }
      if (n == 0) continue;
      EXPECT_EQ(simd::max(x.data(), n), 0.25f * static_cast<float>(n - 1) - 4.0f) << "n = " << n;
      double want_sum = 0.0, want_squares = 0.0;
      for (int64_t i = 0; i < n; ++i) want_sum += x[static_cast<size_t>(i)];
      for (int64_t i = 0; i < n; ++i) want_squares += (x[static_cast<size_t>(i)] - 0.5) * (x[static_cast<size_t>(i)] - 0.5);
      EXPECT_DOUBLE_EQ(simd::sum(x.data(), n), want_sum) << "n = " << n;
      EXPECT_NEAR(simd::sum_squared_deviations(x.data(), 0.5, n), want_squares, 1e-9 * (1.0 + want_squares));
      std::vector<float> e(x.size(), -5.0f);
      const double total = simd::exp_shifted_sum(x.data(), 1.5f, e.data(), n);
      double want_total = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const auto j = static_cast<size_t>(i);
        EXPECT_LE(ulp_distance(e[j], std::exp(x[j] - 1.5f)), 2) << "n = " << n << ", i = " << i;
        want_total += e[j];
      }
      EXPECT_EQ(e[static_cast<size_t>(n)], -5.0f);
      EXPECT_NEAR(total, want_total, 1e-12 * want_total);
    }
  }
}

// Clip (and Relu, Clip to [0, inf)) exactly as the scalar table, NaN and signed zeros included.
TEST(CpuSimd, ClipIsTheScalarTables) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs{nan, -nan, inf, -inf, 0.0f, -0.0f, 6.0f, 6.5f, -1e-40f, 1e-40f, 3.0f, -3.0f};
  for (int i = 0; i < 40; ++i) xs.push_back(0.37f * static_cast<float>(i) - 7.0f);
  const std::vector<std::pair<float, float>> bounds{{0.0f, 6.0f}, {0.0f, inf}, {-1.0f, 1.0f}, {-inf, 2.0f}};
  for (const char* level : vector_levels()) {
    const ScopedSimdLevel scope(level);
    for (const auto& [low, high] : bounds) {
      std::vector<float> ys(xs.size());
      simd::clip(xs.data(), low, high, ys.data(), static_cast<int64_t>(xs.size()));
      for (size_t i = 0; i < xs.size(); ++i) {
        const float want = kiln_clip<float>(xs[i], low, high);
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(ys[i])) << xs[i];
          continue;
        }
        EXPECT_EQ(ys[i], want) << "clip(" << xs[i] << ", " << low << ", " << high << ") at " << level;
        EXPECT_EQ(std::signbit(ys[i]), std::signbit(want)) << "clip(" << xs[i] << ", " << low << ") at " << level;
      }
    }
  }
}

TEST(CpuSimd, ColumnSumsOverEveryWidth) {
  for (const char* level : vector_levels()) {
    const ScopedSimdLevel scope(level);
    for (int64_t width = 0; width <= 70; ++width) {
      const int64_t rows = 5, stride = width + 3;
      std::vector<float> x(static_cast<size_t>(rows * stride));
      for (size_t i = 0; i < x.size(); ++i) x[i] = 0.125f * static_cast<float>(i % 29) - 1.0f;
      std::vector<double> acc(static_cast<size_t>(width) + 1, 0.5);  // one guard element
      simd::accumulate_rows(x.data(), rows, stride, acc.data(), width);
      for (int64_t c = 0; c < width; ++c) {
        double want = 0.5;
        for (int64_t r = 0; r < rows; ++r) want += x[static_cast<size_t>(r * stride + c)];
        EXPECT_DOUBLE_EQ(acc[static_cast<size_t>(c)], want) << "width " << width << ", column " << c << ", " << level;
      }
      EXPECT_EQ(acc[static_cast<size_t>(width)], 0.5) << "wrote past the row, width " << width;
    }
  }
}

TEST(CpuSimd, MaxIsNanWhenAnyElementIs) {
  for (const char* level : vector_levels()) {
    const ScopedSimdLevel scope(level);
    for (size_t at : {size_t{0}, size_t{7}, size_t{16}, size_t{33}}) {
      std::vector<float> x(35, 1.0f);
      x[at] = std::numeric_limits<float>::quiet_NaN();
      EXPECT_TRUE(std::isnan(simd::max(x.data(), 35))) << "NaN at " << at << ", level " << level;
    }
  }
}

TEST(CpuSimd, LevelSwitchRejectsUnknownNames) {
  const ScopedSimdLevel restore("scalar");  // brings the previous value back at the end
  setenv("KILN_CPU_SIMD", "sse9", 1);
  try {
    simd::level();
    ADD_FAILURE() << "KILN_CPU_SIMD=sse9 was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("KILN_CPU_SIMD"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace kiln::cpu
