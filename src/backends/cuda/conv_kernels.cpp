// Conv on CUDA through cuDNN, with bias, and with the builder's fused activation and residual add
// (attribute kiln_activation = "Relu", optional input 3 added before the activation). With
// kiln_layout = "NHWC" (set by the builder on fp16/bf16 regions) X, Y and the residual are
// [N, H, W, C] and W is [M, kH, kW, C/group]: cuDNN's tensor-core kernels then read and write the
// tensors directly, with no NCHW <-> NHWC transposes of their own.
//
// Depthwise 2-D convolutions have one more tactic, kiln's own kernel (depthwise_conv_kernels.hpp:
// cuDNN's depthwise kernels move 30-130 GB/s on H100), timed against cuDNN's algorithms during a
// build and chosen outside one; KILN_DEPTHWISE=off|force|tiled (depthwise_conv_plan.hpp) overrides
// that. NHWC depthwise convolutions time both of the own kernels (rows and tiled).
//
// This uses cuDNN's convolution API, which cuDNN 9 marks deprecated in favour of its graph API but
// still ships; deprecation warnings are silenced for this file only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "backends/cuda/conv_tactic.hpp"
#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/cudnn_tensors.hpp"
#include "backends/cuda/depthwise_conv_kernels.hpp"
#include "backends/cuda/device_buffer.hpp"
#include "backends/cuda/library_handles.hpp"
#include "backends/cuda/tactics.hpp"
#include "ops/nn_layout.hpp"

namespace kiln::cuda {
namespace {

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
  std::optional<DepthwiseConvPlan> depthwise;  // set when kiln's depthwise kernel runs the layer
};

// A 4-D tensor stored NHWC, `nchw` giving its dims in N, C, H, W order.
cudnnTensorDescriptor_t nhwc_tensor_desc(cudnnDataType_t type, const Shape& nchw) {
  cudnnTensorDescriptor_t desc = nullptr;
  KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
  KILN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc, CUDNN_TENSOR_NHWC, type, static_cast<int>(nchw[0]),
                                              static_cast<int>(nchw[1]), static_cast<int>(nchw[2]),
                                              static_cast<int>(nchw[3])));
  return desc;
}

// The whole layer: the fused conv + bias + residual + activation call, or the plain convolution
// (blending a residual, then adding the bias). `bias` is ignored without a bias descriptor.
cudnnStatus_t run_convolution(cudnnHandle_t handle, cudaStream_t stream, const ConvState& state, const void* x,
                              const void* w, const void* bias, const void* residual, void* y, size_t y_bytes,
                              void* workspace) {
  const float one = 1.0f, zero = 0.0f;
  cudnnStatus_t status = cudnnSetStream(handle, stream);
  if (status != CUDNN_STATUS_SUCCESS) return status;
  if (state.activation) {
    return cudnnConvolutionBiasActivationForward(handle, &one, state.x, x, state.filter, w, state.conv, state.algo,
                                                 workspace, state.workspace, residual ? &one : &zero, state.y,
                                                 residual ? residual : y, state.bias, bias, state.activation, state.y,
                                                 y);
  }
  if (residual && cudaMemcpyAsync(y, residual, y_bytes, cudaMemcpyDeviceToDevice, stream) != cudaSuccess) {
    return CUDNN_STATUS_EXECUTION_FAILED;
  }
  status = cudnnConvolutionForward(handle, &one, state.x, x, state.filter, w, state.conv, state.algo, workspace,
                                   state.workspace, residual ? &one : &zero, state.y, y);
  if (status != CUDNN_STATUS_SUCCESS || state.bias == nullptr || bias == nullptr) return status;
  return cudnnAddTensor(handle, &one, state.bias, bias, &one, state.y, y);
}

DepthwiseMode depthwise_mode(const LaunchContext& ctx) {
  try {
    return parse_depthwise_mode(std::getenv("KILN_DEPTHWISE"));
  } catch (const Error& error) {
    ctx.fail(error.code(), error.what());
  }
}

