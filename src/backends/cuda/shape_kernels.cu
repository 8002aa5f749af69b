// Shape op family on CUDA: Reshape, Flatten, Squeeze and Unsqueeze (byte copies), Shape and Size
// (values known on the host from shapes, written by a tiny kernel that takes them by value),
// ConstantOfShape, Range and EyeLike. Identity and Dropout live in elementwise.cu. Semantics
// follow src/backends/cpu/shape_kernels.cpp.
#include <cstring>
#include <vector>

#include "backends/cuda/dm_common.cuh"
#include "base/half.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::cuda {
namespace {

// ---- Reshape, Flatten, Squeeze, Unsqueeze ----

void launch_copy(LaunchContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  if (in.nbytes() != out.nbytes()) {
    ctx.fail(ErrorCode::kInternal, "copy of ", in.nbytes(), " bytes into a tensor of ",
             out.nbytes());
  }
  if (out.nbytes() == 0 || in.data == out.data) return;
  KILN_CUDA_CHECK(
      cudaMemcpyAsync(out.data, in.data, out.nbytes(), cudaMemcpyDeviceToDevice, ctx.stream));
}

// ---- Shape and Size ----

constexpr int kMaxHostValues = 64;

struct HostValues {
  int count = 0;
  int64_t values[kMaxHostValues];
};

__global__ void write_values_kernel(int64_t* __restrict__ out, HostValues v) {
  for (int i = static_cast<int>(threadIdx.x); i < v.count; i += static_cast<int>(blockDim.x)) {
    out[i] = v.values[i];
  }
}

void write_values(const LaunchContext& ctx, const std::vector<int64_t>& values) {
  const TensorView& out = ctx.outputs[0];
  if (out.dtype != DType::kInt64 || out.numel() != static_cast<int64_t>(values.size())) {
    ctx.fail(ErrorCode::kInternal, "output must be int64 with ", values.size(), " elements");
  }
  if (values.empty()) return;
  if (values.size() > static_cast<size_t>(kMaxHostValues)) {
    ctx.fail(ErrorCode::kUnsupported, values.size(), " values (the CUDA backend handles ",
             kMaxHostValues, ")");
  }
  HostValues v{};
  v.count = static_cast<int>(values.size());
  for (size_t i = 0; i < values.size(); ++i) v.values[i] = values[i];
  write_values_kernel<<<1, 64, 0, ctx.stream>>>(out.as<int64_t>(), v);
  check_launch(ctx);
}

void launch_shape(LaunchContext& ctx) {
  const Shape& shape = ctx.inputs[0].shape;
  const auto rank = static_cast<int64_t>(shape.size());
  const auto [start, end] = ops::shape_op_range(ctx.attrs.get_int_or("start", 0),
                                                ctx.attrs.get_int_or("end", rank), rank);
  write_values(ctx, std::vector<int64_t>(shape.begin() + start, shape.begin() + end));
}

void launch_size(LaunchContext& ctx) {
  write_values(ctx, {ctx.inputs[0].numel()});
}

// ---- fills ----

// The output as 16-byte words of a repeated pattern, then a tail of single elements.
template <typename Word>
__global__ void fill_kernel(uint4* __restrict__ wide, int64_t wide_count, uint4 pattern,
                            Word* __restrict__ tail, int64_t tail_count, Word value) {
  KILN_DM_GRID_STRIDE(i, int64_t, wide_count + tail_count) {
    if (i < wide_count) {
      wide[i] = pattern;
    } else {
      tail[i - wide_count] = value;
    }
  }
}

// Fills `out` with copies of the dtype_size(out.dtype) bytes at `element`.
void fill_element(const LaunchContext& ctx, const TensorView& out, const uint8_t* element) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const size_t esize = dtype_size(out.dtype);
  bool all_zero = true;
  for (size_t b = 0; b < esize; ++b) all_zero &= element[b] == 0;
  if (all_zero) {
    KILN_CUDA_CHECK(cudaMemsetAsync(out.data, 0, out.nbytes(), ctx.stream));
    return;
  }
  uint8_t pattern_bytes[16];
  for (size_t b = 0; b < 16; ++b) pattern_bytes[b] = element[b % esize];
  uint4 pattern;
  std::memcpy(&pattern, pattern_bytes, sizeof(pattern));
  const bool aligned = dm::address_of(out.data) % 16 == 0;
  const int64_t wide_count = aligned ? static_cast<int64_t>(out.nbytes() / 16) : 0;
  const int64_t tail_count = n - wide_count * 16 / static_cast<int64_t>(esize);
  auto* tail = static_cast<uint8_t*>(out.data) + wide_count * 16;
  dm::dispatch_word(ctx, esize, [&]<typename Word>() {
    Word value;
    std::memcpy(&value, element, sizeof(Word));
    fill_kernel<Word><<<grid_for(wide_count + tail_count), kBlockSize, 0, ctx.stream>>>(
        static_cast<uint4*>(out.data), wide_count, pattern, reinterpret_cast<Word*>(tail),
        tail_count, value);
  });
  check_launch(ctx);
}

