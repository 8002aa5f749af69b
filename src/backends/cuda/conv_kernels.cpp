// Conv on CUDA through cuDNN, with bias, and with the builder's fused activation and residual add
// (attribute kiln_activation = "Relu", optional input 3 added before the activation).
//
// This uses cuDNN's convolution API, which cuDNN 9 marks deprecated in favour of its graph API but
// still ships; deprecation warnings are silenced for this file only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <cudnn.h>

#include <algorithm>
#include <vector>

#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/device_buffer.hpp"
#include "backends/cuda/library_handles.hpp"

namespace kiln::cuda {
namespace {

cudnnDataType_t cudnn_type(const LaunchContext& ctx, DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return CUDNN_DATA_FLOAT;
    case DType::kFloat16: return CUDNN_DATA_HALF;
    case DType::kBFloat16: return CUDNN_DATA_BFLOAT16;
    default: ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(dtype), " is not supported by cuDNN here");
  }
}

class ConvState : public LayerState {
 public:
  ~ConvState() override {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (filter) cudnnDestroyFilterDescriptor(filter);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (activation) cudnnDestroyActivationDescriptor(activation);
  }
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t filter = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnActivationDescriptor_t activation = nullptr;  // set when an activation is fused
  cudnnConvolutionFwdAlgo_t algo{};
  size_t workspace = 0;
  DeviceBuffer zero_bias;  // fused path without a bias input
};

// cuDNN wants at least 4-D tensors: a 1-D convolution becomes a 2-D one of height 1.
std::vector<int> dims_of(const Shape& shape) {
  std::vector<int> dims(shape.begin(), shape.end());
  if (dims.size() == 3) dims.insert(dims.begin() + 2, 1);
  return dims;
}

std::vector<int> dense_strides(const std::vector<int>& dims) {
  std::vector<int> strides(dims.size(), 1);
  for (size_t i = dims.size() - 1; i-- > 0;) strides[i] = strides[i + 1] * dims[i + 1];
  return strides;
}

cudnnTensorDescriptor_t tensor_desc(cudnnDataType_t type, const std::vector<int>& dims) {
  cudnnTensorDescriptor_t desc = nullptr;
  KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
  const std::vector<int> strides = dense_strides(dims);
  KILN_CUDNN_CHECK(cudnnSetTensorNdDescriptor(desc, type, static_cast<int>(dims.size()), dims.data(), strides.data()));
  return desc;
}

