// The CPU backend's strided loops (backends/cpu/tensor_strided.hpp): a loop cut into row ranges,
// and the same loop spread over a pool, visit exactly the rows and offsets the serial walk does.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <mutex>
#include <tuple>
#include <vector>

#include "backends/cpu/intra_op_threads.hpp"
#include "backends/cpu/tensor_broadcast.hpp"
#include "backends/cpu/tensor_strided.hpp"

namespace kiln::cpu {
namespace {

using Row = std::tuple<int64_t, int64_t, int64_t, int64_t>;  // out offset, a offset, b offset, count

StridedLoop<2> broadcast_loop(const Shape& a, const Shape& b, const Shape& out) {
  return make_strided_loop<2>(out, {broadcast_strides(a, out), broadcast_strides(b, out)});
}

std::vector<Row> serial_rows(const StridedLoop<2>& loop) {
  std::vector<Row> rows;
  for_each_row(loop, {0, 0}, [&](int64_t o, std::array<int64_t, 2> in, int64_t n, std::array<int64_t, 2>) {
    rows.emplace_back(o, in[0], in[1], n);
  });
  return rows;
}

// Shapes whose loops keep several outer dims (broadcasts that stop the merging), one row, or none.
const std::vector<std::array<Shape, 3>>& cases() {
  static const std::vector<std::array<Shape, 3>> shapes = {
      {Shape{2, 3, 5, 7}, Shape{1, 3, 1, 7}, Shape{2, 3, 5, 7}},
      {Shape{4, 1, 6}, Shape{1, 5, 1}, Shape{4, 5, 6}},
      {Shape{1, 56, 56, 96}, Shape{1, 1, 1, 96}, Shape{1, 56, 56, 96}},
      {Shape{300000}, Shape{1}, Shape{300000}},
      {Shape{}, Shape{}, Shape{}},
      {Shape{3, 0, 2}, Shape{1}, Shape{3, 0, 2}},
  };
  return shapes;
}

TEST(CpuTensorStrided, RowRangesTogetherAreTheSerialWalk) {
  for (const auto& [a, b, out] : cases()) {
    const StridedLoop<2> loop = broadcast_loop(a, b, out);
    const std::vector<Row> want = serial_rows(loop);
    const int64_t rows = loop.numel == 0 ? 0 : loop.dims.empty() ? 1 : loop.numel / loop.dims.back();
    for (const int64_t step : {int64_t{1}, int64_t{2}, int64_t{7}, rows}) {
      std::vector<Row> got;
      for (int64_t first = 0; first < rows; first += std::max<int64_t>(step, 1)) {
        for_each_row_in(loop, {0, 0}, first, std::min(rows, first + std::max<int64_t>(step, 1)),
                        [&](int64_t o, std::array<int64_t, 2> in, int64_t n, std::array<int64_t, 2>) {
                          got.emplace_back(o, in[0], in[1], n);
                        });
      }
      EXPECT_EQ(got, want) << shape_to_string(out) << " in ranges of " << step << " rows";
    }
  }
}

// Spread over a pool, every output element is computed once, from the operands' right elements.
TEST(CpuTensorStrided, BroadcastOverAPoolComputesEveryElementOnce) {
  ThreadPool pool(3);
  for (const auto& [a_shape, b_shape, out_shape] : cases()) {
    std::vector<float> a(static_cast<size_t>(shape_numel(a_shape))), b(static_cast<size_t>(shape_numel(b_shape)));
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 1000);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i % 7) * 1000.0f;
    const auto numel = static_cast<size_t>(shape_numel(out_shape));
    std::vector<float> serial(numel, -1.0f), threaded(numel, -1.0f);
    std::vector<int> visits(numel, 0);
    const TensorView va{DType::kFloat32, a_shape, a.data()}, vb{DType::kFloat32, b_shape, b.data()};
    broadcast_binary<float, float, float>(va, vb, TensorView{DType::kFloat32, out_shape, serial.data()},
                                          [](float x, float y) { return x + y; });
    {
      const IntraOpScope scope(&pool);
      std::mutex mutex;
      const StridedLoop<2> loop = broadcast_loop(a_shape, b_shape, out_shape);
      parallel_for_each_row(loop, {0, 0}, /*grain=*/64,
                            [&](int64_t o, std::array<int64_t, 2> in, int64_t n, std::array<int64_t, 2> st) {
                              std::lock_guard lock(mutex);
                              for (int64_t i = 0; i < n; ++i) {
                                ++visits[static_cast<size_t>(o + i)];
                                threaded[static_cast<size_t>(o + i)] = a[static_cast<size_t>(in[0] + i * st[0])] +
                                                                       b[static_cast<size_t>(in[1] + i * st[1])];
                              }
                            });
    }
    EXPECT_EQ(threaded, serial) << shape_to_string(out_shape);
    for (size_t i = 0; i < numel; ++i) ASSERT_EQ(visits[i], 1) << shape_to_string(out_shape) << " element " << i;
  }
}

}  // namespace
}  // namespace kiln::cpu
