#include "backends/cpu/middle_axis_mean.hpp"

#include <algorithm>

#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/simd_math.hpp"

namespace kiln::cpu {

void middle_axis_mean(const float* in, int64_t outer, int64_t reduced, int64_t inner, double divisor, float* out) {
  // A strip's double accumulators stay in L1 while its rows stream through.
  constexpr int64_t kStrip = 512;
  const int64_t strips = (inner + kStrip - 1) / kStrip;
  parallel_chunks(outer * strips, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, reduced * kStrip)),
                  [&](int64_t begin, int64_t end) {
    double acc[kStrip];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t o = task / strips;
      const int64_t first = task % strips * kStrip;
      const int64_t width = std::min(kStrip, inner - first);
      std::fill(acc, acc + width, 0.0);
      simd::accumulate_rows(in + o * reduced * inner + first, reduced, inner, acc, width);
      float* dst = out + o * inner + first;
      for (int64_t i = 0; i < width; ++i) dst[i] = static_cast<float>(acc[i] / divisor);
    }
  });
}

}  // namespace kiln::cpu
