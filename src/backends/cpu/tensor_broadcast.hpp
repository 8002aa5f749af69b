// Broadcasting binary/ternary loops for elementwise kernels, with fast inner loops for the common
// contiguous and scalar-operand cases.
#pragma once

#include "backends/cpu/tensor_strided.hpp"
#include "base/host_tensor.hpp"

namespace kiln::cpu {

// Output elements below which a loop stays on the calling thread (waking threads costs more), and
// the least a thread is given.
inline constexpr int64_t kBroadcastGrain = 1 << 15;

// out[i] = fn(a[i'], b[i'']) with numpy broadcasting of a and b to out's shape.
template <typename A, typename B, typename R, typename Fn>
void broadcast_binary(const TensorView& a, const TensorView& b, const TensorView& out, Fn&& fn) {
  const StridedLoop<2> loop = make_strided_loop<2>(
      out.shape, {broadcast_strides(a.shape, out.shape), broadcast_strides(b.shape, out.shape)});
  const A* pa = a.as<const A>();
  const B* pb = b.as<const B>();
  R* po = out.as<R>();
  parallel_for_each_row(loop, {0, 0}, kBroadcastGrain,
               [&](int64_t o, std::array<int64_t, 2> in, int64_t n, std::array<int64_t, 2> st) {
                 R* dst = po + o;
                 const A* x = pa + in[0];
                 const B* y = pb + in[1];
                 if (st[0] == 1 && st[1] == 1) {
                   for (int64_t i = 0; i < n; ++i) dst[i] = fn(x[i], y[i]);
                 } else if (st[0] == 1 && st[1] == 0) {
                   const B yv = *y;
                   for (int64_t i = 0; i < n; ++i) dst[i] = fn(x[i], yv);
                 } else if (st[0] == 0 && st[1] == 1) {
                   const A xv = *x;
                   for (int64_t i = 0; i < n; ++i) dst[i] = fn(xv, y[i]);
                 } else {
                   for (int64_t i = 0; i < n; ++i) dst[i] = fn(x[i * st[0]], y[i * st[1]]);
                 }
               });
}

// out[i] = fn(a[i'], b[i''], c[i''']) with numpy broadcasting of all three to out's shape.
template <typename A, typename B, typename C, typename R, typename Fn>
void broadcast_ternary(const TensorView& a, const TensorView& b, const TensorView& c,
                       const TensorView& out, Fn&& fn) {
  const StridedLoop<3> loop = make_strided_loop<3>(
      out.shape, {broadcast_strides(a.shape, out.shape), broadcast_strides(b.shape, out.shape),
                  broadcast_strides(c.shape, out.shape)});
  const A* pa = a.as<const A>();
  const B* pb = b.as<const B>();
  const C* pc = c.as<const C>();
  R* po = out.as<R>();
  parallel_for_each_row(loop, {0, 0, 0}, kBroadcastGrain,
               [&](int64_t o, std::array<int64_t, 3> in, int64_t n, std::array<int64_t, 3> st) {
                 R* dst = po + o;
                 const A* x = pa + in[0];
                 const B* y = pb + in[1];
                 const C* z = pc + in[2];
                 if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                   for (int64_t i = 0; i < n; ++i) dst[i] = fn(x[i], y[i], z[i]);
                 } else {
                   for (int64_t i = 0; i < n; ++i) {
                     dst[i] = fn(x[i * st[0]], y[i * st[1]], z[i * st[2]]);
                   }
                 }
               });
}

}  // namespace kiln::cpu
