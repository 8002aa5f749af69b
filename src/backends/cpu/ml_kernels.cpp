// Binarizer and ArrayFeatureExtractor (ai.onnx.ml) on the CPU for float32, float64, int32 and
// int64 tensors.
#include <cstring>

#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/tensor_dispatch.hpp"

namespace kiln::cpu {
namespace {

void binarizer_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  nn::require_output_shape(ctx, 0, x.shape);
  const double threshold = ctx.attrs.get_float_or("threshold", 0.0f);
  const bool done = dispatch_among<float, double, int32_t, int64_t>(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.as<const T>();
    T* out = ctx.outputs[0].as<T>();
    // A NaN is not above the threshold: 0, as ONNX Runtime gives.
    for (int64_t i = 0; i < x.numel(); ++i) {
      out[i] = static_cast<double>(in[i]) > threshold ? T{1} : T{0};
    }
  });
  if (!done) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 (X) has unsupported dtype ", dtype_name(x.dtype),
             "; supported: float32, float64, int32, int64");
  }
}

void array_feature_extractor_kernel(KernelContext& ctx) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& y = ctx.inputs[1];
  const int64_t last = x.shape.back();
  const int64_t rows = x.numel() / (last == 0 ? 1 : last);
  const int64_t count = y.numel();
  Shape expected = x.shape.size() == 1 ? Shape{1} : Shape(x.shape.begin(), x.shape.end() - 1);
  expected.push_back(count);
  nn::require_output_shape(ctx, 0, expected);
  const int64_t* indices = y.as<const int64_t>();
  for (int64_t k = 0; k < count; ++k) {
    if (indices[k] < 0 || indices[k] >= last) {
      ctx.fail(ErrorCode::kInvalidArgument, "input 1 (Y) [", k, "] = ", indices[k],
               " is outside [0, ", last, ") (X's last axis of ", shape_to_string(x.shape), ")");
    }
  }
  const size_t element = dtype_size(x.dtype);
  const auto* src = static_cast<const uint8_t*>(x.data);
  auto* dst = static_cast<uint8_t*>(ctx.outputs[0].data);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < count; ++k) {
      std::memcpy(dst + (r * count + k) * element, src + (r * last + indices[k]) * element,
                  element);
    }
  }
}

}  // namespace

void register_ml_kernels(CpuKernelRegistry& registry) {
  registry.add("Binarizer", CpuKernel{&nn::kernel_with_node_errors<binarizer_kernel>, false});
  registry.add("ArrayFeatureExtractor",
               CpuKernel{&nn::kernel_with_node_errors<array_feature_extractor_kernel>, false});
}

}  // namespace kiln::cpu
