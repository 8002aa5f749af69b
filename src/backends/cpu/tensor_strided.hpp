// Loop nests over a dense output whose operands are read through arbitrary element strides:
// broadcasting (stride 0), transposes (permuted strides), slices (offset + scaled strides).
// Adjacent dimensions that every operand walks contiguously are merged and size-1 dimensions are
// dropped, so a same-shape elementwise op runs as one flat row and a broadcast scalar becomes a
// stride-0 row; the remaining outer dimensions advance offsets incrementally (no division).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backends/cpu/intra_op_threads.hpp"
#include "kiln/types.hpp"

namespace kiln::cpu {

// Element strides of a dense row-major tensor.
std::vector<int64_t> dense_strides(const Shape& shape);
// Strides that read a dense tensor of shape `in` broadcast (numpy rules) to `out`: 0 where `in`
// has size 1 or lacks the dimension. The caller has checked that the shapes broadcast.
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

template <size_t N>
struct StridedLoop {
  std::vector<int64_t> dims;                    // merged loop dims, outermost first
  std::vector<std::array<int64_t, N>> strides;  // strides[d][k]: operand k's stride along dims[d]
  int64_t numel = 0;
};

// `operand_strides[k]` has one stride per dimension of `out`.
template <size_t N>
StridedLoop<N> make_strided_loop(const Shape& out,
                                 const std::array<std::vector<int64_t>, N>& operand_strides) {
  StridedLoop<N> loop;
  loop.numel = shape_numel(out);
  // Walk from the innermost dim outwards, merging into the current innermost loop dim when every
  // operand's stride continues it.
  std::vector<int64_t> dims;
  std::vector<std::array<int64_t, N>> strides;
  for (size_t i = out.size(); i-- > 0;) {
    if (out[i] == 1) continue;
    std::array<int64_t, N> s;
    for (size_t k = 0; k < N; ++k) s[k] = operand_strides[k][i];
    if (!dims.empty()) {
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k) mergeable &= s[k] == strides.back()[k] * dims.back();
      if (mergeable) {
        dims.back() *= out[i];
        continue;
      }
    }
    dims.push_back(out[i]);
    strides.push_back(s);
  }
  loop.dims.assign(dims.rbegin(), dims.rend());
  loop.strides.assign(strides.rbegin(), strides.rend());
  return loop;
}

// The rows [first, last) of the loop, as for_each_row (below) calls them (rows numbered in output order; a
// loop has numel / dims.back() rows): for splitting one loop over threads.
template <size_t N, typename RowFn>
void for_each_row_in(const StridedLoop<N>& loop, const std::array<int64_t, N>& base, int64_t first,
                     int64_t last, RowFn&& row) {
  if (loop.numel == 0 || first >= last) return;
  if (loop.dims.empty()) {
    row(int64_t{0}, base, int64_t{1}, std::array<int64_t, N>{});
    return;
  }
  const size_t rank = loop.dims.size();
  const int64_t inner = loop.dims[rank - 1];
  const std::array<int64_t, N>& inner_strides = loop.strides[rank - 1];
  // The outer counter of row `first`, and the offsets it gives.
  std::vector<int64_t> counter(rank - 1, 0);
  std::array<int64_t, N> offsets = base;
  for (size_t d = rank - 1, rest = static_cast<size_t>(first); d-- > 0;) {
    counter[d] = static_cast<int64_t>(rest % static_cast<size_t>(loop.dims[d]));
    rest /= static_cast<size_t>(loop.dims[d]);
    for (size_t k = 0; k < N; ++k) offsets[k] += counter[d] * loop.strides[d][k];
  }
  int64_t out_offset = first * inner;
  for (int64_t r = first; r < last; ++r) {
    row(out_offset, offsets, inner, inner_strides);
    out_offset += inner;
    for (size_t d = rank - 1; d-- > 0;) {
      for (size_t k = 0; k < N; ++k) offsets[k] += loop.strides[d][k];
      if (++counter[d] < loop.dims[d]) break;
      for (size_t k = 0; k < N; ++k) offsets[k] -= loop.strides[d][k] * loop.dims[d];
      counter[d] = 0;
    }
  }
}

// Calls row(out_offset, offsets, count, inner_strides) for every innermost row, in row-major
// order of the output. `offsets` start at `base`.
template <size_t N, typename RowFn>
void for_each_row(const StridedLoop<N>& loop, const std::array<int64_t, N>& base, RowFn&& row) {
  if (loop.numel == 0) return;
  const int64_t rows = loop.dims.empty() ? 1 : loop.numel / loop.dims.back();
  for_each_row_in(loop, base, 0, rows, row);
}

// for_each_row spread over the current intra-op pool (intra_op_threads.hpp) in contiguous runs of
// rows of about `grain` elements or more; a loop of one row has that row cut into pieces. `row`
// must be safe to call from several threads at once for different rows (it writes its own
// output elements only).
template <size_t N, typename RowFn>
void parallel_for_each_row(const StridedLoop<N>& loop, const std::array<int64_t, N>& base, int64_t grain,
                           RowFn&& row) {
  if (loop.numel < 2 * grain || current_intra_op_threads() == 1 || loop.dims.empty()) {
    for_each_row(loop, base, row);
    return;
  }
  const int64_t inner = loop.dims.back();
  const int64_t rows = loop.numel / inner;
  if (rows == 1) {
    const std::array<int64_t, N>& st = loop.strides.back();
    parallel_chunks(inner, grain, [&](int64_t begin, int64_t end) {
      std::array<int64_t, N> offsets = base;
      for (size_t k = 0; k < N; ++k) offsets[k] += begin * st[k];
      row(begin, offsets, end - begin, st);
    });
    return;
  }
  parallel_chunks(rows, std::max<int64_t>(1, grain / inner),
                  [&](int64_t first, int64_t last) { for_each_row_in(loop, base, first, last, row); });
}

// Fills the dense `dst` of shape `out` from `src` read at `src_offset + sum(i_d * src_strides[d])`
// (element units), for elements of `elem_size` bytes.
void copy_strided(const void* src, void* dst, size_t elem_size, const Shape& out,
                  const std::vector<int64_t>& src_strides, int64_t src_offset = 0);

}  // namespace kiln::cpu
