// Tensors in host memory: HostTensor owns its bytes, TensorView borrows them.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "base/checked_math.hpp"
#include "kiln/types.hpp"

namespace kiln {

// A dense, row-major tensor whose bytes live in host memory and are owned by it. Used for
// constants (weights, folded values), attribute tensors and host-computed shape values.
struct HostTensor {
  DType dtype = DType::kFloat32;
  Shape shape;
  std::vector<uint8_t> bytes;  // shape_numel(shape) * dtype_size(dtype) bytes

  HostTensor() = default;
  // Throws kInvalidArgument when the shape is not static or its byte size overflows (see
  // checked_math.hpp); std::bad_alloc when the memory is not there. Callers that allocate from
  // untrusted sizes check them against a memory limit first.
  HostTensor(DType dtype_, Shape shape_)
      : dtype(dtype_),
        shape(std::move(shape_)),
        bytes(static_cast<size_t>(checked_byte_size(shape, dtype, "host tensor"))) {}

  int64_t numel() const { return shape_numel(shape); }
  template <typename T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
};

// A dense, row-major tensor borrowed from someone else. `data` is null for an absent optional
// input. On the CPU backend it is host memory; other backends say what it points to.
struct TensorView {
  DType dtype = DType::kFloat32;
  Shape shape;
  void* data = nullptr;

  int64_t numel() const { return shape_numel(shape); }
  size_t nbytes() const { return static_cast<size_t>(checked_byte_size(shape, dtype, "tensor")); }
  bool present() const { return data != nullptr || (!shape.empty() && numel() == 0); }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
};

inline TensorView view_of(HostTensor& t) { return TensorView{t.dtype, t.shape, t.bytes.data()}; }
inline TensorView view_of(const HostTensor& t) {
  return TensorView{t.dtype, t.shape, const_cast<uint8_t*>(t.bytes.data())};
}

// Reads element i of an integer tensor (int32 or int64) as int64. Throws kInvalidArgument for
// other dtypes.
int64_t read_index(const TensorView& t, int64_t i);
// All elements of an int32/int64 tensor as int64.
std::vector<int64_t> read_indices(const TensorView& t);
// Element i of any numeric tensor as double (for constant folding and tests).
double read_as_double(const TensorView& t, int64_t i);
// The little-endian bytes of `value` as one element of `dtype` (rounded or truncated the way a
// static_cast would; bool is value != 0).
std::vector<uint8_t> scalar_bytes(DType dtype, double value);

}  // namespace kiln
