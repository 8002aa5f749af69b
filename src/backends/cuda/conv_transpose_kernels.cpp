// ConvTranspose on CUDA through cuDNN's backward-data convolution: ConvTranspose(X, W) is the
// gradient of a convolution of its output with W [C, M/group, k...] (whose output is X), so cuDNN's
// dgrad kernels, tensor cores included, run it with W as it is (W may be a runtime tensor).
//
// cuDNN's convolution descriptor has symmetric pads and its dx extent must give back X's extent
// through the forward formula, i.e. out = full - 2 * pad + r with 0 <= r < stride. Layers outside
// that (asymmetric pads, from SAME_* or explicit pads; output_padding >= stride, allowed when
// dilation is larger) compute the full, unpadded result into a scratch buffer instead and cut the
// output window out of it, adding the bias (conv_transpose_col2im.cu).
//
// fp32 stays exact fp32 (no TF32) unless the builder allowed TF32; fp16 and bf16 accumulate in
// fp32. This uses cuDNN's convolution API, which cuDNN 9 marks deprecated in favour of its graph
// API but still ships; deprecation warnings are silenced for this file only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "backends/cuda/conv_transpose_crop.hpp"
#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/cudnn_tensors.hpp"
#include "backends/cuda/device_buffer.hpp"
#include "backends/cuda/library_handles.hpp"
#include "backends/cuda/tactics.hpp"
#include "ops/conv_transpose_geometry.hpp"

namespace kiln::cuda {
namespace {

class ConvTransposeState : public LayerState {
 public:
  ~ConvTransposeState() override {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (filter) cudnnDestroyFilterDescriptor(filter);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
  cudnnTensorDescriptor_t x = nullptr;     // cuDNN's dy
  cudnnTensorDescriptor_t y = nullptr;     // cuDNN's dx: Y, or the full result when cropping
  cudnnTensorDescriptor_t bias = nullptr;  // direct path with a bias
  cudnnFilterDescriptor_t filter = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionBwdDataAlgo_t algo{};
  size_t workspace = 0;
  DType dtype = DType::kFloat32;
  bool crop = false;  // dgrad into `full`, then the crop kernel
  DeviceBuffer full;  // the unpadded result (crop only)
  ConvTransposeCrop crop_shape;
  bool empty = false;  // Y has no elements: nothing to run
};

// The whole layer: dgrad (into Y, or into the full buffer), then the bias or the crop.
cudnnStatus_t run_layer(cudnnHandle_t handle, cudaStream_t stream, const ConvTransposeState& state,
                        const void* x, const void* w, const void* bias, void* y, void* workspace) {
  const float one = 1.0f, zero = 0.0f;
  cudnnStatus_t status = cudnnSetStream(handle, stream);
  if (status != CUDNN_STATUS_SUCCESS) return status;
  void* target = state.crop ? state.full.get() : y;
  status =
      cudnnConvolutionBackwardData(handle, &one, state.filter, w, state.x, x, state.conv,
                                   state.algo, workspace, state.workspace, &zero, state.y, target);
  if (status != CUDNN_STATUS_SUCCESS) return status;
  if (state.crop) {
    return launch_conv_transpose_crop(state.dtype, state.full.get(), bias, y, state.crop_shape,
                                      stream) == cudaSuccess
               ? CUDNN_STATUS_SUCCESS
               : CUDNN_STATUS_EXECUTION_FAILED;
  }
  if (bias == nullptr) return CUDNN_STATUS_SUCCESS;
  return cudnnAddTensor(handle, &one, state.bias, bias, &one, state.y, y);
}

// The shapes, geometry and choices one prepare works with.
struct Problem {
  const TensorView& x;
  const TensorView& w;
  const TensorView& y;
  const ops::nn::ConvTransposeGeometry& g;
  std::vector<int64_t> full;  // full (unpadded) extent per spatial axis
  int64_t group = 1;
  cudnnDataType_t type{};
  cudnnMathType_t math{};
};

// Descriptors for cuDNN's dgrad writing Y itself (`crop` false) or the full result.
std::unique_ptr<ConvTransposeState> build_state(const LaunchContext& ctx, const Problem& p,
                                                bool crop) {
  const size_t spatial = p.full.size();
  auto state = std::make_unique<ConvTransposeState>();
  state->dtype = p.y.dtype;
  state->crop = crop;
  Shape dx_shape = p.y.shape;
  if (crop) {
    for (size_t d = 0; d < spatial; ++d) dx_shape[2 + d] = p.full[d];
    state->crop_shape.planes = p.y.shape[0] * p.y.shape[1];
    state->crop_shape.channels = p.y.shape[1];
    const size_t offset = 3 - spatial;
    for (size_t d = 0; d < spatial; ++d) {
      state->crop_shape.out[offset + d] = p.y.shape[2 + d];
      state->crop_shape.full[offset + d] = p.full[d];
      state->crop_shape.pad_begin[offset + d] = p.g.pad_begin[d];
    }
    state->full = DeviceBuffer(static_cast<size_t>(shape_numel(dx_shape)) * dtype_size(p.y.dtype));
  }
  state->x = dense_tensor_desc(p.type, cudnn_dims(ctx, p.x.shape));
  state->y = dense_tensor_desc(p.type, cudnn_dims(ctx, dx_shape));
  const std::vector<int> filter_dims = cudnn_dims(ctx, p.w.shape);
  KILN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&state->filter));
  KILN_CUDNN_CHECK(cudnnSetFilterNdDescriptor(state->filter, p.type, CUDNN_TENSOR_NCHW,
                                              static_cast<int>(filter_dims.size()),
                                              filter_dims.data()));
  std::vector<int> conv_pads, conv_strides, conv_dilations;
  if (spatial == 1) {
    conv_pads.push_back(0);
    conv_strides.push_back(1);
    conv_dilations.push_back(1);
  }
  for (size_t d = 0; d < spatial; ++d) {
    const int64_t pad = crop ? 0 : p.g.pad_begin[d];
    if (pad > INT_MAX || p.g.strides[d] > INT_MAX || p.g.dilations[d] > INT_MAX) {
      ctx.fail(ErrorCode::kUnsupported, "pads, strides or dilations beyond cuDNN's 32-bit range");
    }
    conv_pads.push_back(static_cast<int>(pad));
    conv_strides.push_back(static_cast<int>(p.g.strides[d]));
    conv_dilations.push_back(static_cast<int>(p.g.dilations[d]));
  }
  KILN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&state->conv));
  KILN_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(
      state->conv, static_cast<int>(conv_pads.size()), conv_pads.data(), conv_strides.data(),
      conv_dilations.data(), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  KILN_CUDNN_CHECK(cudnnSetConvolutionGroupCount(state->conv, static_cast<int>(p.group)));
  KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(state->conv, p.math));
  if (ctx.has_input(2) && !crop) {
    // [1, M, 1, ...]: broadcast over Y by cudnnAddTensor.
    std::vector<int> bias_dims(cudnn_dims(ctx, p.y.shape).size(), 1);
    bias_dims[1] = static_cast<int>(p.y.shape[1]);
    state->bias = dense_tensor_desc(p.type, bias_dims);
  }
  return state;
}