void launch_constant_of_shape(LaunchContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  const Attribute* value = ctx.attrs.find("value");
  if (!value) {
    if (out.nbytes() > 0) KILN_CUDA_CHECK(cudaMemsetAsync(out.data, 0, out.nbytes(), ctx.stream));
    return;  // float32 zero
  }
  if (value->kind != Attribute::Kind::kTensor || !value->tensor ||
      value->tensor->dtype != out.dtype || value->tensor->numel() != 1) {
    ctx.fail(ErrorCode::kInvalidArgument, "attribute 'value' must be a one-element ",
             dtype_name(out.dtype), " tensor");
  }
  fill_element(ctx, out, value->tensor->bytes.data());
}

// ---- Range ----

// start + i * delta, rounded exactly as the CPU kernel does (no fused multiply-add); integers wrap.
template <typename T>
__global__ void range_kernel(T* __restrict__ out, int64_t n, T start, T delta) {
  KILN_DM_GRID_STRIDE(i, int64_t, n) {
    if constexpr (std::is_same_v<T, float>) {
      out[i] = __fadd_rn(start, __fmul_rn(static_cast<float>(i), delta));
    } else if constexpr (std::is_same_v<T, double>) {
      out[i] = __dadd_rn(start, __dmul_rn(static_cast<double>(i), delta));
    } else {
      out[i] = static_cast<T>(static_cast<uint64_t>(static_cast<int64_t>(start)) +
                              static_cast<uint64_t>(i) *
                                  static_cast<uint64_t>(static_cast<int64_t>(delta)));
    }
  }
}

template <typename T>
T scalar_of(const LaunchContext& ctx, size_t index, const char* what) {
  const HostTensor& value = dm::host_input(ctx, index, what);
  if (value.numel() != 1 || value.dtype != ctx.outputs[0].dtype ||
      value.bytes.size() != sizeof(T)) {
    ctx.fail(ErrorCode::kInvalidArgument, what, " must be a one-element ",
             dtype_name(ctx.outputs[0].dtype), " tensor");
  }
  T v;
  std::memcpy(&v, value.bytes.data(), sizeof(T));
  return v;
}

void launch_range(LaunchContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  const int64_t n = out.numel();
  auto run = [&]<typename T>() {
    const T start = scalar_of<T>(ctx, 0, "start");
    const T delta = scalar_of<T>(ctx, 2, "delta");
    if (n == 0) return;
    range_kernel<T><<<grid_for(n), kBlockSize, 0, ctx.stream>>>(out.as<T>(), n, start, delta);
    check_launch(ctx);
  };
  dispatch_arithmetic(ctx, out.dtype, "Range", run);
}

// ---- EyeLike ----


template <typename Word>
__global__ void eye_kernel(Word* __restrict__ out, int64_t n, int64_t cols, int64_t k, Word one) {
  KILN_DM_GRID_STRIDE(i, int64_t, n) {
    const int64_t r = i / cols;
    const int64_t c = i - r * cols;
    out[i] = c - r == k ? one : Word{};
  }
}

void launch_eye_like(LaunchContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  if (out.shape.size() != 2) {
    ctx.fail(ErrorCode::kInvalidArgument, "output must be 2-D, got ", shape_to_string(out.shape));
  }
  const int64_t n = out.numel();
  if (n == 0) return;
  const int64_t k = ctx.attrs.get_int_or("k", 0);
  const std::vector<uint8_t> one = scalar_bytes(out.dtype, 1.0);
  dm::dispatch_word(ctx, one.size(), [&]<typename Word>() {
    Word value;
    std::memcpy(&value, one.data(), sizeof(Word));
    eye_kernel<Word>
        <<<grid_for(n), kBlockSize, 0, ctx.stream>>>(out.as<Word>(), n, out.shape[1], k, value);
  });
  check_launch(ctx);
}

}  // namespace

void register_shape_kernels(CudaKernelRegistry& registry) {
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}) {
    registry.add(op, CudaKernel{nullptr, launch_copy});
  }
  registry.add("Shape", CudaKernel{nullptr, launch_shape});
  registry.add("Size", CudaKernel{nullptr, launch_size});
  registry.add("ConstantOfShape", CudaKernel{nullptr, launch_constant_of_shape});
  // Range computes in float32, float64, int32 and int64 (dispatch_arithmetic; float16/bfloat16
  // ranges are the CPU's).
  registry.add(
      "Range", CudaKernel{nullptr, launch_range},
      {.inputs = {{{0, 1, 2}, {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64}}}});
  registry.add("EyeLike", CudaKernel{nullptr, launch_eye_like});
}

}  // namespace kiln::cuda
