#include "backends/cpu/tensor_strided.hpp"

#include <cstring>

namespace kiln::cpu {
namespace {

template <typename T>
void copy_rows(const StridedLoop<1>& loop, const T* src, T* dst, int64_t src_offset) {
  for_each_row(
      loop, {src_offset},
      [&](int64_t out, std::array<int64_t, 1> in, int64_t count, std::array<int64_t, 1> st) {
        T* o = dst + out;
        const T* s = src + in[0];
        if (st[0] == 1) {
          std::memcpy(o, s, static_cast<size_t>(count) * sizeof(T));
        } else if (st[0] == 0) {
          for (int64_t i = 0; i < count; ++i) o[i] = *s;
        } else {
          for (int64_t i = 0; i < count; ++i) o[i] = s[i * st[0]];
        }
      });
}

}  // namespace

std::vector<int64_t> dense_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  const std::vector<int64_t> dense = dense_strides(in);
  const size_t lead = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) {
    strides[lead + i] = in[i] == 1 ? 0 : dense[i];
  }
  return strides;
}

void copy_strided(const void* src, void* dst, size_t elem_size, const Shape& out,
                  const std::vector<int64_t>& src_strides, int64_t src_offset) {
  const StridedLoop<1> loop = make_strided_loop<1>(out, {src_strides});
  switch (elem_size) {
    case 1:
      copy_rows(loop, static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), src_offset);
      return;
    case 2:
      copy_rows(loop, static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), src_offset);
      return;
    case 4:
      copy_rows(loop, static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), src_offset);
      return;
    default:
      copy_rows(loop, static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), src_offset);
      return;
  }
}

}  // namespace kiln::cpu