// Picks the algorithm (a recorded tactic, else the fastest of cuDNN's candidates timed running
// the whole layer). False when cuDNN offers none for these descriptors.
bool choose_algorithm(LaunchContext& ctx, const Problem& p, ConvTransposeState& state,
                      size_t* workspace_bytes) {
  const bool has_bias = ctx.has_input(2);
  KILN_CUDNN_CHECK(cudnnSetStream(ctx.libs->cudnn, ctx.stream));
  const size_t limit = std::min<size_t>(ctx.workspace_size, size_t{256} << 20);
  std::ostringstream key_text;
  key_text << "conv_transpose " << dtype_name(p.y.dtype) << " x" << shape_to_string(p.x.shape)
           << " w" << shape_to_string(p.w.shape) << " y" << shape_to_string(p.y.shape) << " p"
           << shape_to_string(p.g.pad_begin) << shape_to_string(p.g.pad_end) << " s"
           << shape_to_string(p.g.strides) << " d" << shape_to_string(p.g.dilations) << " g"
           << p.group << " math" << static_cast<int>(p.math) << " crop" << state.crop << " bias"
           << has_bias << " " << device_tag(ctx);
  const std::string key = key_text.str();
  if (const std::optional<std::string> known = known_tactic(ctx, key)) {
    int algo = -1, math_type = -1;
    size_t bytes = 0;
    if (std::sscanf(known->c_str(), "cudnn:algo=%d,math=%d", &algo, &math_type) == 2 && algo >= 0 &&
        math_type >= 0 &&
        cudnnSetConvolutionMathType(state.conv, static_cast<cudnnMathType_t>(math_type)) ==
            CUDNN_STATUS_SUCCESS &&
        cudnnGetConvolutionBackwardDataWorkspaceSize(
            ctx.libs->cudnn, state.filter, state.x, state.conv, state.y,
            static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), &bytes) == CUDNN_STATUS_SUCCESS &&
        bytes <= limit) {
      state.algo = static_cast<cudnnConvolutionBwdDataAlgo_t>(algo);
      state.workspace = bytes;
      *workspace_bytes = bytes;
      report_tactic(ctx, key, *known);
      return true;
    }
    KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(state.conv, p.math));
  }
  // Grouped layers time only the GEMM-based algorithms: cuDNN runs FFT and Winograd group by group
  // (see conv_kernels.cpp for what that cost the forward convolution).
  const auto gemm_family = [](cudnnConvolutionBwdDataAlgo_t algo) {
    return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  };
  constexpr int kRequested = 8;
  cudnnConvolutionBwdDataAlgoPerf_t candidates[kRequested];
  int returned = 0;
  if (cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx.libs->cudnn, state.filter, state.x,
                                                  state.conv, state.y, kRequested, &returned,
                                                  candidates) != CUDNN_STATUS_SUCCESS) {
    return false;  // e.g. parameters this cuDNN rejects: the caller may try the crop path
  }
  DeviceBuffer scratch(limit);
  DeviceBuffer output_scratch(p.y.nbytes());  // don't clobber live tensors while timing
  const void* bias = has_bias ? ctx.inputs[2].data : nullptr;
  int best = -1;
  float best_ms = std::numeric_limits<float>::infinity();
  const auto eligible = [&](const cudnnConvolutionBwdDataAlgoPerf_t& c) {
    if (c.status != CUDNN_STATUS_SUCCESS || c.memory > limit) return false;
    if (p.group > 1 && !gemm_family(c.algo)) return false;
    // Exact float32 takes no algorithm that converts to TF32 or fp16 internally.
    return p.math != CUDNN_FMA_MATH || c.mathType == CUDNN_FMA_MATH ||
           c.mathType == CUDNN_DEFAULT_MATH;
  };
  // Deterministic algorithms only while there is one: ALGO_0 sums with atomic adds, so its results
  // would vary from run to run in the last bits.
  bool any_deterministic = false;
  for (int i = 0; i < returned; ++i) {
    any_deterministic = any_deterministic || (eligible(candidates[i]) &&
                                              candidates[i].determinism == CUDNN_DETERMINISTIC);
  }
  for (int i = 0; i < returned; ++i) {
    const cudnnConvolutionBwdDataAlgoPerf_t& c = candidates[i];
    if (!eligible(c) || (any_deterministic && c.determinism != CUDNN_DETERMINISTIC)) continue;
    if (cudnnSetConvolutionMathType(state.conv, c.mathType) != CUDNN_STATUS_SUCCESS) continue;
    state.algo = c.algo;
    state.workspace = c.memory;
    const float ms = time_on_stream(ctx.stream, 10, [&] {
      return run_layer(ctx.libs->cudnn, ctx.stream, state, p.x.data, p.w.data, bias,
                       output_scratch.get(), scratch.get()) == CUDNN_STATUS_SUCCESS;
    });
    if (tactic_logging()) {
      std::fprintf(stderr,
                   "kiln conv_transpose timing: layer '%s' crop %d algo %d math %d %.4f ms %zu "
                   "bytes\n",
                   std::string(ctx.node_name).c_str(), static_cast<int>(state.crop),
                   static_cast<int>(c.algo), static_cast<int>(c.mathType), ms, c.memory);
    }
    if (ms < best_ms) {
      best_ms = ms;
      best = i;
    }
  }
  if (best < 0) return false;
  const cudnnConvolutionBwdDataAlgoPerf_t& chosen = candidates[best];
  KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(state.conv, chosen.mathType));
  state.algo = chosen.algo;
  state.workspace = chosen.memory;
  *workspace_bytes = chosen.memory;
  report_tactic(ctx, key,
                "cudnn:algo=" + std::to_string(static_cast<int>(chosen.algo)) +
                    ",math=" + std::to_string(static_cast<int>(chosen.mathType)));
  return true;
}

