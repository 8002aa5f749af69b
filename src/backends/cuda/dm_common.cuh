// Helpers shared by the CUDA data movement, shape and resize families: raw-word dispatch by
// element size, host-side shape arithmetic and reading of host-known value inputs.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/cuda/cuda_common.cuh"
#include "base/host_tensor.hpp"

namespace kiln::cuda::dm {

// Calls f.template operator()<Word>() with an unsigned word type of `bytes` bytes (1, 2, 4, 8 or
// 16). Data movement never interprets elements, so only their size matters.
template <typename F>
void dispatch_word(const LaunchContext& ctx, size_t bytes, F&& f) {
  switch (bytes) {
    case 1:
      f.template operator()<uint8_t>();
      return;
    case 2:
      f.template operator()<uint16_t>();
      return;
    case 4:
      f.template operator()<uint32_t>();
      return;
    case 8:
      f.template operator()<uint64_t>();
      return;
    case 16:
      f.template operator()<uint4>();
      return;
    default:
      ctx.fail(ErrorCode::kUnsupported, "element size of ", bytes, " bytes is not supported");
  }
}

// Product of shape[begin, end).
inline int64_t dims_product(const Shape& shape, size_t begin, size_t end) {
  int64_t product = 1;
  for (size_t i = begin; i < end; ++i) product *= shape[i];
  return product;
}

// Element strides of a dense row-major tensor.
inline std::vector<int64_t> dense_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * shape[i];
  return strides;
}

// Normalises a possibly negative axis into [0, rank).
inline size_t normalized_axis(const LaunchContext& ctx, int64_t axis, size_t rank) {
  const auto r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) {
    ctx.fail(ErrorCode::kInvalidArgument, "axis ", axis, " is out of range for rank ", rank);
  }
  return static_cast<size_t>(axis < 0 ? axis + r : axis);
}

inline void require_output_shape(const LaunchContext& ctx, size_t index, const Shape& expected) {
  if (ctx.outputs[index].shape != expected) {
    ctx.fail(ErrorCode::kInternal, "output ", index, " was allocated as ",
             shape_to_string(ctx.outputs[index].shape), " but the inputs give ",
             shape_to_string(expected));
  }
}

// The host value of input `index`; value inputs (shape tensors, constants) always have one.
inline const HostTensor& host_input(const LaunchContext& ctx, size_t index, const char* what) {
  if (index >= ctx.host_inputs.size() || ctx.host_inputs[index] == nullptr) {
    ctx.fail(ErrorCode::kUnsupported, "the value of input ", index, " (", what,
             ") must be known on the host");
  }
  return *ctx.host_inputs[index];
}

inline const HostTensor* host_input_or_null(const LaunchContext& ctx, size_t index) {
  return index < ctx.host_inputs.size() ? ctx.host_inputs[index] : nullptr;
}

// The int32/int64 values of value input `index`.
inline std::vector<int64_t> host_indices(const LaunchContext& ctx, size_t index, const char* what) {
  return read_indices(view_of(host_input(ctx, index, what)));
}

// Largest power-of-two word (<= 16 bytes) that divides every value given (byte counts/addresses).
inline size_t common_word_size(std::initializer_list<uint64_t> values) {
  uint64_t bits = 16;
  for (uint64_t v : values) bits |= v;
  return static_cast<size_t>(bits & (~bits + 1));  // lowest set bit
}

inline uint64_t address_of(const void* p) {
  return reinterpret_cast<uintptr_t>(p);
}

// Division by a runtime constant in index math. The 32-bit form (used when every index is below
// 2^31) replaces the division by a multiply-high, an add and a shift (the round-up method of
// Granlund and Montgomery); the 64-bit form divides.
template <typename Index>
struct Divider;

template <>
struct Divider<uint32_t> {
  uint32_t divisor = 1;
  uint32_t magic = 1;
  uint32_t shift = 0;

  static Divider make(int64_t d) {
    Divider out;
    out.divisor = static_cast<uint32_t>(d);
    while ((uint64_t{1} << out.shift) < out.divisor) ++out.shift;
    out.magic = static_cast<uint32_t>(
        ((uint64_t{1} << 32) * ((uint64_t{1} << out.shift) - out.divisor)) / out.divisor + 1);
    return out;
  }
  // Exact for n < 2^31.
  __device__ __forceinline__ uint32_t div(uint32_t n) const {
    return (__umulhi(n, magic) + n) >> shift;
  }
};

template <>
struct Divider<int64_t> {
  int64_t divisor = 1;

  static Divider make(int64_t d) { return Divider{d}; }
  __device__ __forceinline__ int64_t div(int64_t n) const { return n / divisor; }
};

// Dividers for the dims of a dense output of rank <= kMaxRank, passed by value to kernels.
template <typename Index>
struct DimDividers {
  Divider<Index> dims[kMaxRank];
};

template <typename Index>
DimDividers<Index> make_dividers(const Shape& shape) {
  DimDividers<Index> out{};
  for (size_t d = 0; d < shape.size() && d < static_cast<size_t>(kMaxRank); ++d) {
    out.dims[d] = Divider<Index>::make(shape[d]);
  }
  return out;
}

// Index type for `n` work items: 32-bit (fast division) below 2^31, else 64-bit.
template <typename F>
void dispatch_index(int64_t n, F&& f) {
  if (n < (int64_t{1} << 31)) {
    f.template operator()<uint32_t>();
  } else {
    f.template operator()<int64_t>();
  }
}

// Grid-stride loop bounds for `n` work items of kBlockSize threads.
#define KILN_DM_GRID_STRIDE(i, Index, n)                                             \
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<Index>(gridDim.x) * blockDim.x)

}  // namespace kiln::cuda::dm
