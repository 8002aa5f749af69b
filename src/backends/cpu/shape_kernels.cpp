// CPU kernels of the shape family. They move bytes, so they handle every dtype themselves
// (float_compute = false); output shapes were already decided by the ops' infer functions.
#include <cstring>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/tensor_dispatch.hpp"
#include "backends/cpu/tensor_strided.hpp"
#include "base/half.hpp"
#include "ops/tensor_op_utils.hpp"

namespace kiln::cpu {
namespace {

void copy_bytes(const TensorView& in, const TensorView& out) {
  if (in.nbytes() != out.nbytes()) {
    fail(ErrorCode::kInternal, "copy of ", in.nbytes(), " bytes into a tensor of ", out.nbytes());
  }
  if (out.nbytes() > 0) std::memcpy(out.data, in.data, out.nbytes());
}

// Reshape, Flatten, Squeeze, Unsqueeze, Identity: the bytes are unchanged.
void copy_kernel(KernelContext& ctx) {
  copy_bytes(ctx.inputs[0], ctx.outputs[0]);
}

void dropout_kernel(KernelContext& ctx) {
  if (ctx.has_input(2) && ctx.inputs[2].numel() > 0 && *ctx.inputs[2].as<const uint8_t>() != 0) {
    ctx.fail(ErrorCode::kUnsupported,
             "training_mode=true is not supported (kiln runs inference only)");
  }
  copy_bytes(ctx.inputs[0], ctx.outputs[0]);
  if (ctx.outputs.size() > 1 && ctx.outputs[1].nbytes() > 0) {
    std::memset(ctx.outputs[1].data, 1, ctx.outputs[1].nbytes());  // nothing is dropped
  }
}

void shape_kernel(KernelContext& ctx) {
  const Shape& shape = ctx.inputs[0].shape;
  const auto rank = static_cast<int64_t>(shape.size());
  const auto [start, end] = ops::shape_op_range(ctx.attrs.get_int_or("start", 0),
                                                ctx.attrs.get_int_or("end", rank), rank);
  int64_t* out = ctx.outputs[0].as<int64_t>();
  for (int64_t i = start; i < end; ++i) out[i - start] = shape[static_cast<size_t>(i)];
}

void size_kernel(KernelContext& ctx) {
  *ctx.outputs[0].as<int64_t>() = ctx.inputs[0].numel();
}

void expand_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  copy_strided(in.data, out.data, dtype_size(in.dtype), out.shape,
               broadcast_strides(in.shape, out.shape));
}

// Fills a tensor with copies of one element's bytes.
void fill_element(const TensorView& out, const uint8_t* element) {
  const size_t size = dtype_size(out.dtype);
  auto* dst = out.as<uint8_t>();
  const int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst + static_cast<size_t>(i) * size, element, size);
}

void constant_of_shape_kernel(KernelContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  const Attribute* value = ctx.attrs.find("value");
  if (!value) {
    if (out.nbytes() > 0) std::memset(out.data, 0, out.nbytes());  // float32 zero
    return;
  }
  if (value->kind != Attribute::Kind::kTensor || !value->tensor ||
      value->tensor->dtype != out.dtype || value->tensor->numel() != 1) {
    ctx.fail(ErrorCode::kInvalidArgument, "attribute 'value' must be a one-element ",
             dtype_name(out.dtype), " tensor");
  }
  fill_element(out, value->tensor->bytes.data());
}

void range_kernel(KernelContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  if (out.dtype == DType::kFloat16 || out.dtype == DType::kBFloat16) {
    // Computed in float32 (stash_type 1), each element rounded to the 16-bit type.
    const auto start = static_cast<float>(read_as_double(ctx.inputs[0], 0));
    const auto delta = static_cast<float>(read_as_double(ctx.inputs[2], 0));
    uint16_t* o = out.as<uint16_t>();
    for (int64_t i = 0; i < out.numel(); ++i) {
      const float value = start + static_cast<float>(i) * delta;
      o[i] = out.dtype == DType::kFloat16 ? float_to_half(value) : float_to_bfloat16(value);
    }
    return;
  }
  const bool ok = dispatch_among<float, double, int32_t, int64_t>(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T start = ctx.inputs[0].as<const T>()[0];
    const T delta = ctx.inputs[2].as<const T>()[0];
    T* o = out.as<T>();
    for (int64_t i = 0; i < out.numel(); ++i) {
      if constexpr (std::is_integral_v<T>) {
        // Unsigned arithmetic: wraps instead of overflowing for extreme ranges.
        o[i] = static_cast<T>(static_cast<uint64_t>(static_cast<int64_t>(start)) +
                              static_cast<uint64_t>(i) *
                                  static_cast<uint64_t>(static_cast<int64_t>(delta)));
      } else {
        o[i] = static_cast<T>(start + static_cast<T>(i) * delta);
      }
    }
  });
  if (!ok) ctx.fail(ErrorCode::kUnsupported, "no CPU kernel for dtype ", dtype_name(out.dtype));
}


void eye_like_kernel(KernelContext& ctx) {
  const TensorView& out = ctx.outputs[0];
  if (out.nbytes() > 0) std::memset(out.data, 0, out.nbytes());
  const int64_t rows = out.shape[0], cols = out.shape[1];
  const int64_t k = ctx.attrs.get_int_or("k", 0);
  const std::vector<uint8_t> one = scalar_bytes(out.dtype, 1.0);
  auto* dst = out.as<uint8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r + k;
    if (c < 0 || c >= cols) continue;
    std::memcpy(dst + static_cast<size_t>(r * cols + c) * one.size(), one.data(), one.size());
  }
}

// Tile reads the output as [r0, d0, r1, d1, ...]: repeat dims have stride 0 in the input.
void tile_kernel(KernelContext& ctx) {
  const TensorView& in = ctx.inputs[0];
  const TensorView& out = ctx.outputs[0];
  const std::vector<int64_t> in_strides = dense_strides(in.shape);
  Shape loop_shape;
  std::vector<int64_t> strides;
  for (size_t i = 0; i < in.shape.size(); ++i) {
    const int64_t repeats = in.shape[i] == 0 ? 0 : out.shape[i] / in.shape[i];
    loop_shape.push_back(repeats);
    strides.push_back(0);
    loop_shape.push_back(in.shape[i]);
    strides.push_back(in_strides[i]);
  }
  copy_strided(in.data, out.data, dtype_size(in.dtype), loop_shape, strides);
}

}  // namespace

void register_shape_kernels(CpuKernelRegistry& registry) {
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}) {
    registry.add(op, {copy_kernel, false});
  }
  registry.add("Dropout", {dropout_kernel, false});
  registry.add("Shape", {shape_kernel, false});
  registry.add("Size", {size_kernel, false});
  registry.add("Expand", {expand_kernel, false});
  registry.add("ConstantOfShape", {constant_of_shape_kernel, false});
  registry.add("Range", {range_kernel, false});
  registry.add("EyeLike", {eye_like_kernel, false});
  registry.add("Tile", {tile_kernel, false});
}

}  // namespace kiln::cpu