// The own depthwise kernel's launch for this layer (dims of x, w, y in NCHW order), or nullopt
// when it does not run it (with the reason under KILN_LOG_TACTICS, for grouped convolutions).
std::optional<DepthwiseConvPlan> plan_own_depthwise(const LaunchContext& ctx, bool nhwc, const TensorView& x,
                                                    const TensorView& w, const TensorView& y,
                                                    const std::vector<int64_t>& pads,
                                                    const std::vector<int64_t>& strides,
                                                    const std::vector<int64_t>& dilations, int group) {
  if (x.shape.size() != 4 || w.shape.size() != 4 || y.shape.size() != 4) return std::nullopt;  // 2-D only
  DepthwiseConvProblem problem;
  problem.dtype = y.dtype;
  problem.nhwc = nhwc;
  problem.batch = x.shape[0];
  problem.channels = x.shape[1];
  problem.in_h = x.shape[2];
  problem.in_w = x.shape[3];
  problem.out_channels = w.shape[0];
  problem.weight_channels = w.shape[1];
  problem.kernel_h = w.shape[2];
  problem.kernel_w = w.shape[3];
  problem.out_h = y.shape[2];
  problem.out_w = y.shape[3];
  problem.group = group;
  problem.stride_h = strides[0];
  problem.stride_w = strides[1];
  problem.dilation_h = dilations[0];
  problem.dilation_w = dilations[1];
  problem.pad_top = pads[0];
  problem.pad_left = pads[1];
  problem.bias = ctx.has_input(2);
  problem.residual = ctx.has_input(3);
  const std::string activation = ctx.attrs.get_string_or("kiln_activation", "");
  problem.relu = activation == "Relu";
  std::string unsupported = depthwise_conv_unsupported(problem);
  if (unsupported.empty() && !activation.empty() && !problem.relu) unsupported = "activation " + activation;
  if (unsupported.empty() && problem.residual && ctx.inputs[3].shape != ctx.outputs[0].shape) {
    unsupported = "residual of shape " + shape_to_string(ctx.inputs[3].shape);
  }
  for (size_t i = 1; unsupported.empty() && i < ctx.inputs.size(); ++i) {
    if (ctx.has_input(i) && ctx.inputs[i].dtype != problem.dtype) unsupported = "mixed dtypes";
  }
  if (!unsupported.empty()) {
    if (tactic_logging() && group > 1) {
      std::fprintf(stderr, "kiln conv: layer '%s' cannot run kiln_depthwise: %s\n", std::string(ctx.node_name).c_str(),
                   unsupported.c_str());
    }
    return std::nullopt;
  }
  return plan_depthwise_conv(problem, ctx.device != nullptr ? ctx.device->multiprocessors : 0);
}

