// Sliding-window geometry for the CPU kernels, normalised to exactly three spatial axes: 1-D and
// 2-D windows get leading axes of extent 1 so that one loop nest serves every spatial rank.
#pragma once

#include <array>
#include <cstdint>

#include "backends/cpu/cpu_kernel.hpp"
#include "ops/nn_window.hpp"

namespace kiln::cpu::nn {

struct Window3d {
  std::array<int64_t, 3> in{1, 1, 1};
  std::array<int64_t, 3> out{1, 1, 1};
  std::array<int64_t, 3> kernel{1, 1, 1};
  std::array<int64_t, 3> stride{1, 1, 1};
  std::array<int64_t, 3> dilation{1, 1, 1};
  std::array<int64_t, 3> pad_begin{0, 0, 0};
  std::array<int64_t, 3> pad_end{0, 0, 0};

  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t kernel_size() const { return kernel[0] * kernel[1] * kernel[2]; }
};

// Resolves the window of a node whose input 0 is [N, C, spatial...] from its attributes and
// `kernel` extents, checks that output 0 has [N, `out_channels`, resolved extents...], and
// returns the geometry padded to three axes. Fails with kUnsupported beyond three spatial axes.
Window3d resolve_window3d(const KernelContext& ctx, std::vector<int64_t> kernel, bool ceil_mode,
                          int64_t out_channels);

// `g` (resolved for input 0 [N, C, spatial...], at most three spatial axes) padded to three axes,
// after checking that output 0 is [N, `out_channels`, g.output...].
Window3d window3d_of(const KernelContext& ctx, const ops::nn::WindowGeometry& g,
                     int64_t out_channels);

}  // namespace kiln::cpu::nn