std::unique_ptr<LayerState> prepare_conv(LaunchContext& ctx, size_t* workspace_bytes) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& w = ctx.inputs[1];
  const TensorView& y = ctx.outputs[0];
  const size_t spatial = x.shape.size() - 2;
  if (spatial < 1 || spatial > 3) ctx.fail(ErrorCode::kUnsupported, spatial, "-D convolution");
  std::vector<int64_t> pads = ctx.attrs.get_ints_or("pads", std::vector<int64_t>(2 * spatial, 0));
  const std::vector<int64_t> strides = ctx.attrs.get_ints_or("strides", std::vector<int64_t>(spatial, 1));
  const std::vector<int64_t> dilations = ctx.attrs.get_ints_or("dilations", std::vector<int64_t>(spatial, 1));
  const auto group = static_cast<int>(ctx.attrs.get_int_or("group", 1));
  const std::string auto_pad = ctx.attrs.get_string_or("auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    pads.assign(2 * spatial, 0);
    for (size_t d = 0; d < spatial; ++d) {
      const int64_t in = x.shape[2 + d], out = y.shape[2 + d];
      const int64_t kernel = (w.shape[2 + d] - 1) * dilations[d] + 1;
      const int64_t total = std::max<int64_t>(0, (out - 1) * strides[d] + kernel - in);
      pads[d] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pads[d + spatial] = total - pads[d];
    }
  } else if (auto_pad == "VALID") {
    pads.assign(2 * spatial, 0);
  }
  for (size_t d = 0; d < spatial; ++d) {
    if (pads[d] != pads[d + spatial]) {
      ctx.fail(ErrorCode::kUnsupported, "asymmetric padding ", pads[d], "/", pads[d + spatial], " on spatial axis ", d);
    }
  }
  const DType dtype = y.dtype;
  const cudnnDataType_t type = cudnn_type(ctx, dtype);
  auto state = std::make_unique<ConvState>();
  state->x = tensor_desc(type, dims_of(x.shape));
  state->y = tensor_desc(type, dims_of(y.shape));
  const std::vector<int> filter_dims = dims_of(w.shape);
  KILN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&state->filter));
  KILN_CUDNN_CHECK(cudnnSetFilterNdDescriptor(state->filter, type, CUDNN_TENSOR_NCHW,
                                              static_cast<int>(filter_dims.size()), filter_dims.data()));
  std::vector<int> conv_pads, conv_strides, conv_dilations;
  if (spatial == 1) {
    conv_pads.push_back(0);
    conv_strides.push_back(1);
    conv_dilations.push_back(1);
  }
  for (size_t d = 0; d < spatial; ++d) {
    conv_pads.push_back(static_cast<int>(pads[d]));
    conv_strides.push_back(static_cast<int>(strides[d]));
    conv_dilations.push_back(static_cast<int>(dilations[d]));
  }
  KILN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&state->conv));
  KILN_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(state->conv, static_cast<int>(conv_pads.size()), conv_pads.data(),
                                                   conv_strides.data(), conv_dilations.data(), CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
  KILN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(state->conv, group));
  // float32 stays exact float32 (no TF32) unless the builder allowed TF32.
  const cudnnMathType_t math = dtype != DType::kFloat32             ? CUDNN_TENSOR_OP_MATH
                               : ctx.attrs.get_int_or("kiln_allow_tf32", 0) ? CUDNN_DEFAULT_MATH
                                                                            : CUDNN_FMA_MATH;
  KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(state->conv, math));

  const bool has_bias = ctx.has_input(2);
  // cuDNN's fused conv+bias+residual+activation call runs with ReLU; a residual without an
  // activation is blended by the plain convolution instead (y = residual, then y = conv + 1 * y).
  const bool fused = ctx.attrs.get_string_or("kiln_activation", "") != "";
  if (has_bias || fused) {
    std::vector<int> bias_dims(dims_of(y.shape).size(), 1);
    bias_dims[1] = static_cast<int>(y.shape[1]);
    state->bias = tensor_desc(type, bias_dims);
  }
  if (fused) {
    const std::string activation = ctx.attrs.get_string_or("kiln_activation", "");
    if (!activation.empty() && activation != "Relu") ctx.fail(ErrorCode::kUnsupported, "fused activation ", activation);
    KILN_CUDNN_CHECK(cudnnCreateActivationDescriptor(&state->activation));
    KILN_CUDNN_CHECK(cudnnSetActivationDescriptor(state->activation,
                                                  activation == "Relu" ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
                                                  CUDNN_NOT_PROPAGATE_NAN, 0.0));
    if (!has_bias) {
      state->zero_bias = DeviceBuffer(static_cast<size_t>(y.shape[1]) * dtype_size(dtype));
      KILN_CUDA_CHECK(cudaMemset(state->zero_bias.get(), 0, state->zero_bias.size()));
    }
  }

  // Time cuDNN's algorithms on these shapes and keep the fastest that fits the workspace.
  KILN_CUDNN_CHECK(cudnnSetStream(ctx.libs->cudnn, ctx.stream));
  const size_t limit = std::min<size_t>(ctx.workspace_size, size_t{256} << 20);
  DeviceBuffer scratch(limit);
  DeviceBuffer output_scratch(y.nbytes());  // don't clobber live tensors while timing
  constexpr int kRequested = 8;
  cudnnConvolutionFwdAlgoPerf_t results[kRequested];
  int returned = 0;
  KILN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(ctx.libs->cudnn, state->x, x.data, state->filter, w.data,
                                                          state->conv, state->y, output_scratch.get(), kRequested,
                                                          &returned, results, scratch.get(), limit));
  bool chosen = false;
  for (int i = 0; i < returned && !chosen; ++i) {
    if (results[i].status != CUDNN_STATUS_SUCCESS || results[i].memory > limit) continue;
    // Exact float32 takes no algorithm that converts to TF32 or fp16 internally.
    if (math == CUDNN_FMA_MATH && results[i].mathType != CUDNN_FMA_MATH && results[i].mathType != CUDNN_DEFAULT_MATH) {
      continue;
    }
    // Each algorithm runs with the math type it was timed with.
    KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(state->conv, results[i].mathType));
    state->algo = results[i].algo;
    state->workspace = results[i].memory;
    chosen = true;
  }
  if (!chosen) ctx.fail(ErrorCode::kUnsupported, "cuDNN found no algorithm for these shapes");
  KILN_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  *workspace_bytes = state->workspace;
  return state;
}

void launch_conv(LaunchContext& ctx) {
  auto& state = static_cast<ConvState&>(*ctx.state);
  KILN_CUDNN_CHECK(cudnnSetStream(ctx.libs->cudnn, ctx.stream));
  const float one = 1.0f, zero = 0.0f;
  if (state.activation) {
    const void* bias = ctx.has_input(2) ? ctx.inputs[2].data : state.zero_bias.get();
    const bool residual = ctx.has_input(3);
    void* y = ctx.outputs[0].data;
    KILN_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
        ctx.libs->cudnn, &one, state.x, ctx.inputs[0].data, state.filter, ctx.inputs[1].data, state.conv, state.algo,
        ctx.workspace, state.workspace, residual ? &one : &zero, state.y, residual ? ctx.inputs[3].data : y, state.bias,
        bias, state.activation, state.y, y));
    return;
  }
  const bool residual = ctx.has_input(3);
  if (residual) {
    KILN_CUDA_CHECK(cudaMemcpyAsync(ctx.outputs[0].data, ctx.inputs[3].data, ctx.outputs[0].nbytes(),
                                    cudaMemcpyDeviceToDevice, ctx.stream));
  }
  KILN_CUDNN_CHECK(cudnnConvolutionForward(ctx.libs->cudnn, &one, state.x, ctx.inputs[0].data, state.filter,
                                           ctx.inputs[1].data, state.conv, state.algo, ctx.workspace, state.workspace,
                                           residual ? &one : &zero, state.y, ctx.outputs[0].data));
  if (ctx.has_input(2)) {
    KILN_CUDNN_CHECK(cudnnAddTensor(ctx.libs->cudnn, &one, state.bias, ctx.inputs[2].data, &one, state.y,
                                    ctx.outputs[0].data));
  }
}

}  // namespace

void register_conv_kernels(CudaKernelRegistry& registry) { registry.add("Conv", CudaKernel{prepare_conv, launch_conv}); }

}  // namespace kiln::cuda
#pragma GCC diagnostic pop
