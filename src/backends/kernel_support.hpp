// What one backend's kernel for one op takes: the dtypes of the tensors it reads and writes, and
// any further condition on the layer (an output it does not write, a plugin it needs). Each
// backend's kernel registry stores one KernelSupport per op, given where the kernel is registered
// (its family's kernel file), and Backend::why_unsupported answers from it; the builder, the
// runtime's load checks, kiln.supports and the backend-ops conformance test all ask that.
//
// An op's own rules (arity, which dtypes the op is defined for, shape inference) stay in its
// OpDef (src/ops/); a KernelSupport says only where a kernel takes less than the op allows.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "format/engine_model.hpp"
#include "kiln/types.hpp"

namespace kiln::backends {

// A set of dtypes (a bit per DType value, which are all below 64).
class DTypeSet {
 public:
  constexpr DTypeSet() = default;
  constexpr DTypeSet(std::initializer_list<DType> dtypes) {
    for (DType d : dtypes) bits_ |= bit(d);
  }
  static constexpr DTypeSet all() {
    DTypeSet s;
    s.bits_ = ~uint64_t{0};
    return s;
  }
  constexpr bool contains(DType d) const { return (bits_ & bit(d)) != 0; }
  constexpr bool is_all() const { return bits_ == ~uint64_t{0}; }
  constexpr DTypeSet intersect(DTypeSet other) const {
    DTypeSet s;
    s.bits_ = bits_ & other.bits_;
    return s;
  }
  constexpr DTypeSet without(DTypeSet other) const {
    DTypeSet s;
    s.bits_ = bits_ & ~other.bits_;
    return s;
  }
  // The members that are valid DTypes, ascending by value.
  std::vector<DType> members() const;
  // "float32, float16, bfloat16", or "any dtype".
  std::string names() const;

 private:
  static constexpr uint64_t bit(DType d) { return uint64_t{1} << (static_cast<unsigned>(d) & 63u); }
  uint64_t bits_ = 0;
};

// float32, float16, bfloat16: what "nn float" kernels (GEMM, Softmax, pooling on CUDA) compute.
inline constexpr DTypeSet kNnFloatDTypes{DType::kFloat32, DType::kFloat16, DType::kBFloat16};

// One dtype rule: the listed inputs (by index; absent optional inputs are skipped) take `dtypes`.
struct InputDTypes {
  std::vector<int> inputs = {};
  DTypeSet dtypes = {};
};

// A condition on a layer that dtypes do not express: "" when the kernel takes `layer`, else the
// reason (e.g. "its Indices output is not computed"). Needs no device; never throws.
using LayerCheck = std::string (*)(const format::EngineModel& model, const format::Layer& layer);

struct KernelSupport {
  // Every tensor the layer reads or writes must have one of these dtypes (a backend-wide rule:
  // e.g. the CUDA kernels have no code for uint32 or float8 tensors).
  DTypeSet every_tensor = DTypeSet::all();
  // Per-input narrowings, checked after every_tensor.
  std::vector<InputDTypes> inputs = {};
  LayerCheck check = nullptr;  // optional
};

// "" when `layer` of `model` meets `support`, else why not, naming the tensor, the dtype it has and
// the dtypes the `backend` kernel takes, e.g. "input 0 'x' is float64; the cuda kernel takes
// float32, float16, bfloat16". Never throws (tensor indices out of range are reported).
std::string check_kernel_support(const KernelSupport& support, const format::EngineModel& model,
                                 const format::Layer& layer, std::string_view backend);

}  // namespace kiln::backends