std::unique_ptr<LayerState> prepare_conv_transpose(LaunchContext& ctx, size_t* workspace_bytes) {
  const TensorView& x = ctx.inputs[0];
  const TensorView& w = ctx.inputs[1];
  const TensorView& y = ctx.outputs[0];
  const size_t rank = x.shape.size();
  if (rank < 3 || rank > 5 || w.shape.size() != rank || y.shape.size() != rank) {
    ctx.fail(ErrorCode::kUnsupported, "X ", shape_to_string(x.shape), ", W ",
             shape_to_string(w.shape), " and Y ", shape_to_string(y.shape),
             " must have the same rank, 3 to 5 (1 to 3 spatial dims)");
  }
  const size_t spatial = rank - 2;
  const int64_t group = ctx.attrs.get_int_or("group", 1);
  if (group < 1 || group > INT_MAX || x.shape[1] != w.shape[0] || x.shape[1] % group != 0 ||
      y.shape[1] != w.shape[1] * group) {
    ctx.fail(ErrorCode::kInvalidArgument, "channels of X ", shape_to_string(x.shape), ", W ",
             shape_to_string(w.shape), " and Y ", shape_to_string(y.shape), " do not match group ",
             group, " (W is [C, M/group, k...])");
  }
  const DType dtype = y.dtype;
  if (x.dtype != dtype || w.dtype != dtype || (ctx.has_input(2) && ctx.inputs[2].dtype != dtype)) {
    ctx.fail(ErrorCode::kInvalidArgument, "X, W, B and Y must share one dtype");
  }
  const ops::nn::ConvTransposeGeometry g =
      ops::nn::resolve_conv_transpose(ops::nn::NodeLabel{ctx.node_name, ctx.op}, ctx.attrs,
                                      std::vector<int64_t>(x.shape.begin() + 2, x.shape.end()),
                                      std::vector<int64_t>(w.shape.begin() + 2, w.shape.end()));
  for (size_t d = 0; d < spatial; ++d) {
    if (g.output[d] != y.shape[2 + d]) {
      ctx.fail(ErrorCode::kInvalidArgument, "Y ", shape_to_string(y.shape),
               " does not match the resolved output extent ", g.output[d], " on spatial axis ", d);
    }
  }
  if (y.numel() == 0) {
    auto state = std::make_unique<ConvTransposeState>();
    state->empty = true;
    *workspace_bytes = 0;
    return state;
  }
  if (x.numel() == 0) {
    // C = 0 (Y is just the bias): cuDNN's descriptors take no zero dims.
    ctx.fail(ErrorCode::kUnsupported, "X ", shape_to_string(x.shape),
             " has no elements but Y does");
  }

  Problem p{x, w, y, g, {}, group, cudnn_data_type(ctx, dtype), CUDNN_DEFAULT_MATH};
  // float32 stays exact float32 (no TF32) unless the builder allowed TF32.
  p.math = dtype != DType::kFloat32                     ? CUDNN_TENSOR_OP_MATH
           : ctx.attrs.get_int_or("kiln_allow_tf32", 0) ? CUDNN_DEFAULT_MATH
                                                        : CUDNN_FMA_MATH;
  // Full extents, and whether cuDNN can produce Y directly.
  bool direct = true;
  for (size_t d = 0; d < spatial; ++d) {
    p.full.push_back(g.strides[d] * (x.shape[2 + d] - 1) + (w.shape[2 + d] - 1) * g.dilations[d] +
                     1);
    const int64_t excess = y.shape[2 + d] - (p.full[d] - 2 * g.pad_begin[d]);
    direct = direct && g.pad_begin[d] == g.pad_end[d] && excess >= 0 && excess < g.strides[d];
  }
  if (direct) {
    std::unique_ptr<ConvTransposeState> state = build_state(ctx, p, false);
    if (choose_algorithm(ctx, p, *state, workspace_bytes)) return state;
  }
  std::unique_ptr<ConvTransposeState> state = build_state(ctx, p, true);
  if (choose_algorithm(ctx, p, *state, workspace_bytes)) return state;
  ctx.fail(ErrorCode::kUnsupported, "cuDNN has no backward-data algorithm for X ",
           shape_to_string(x.shape), ", W ", shape_to_string(w.shape), ", Y ",
           shape_to_string(y.shape), " (", dtype_name(dtype), ")");
}

void launch_conv_transpose(LaunchContext& ctx) {
  const auto& state = static_cast<const ConvTransposeState&>(*ctx.state);
  if (state.empty) return;
  const void* bias = ctx.has_input(2) ? ctx.inputs[2].data : nullptr;
  const cudnnStatus_t status =
      run_layer(ctx.libs->cudnn, ctx.stream, state, ctx.inputs[0].data, ctx.inputs[1].data, bias,
                ctx.outputs[0].data, ctx.workspace);
  if (status != CUDNN_STATUS_SUCCESS) {
    const cudaError_t launch_error = cudaGetLastError();
    if (launch_error != cudaSuccess) {
      ctx.fail(ErrorCode::kDeviceError,
               "crop kernel launch failed: ", cudaGetErrorString(launch_error));
    }
    ctx.fail(ErrorCode::kDeviceError,
             "cuDNN backward-data convolution failed: ", cudnnGetErrorString(status));
  }
}

}  // namespace

void register_conv_transpose_kernels(CudaKernelRegistry& registry) {
  registry.add("ConvTranspose", CudaKernel{prepare_conv_transpose, launch_conv_transpose});
}

}  // namespace kiln::cuda
#pragma GCC diagnostic pop