std::unique_ptr<LayerState> prepare_conv(LaunchContext& ctx, size_t* workspace_bytes) {
  // The CPU target fuses other activations too (passes/cpu_activation_fusion.hpp); cuDNN's fused
  // call applies ReLU alone.
  if (const std::string activation = ctx.attrs.get_string_or("kiln_activation", "");
      !activation.empty() && activation != "Relu") {
    ctx.fail(ErrorCode::kUnsupported, "fused activation '", activation, "' (the cuda backend fuses Relu only)");
  }
  const bool nhwc = ops::nn::is_nhwc_layout(ctx.attrs);
  if (nhwc && (ctx.inputs[0].shape.size() != 4 || ctx.inputs[1].shape.size() != 4 ||
               ctx.outputs[0].shape.size() != 4)) {
    ctx.fail(ErrorCode::kInvalidArgument, "kiln_layout \"NHWC\" needs 4-D X, W and Y, got X ",
             shape_to_string(ctx.inputs[0].shape), " and W ", shape_to_string(ctx.inputs[1].shape));
  }
  // Dims in NCHW (and KCRS) order whatever the layout; the data stay where they are.
  const TensorView x{ctx.inputs[0].dtype, nhwc ? ops::nn::nhwc_to_nchw(ctx.inputs[0].shape) : ctx.inputs[0].shape,
                     ctx.inputs[0].data};
  const TensorView w{ctx.inputs[1].dtype, nhwc ? ops::nn::nhwc_to_nchw(ctx.inputs[1].shape) : ctx.inputs[1].shape,
                     ctx.inputs[1].data};
  const TensorView y{ctx.outputs[0].dtype,
                     nhwc ? ops::nn::nhwc_to_nchw(ctx.outputs[0].shape) : ctx.outputs[0].shape, ctx.outputs[0].data};
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
  const DType dtype = y.dtype;
  const bool has_bias = ctx.has_input(2);
  // cuDNN's fused conv+bias+residual+activation call runs with ReLU; a residual without an
  // activation is blended by the plain convolution instead (y = residual, then y = conv + 1 * y).
  const bool fused = ctx.attrs.get_string_or("kiln_activation", "") != "";
  // float32 stays exact float32 (no TF32) unless the builder allowed TF32.
  const cudnnMathType_t math = dtype != DType::kFloat32             ? CUDNN_TENSOR_OP_MATH
                               : ctx.attrs.get_int_or("kiln_allow_tf32", 0) ? CUDNN_DEFAULT_MATH
                                                                            : CUDNN_FMA_MATH;
  std::ostringstream key_text;
  key_text << "conv " << dtype_name(dtype) << " nhwc" << nhwc << " x" << shape_to_string(x.shape) << " w"
           << shape_to_string(w.shape) << " p" << shape_to_string(pads) << " s" << shape_to_string(strides) << " d"
           << shape_to_string(dilations) << " g" << group << " math" << static_cast<int>(math) << " fused" << fused
           << " res" << ctx.has_input(3) << " bias" << has_bias << " " << device_tag(ctx);
  const std::string key = key_text.str();

  // kiln's depthwise kernel: forced, the only way to run asymmetric pads, recorded, the choice
  // outside a build, or timed below against cuDNN's algorithms.
  const DepthwiseMode mode = depthwise_mode(ctx);
  std::optional<DepthwiseConvPlan> depthwise;
  if (mode != DepthwiseMode::kOff) depthwise = plan_own_depthwise(ctx, nhwc, x, w, y, pads, strides, dilations, group);
  // The tiled NHWC kernel where asked for and the plan has one; the rows kernel otherwise.
  const auto choose_depthwise = [&](bool tiled = false) {
    auto chosen = std::make_unique<ConvState>();
    chosen->depthwise = depthwise;
    chosen->depthwise->tiled = tiled && depthwise->nhwc_tiled.threads > 0;
    *workspace_bytes = 0;
    report_tactic(ctx, key, encode_conv_tactic(ConvTactic::kiln_depthwise(chosen->depthwise->tiled)));
    return chosen;
  };
  bool symmetric = true;
  for (size_t d = 0; d < spatial; ++d) symmetric = symmetric && pads[d] == pads[d + spatial];
  if (depthwise && mode == DepthwiseMode::kForceTiled) return choose_depthwise(true);
  if (depthwise && (mode == DepthwiseMode::kForce || !symmetric)) return choose_depthwise();
  for (size_t d = 0; d < spatial; ++d) {
    if (pads[d] != pads[d + spatial]) {
      ctx.fail(ErrorCode::kUnsupported, "asymmetric padding ", pads[d], "/", pads[d + spatial], " on spatial axis ", d);
    }
  }
  const cudnnDataType_t type = cudnn_data_type(ctx, dtype);
  auto state = std::make_unique<ConvState>();
  KILN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&state->filter));
  if (nhwc) {
    state->x = nhwc_tensor_desc(type, x.shape);
    state->y = nhwc_tensor_desc(type, y.shape);
    KILN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(state->filter, type, CUDNN_TENSOR_NHWC, static_cast<int>(w.shape[0]),
                                                static_cast<int>(w.shape[1]), static_cast<int>(w.shape[2]),
                                                static_cast<int>(w.shape[3])));
  } else {
    state->x = dense_tensor_desc(type, cudnn_dims(ctx, x.shape));
    state->y = dense_tensor_desc(type, cudnn_dims(ctx, y.shape));
    const std::vector<int> filter_dims = cudnn_dims(ctx, w.shape);
    KILN_CUDNN_CHECK(cudnnSetFilterNdDescriptor(state->filter, type, CUDNN_TENSOR_NCHW,
                                                static_cast<int>(filter_dims.size()), filter_dims.data()));
  }
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
  KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(state->conv, math));

  if (has_bias || fused) {
    // [1, C, 1, 1]: the same bytes in either layout.
    std::vector<int> bias_dims(cudnn_dims(ctx, y.shape).size(), 1);
    bias_dims[1] = static_cast<int>(y.shape[1]);
    state->bias = dense_tensor_desc(type, bias_dims);
  }
  if (fused) {
    const std::string activation = ctx.attrs.get_string_or("kiln_activation", "");
    if (!activation.empty() && activation != "Relu") ctx.fail(ErrorCode::kUnsupported, "fused activation ", activation);
    KILN_CUDNN_CHECK(cudnnCreateActivationDescriptor(&state->activation));
    KILN_CUDNN_CHECK(cudnnSetActivationDescriptor(state->activation,
                                                  activation == "Relu" ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
                                                  CUDNN_PROPAGATE_NAN, 0.0));
    if (!has_bias) {
      state->zero_bias = DeviceBuffer(static_cast<size_t>(y.shape[1]) * dtype_size(dtype));
      KILN_CUDA_CHECK(cudaMemset(state->zero_bias.get(), 0, state->zero_bias.size()));
    }
  }

  KILN_CUDNN_CHECK(cudnnSetStream(ctx.libs->cudnn, ctx.stream));
  const size_t limit = std::min<size_t>(ctx.workspace_size, size_t{256} << 20);
  // A tactic recorded by the builder (or in its timing cache) for exactly this problem. One this
  // run cannot use (kiln_depthwise under KILN_DEPTHWISE=off) is chosen again.
  if (const std::optional<std::string> known = known_tactic(ctx, key)) {
    const std::optional<ConvTactic> tactic = decode_conv_tactic(*known);
    if (tactic && tactic->kind == ConvTactic::Kind::kKilnDepthwise && depthwise) return choose_depthwise();
    if (tactic && tactic->kind == ConvTactic::Kind::kKilnDepthwiseTiled && depthwise) return choose_depthwise(true);
    size_t bytes = 0;
    if (tactic && tactic->kind == ConvTactic::Kind::kCudnn &&
        cudnnSetConvolutionMathType(state->conv, static_cast<cudnnMathType_t>(tactic->math)) == CUDNN_STATUS_SUCCESS &&
        cudnnGetConvolutionForwardWorkspaceSize(ctx.libs->cudnn, state->x, state->filter, state->conv, state->y,
                                                static_cast<cudnnConvolutionFwdAlgo_t>(tactic->algo),
                                                &bytes) == CUDNN_STATUS_SUCCESS &&
        bytes <= limit) {
      state->algo = static_cast<cudnnConvolutionFwdAlgo_t>(tactic->algo);
      state->workspace = bytes;
      *workspace_bytes = bytes;
      report_tactic(ctx, key, *known);
      return state;
    }
    KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(state->conv, math));
  }
  // Outside a build nothing is timed for depthwise convolutions: the own kernel moves several
  // times the bytes per second of cuDNN's depthwise kernels.
  if (depthwise && !tuning_active()) return choose_depthwise();
  // Grouped convolutions time only the direct and implicit-GEMM algorithms: cuDNN runs its FFT
  // and Winograd ones group by group (MobileNetV3's 72-group 3x3 fp32 convolution on H100: 0.3 to
  // 3 ms against 0.007 ms), and for the next 72-group convolution one of them had not finished
  // after 100 s (cuDNN 9.19): the build hung.
  const auto direct_family = [](cudnnConvolutionFwdAlgo_t algo) {
    return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
  };
  // cuDNN's candidates (its heuristic), each timed here running exactly what launch will run (the
  // fused call included) over several iterations; cuDNN's own Find timed single calls and picked
  // differently from run to run.
  constexpr int kRequested = 10;
  cudnnConvolutionFwdAlgoPerf_t candidates[kRequested];
  int returned = 0;
  KILN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(ctx.libs->cudnn, state->x, state->filter, state->conv,
                                                          state->y, kRequested, &returned, candidates));
  DeviceBuffer scratch(limit);
  DeviceBuffer output_scratch(y.nbytes());  // don't clobber live tensors while timing
  const void* bias = has_bias ? ctx.inputs[2].data : state->zero_bias.get();
  const void* residual = ctx.has_input(3) ? ctx.inputs[3].data : nullptr;
  int best = -1;
  float best_ms = std::numeric_limits<float>::infinity();
  for (int i = 0; i < returned; ++i) {
    const cudnnConvolutionFwdAlgoPerf_t& c = candidates[i];
    if (c.status != CUDNN_STATUS_SUCCESS || c.memory > limit) continue;
    if (group > 1 && !direct_family(c.algo)) continue;
    // Exact float32 takes no algorithm that converts to TF32 or fp16 internally.
    if (math == CUDNN_FMA_MATH && c.mathType != CUDNN_FMA_MATH && c.mathType != CUDNN_DEFAULT_MATH) continue;
    if (cudnnSetConvolutionMathType(state->conv, c.mathType) != CUDNN_STATUS_SUCCESS) continue;
    state->algo = c.algo;
    state->workspace = c.memory;
    const float ms = time_on_stream(ctx.stream, 10, [&] {
      return run_convolution(ctx.libs->cudnn, ctx.stream, *state, x.data, w.data, bias, residual,
                             output_scratch.get(), y.nbytes(), scratch.get()) == CUDNN_STATUS_SUCCESS;
    });
    if (tactic_logging()) {
      std::fprintf(stderr, "kiln conv timing: layer '%s' algo %d math %d %.4f ms %zu bytes\n",
                   std::string(ctx.node_name).c_str(), static_cast<int>(c.algo), static_cast<int>(c.mathType), ms,
                   c.memory);
    }
    if (ms < best_ms) {
      best_ms = ms;
      best = i;
    }
  }
  if (depthwise) {
    const DepthwiseConvTensors tensors{x.data, w.data, has_bias ? ctx.inputs[2].data : nullptr, residual,
                                       output_scratch.get()};
    float own_ms[2] = {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity()};
    for (const bool tiled : {false, true}) {
      if (tiled && depthwise->nhwc_tiled.threads == 0) continue;
      DepthwiseConvPlan plan = *depthwise;
      plan.tiled = tiled;
      own_ms[tiled] = time_on_stream(ctx.stream, 10, [&] {
        return launch_depthwise_conv(plan, tensors, ctx.stream) == cudaSuccess;
      });
      if (tactic_logging()) {
        std::fprintf(stderr, "kiln conv timing: layer '%s' %s %.4f ms\n", std::string(ctx.node_name).c_str(),
                     encode_conv_tactic(ConvTactic::kiln_depthwise(tiled)).c_str(), own_ms[tiled]);
      }
    }
    const bool tiled = own_ms[1] < own_ms[0];
    if (std::isfinite(own_ms[tiled]) && own_ms[tiled] <= best_ms) return choose_depthwise(tiled);
  }
  if (best < 0) ctx.fail(ErrorCode::kUnsupported, "cuDNN has no algorithm that runs these shapes");
  const cudnnConvolutionFwdAlgoPerf_t& chosen = candidates[best];
  KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(state->conv, chosen.mathType));
  state->algo = chosen.algo;
  state->workspace = chosen.memory;
  *workspace_bytes = chosen.memory;
  const ConvTactic tactic = ConvTactic::cudnn(static_cast<int>(chosen.algo), static_cast<int>(chosen.mathType));
  report_tactic(ctx, key, encode_conv_tactic(tactic));
  return state;
}

void launch_conv(LaunchContext& ctx) {
  const auto& state = static_cast<const ConvState&>(*ctx.state);
  if (state.depthwise) {
    const DepthwiseConvTensors tensors{ctx.inputs[0].data, ctx.inputs[1].data,
                                       ctx.has_input(2) ? ctx.inputs[2].data : nullptr,
                                       ctx.has_input(3) ? ctx.inputs[3].data : nullptr, ctx.outputs[0].data};
    const cudaError_t status = launch_depthwise_conv(*state.depthwise, tensors, ctx.stream);
    if (status != cudaSuccess) {
      ctx.fail(ErrorCode::kDeviceError, "depthwise convolution kernel launch failed: ", cudaGetErrorString(status));
    }
    return;
  }
  const void* bias = ctx.has_input(2) ? ctx.inputs[2].data : state.zero_bias.get();
  const void* residual = ctx.has_input(3) ? ctx.inputs[3].data : nullptr;
  KILN_CUDNN_CHECK(run_convolution(ctx.libs->cudnn, ctx.stream, state, ctx.inputs[0].data, ctx.inputs[1].data, bias,
                                   residual, ctx.outputs[0].data, ctx.outputs[0].nbytes(), ctx.workspace));
}

}  // namespace

void register_conv_kernels(CudaKernelRegistry& registry) { registry.add("Conv", CudaKernel{prepare_conv, launch_conv}); }

}  // namespace kiln::cuda
#pragma GCC diagnostic pop
