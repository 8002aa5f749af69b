// Launching kiln's own depthwise convolution (depthwise_conv_plan.hpp says which convolutions it
// runs and how; conv_kernels.cpp offers it as a Conv tactic).
#pragma once

#include <cuda_runtime_api.h>

#include "backends/cuda/depthwise_conv_plan.hpp"

namespace kiln::cuda {

// Device pointers of one run, in the problem's layout and dtype. bias and residual are null when
// the layer has none (they must be non-null exactly when plan.problem says so).
struct DepthwiseConvTensors {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  void* y = nullptr;
};

// Enqueues y = relu?(conv(x) + bias + residual) on `stream`: no allocation, no synchronisation
// (capture-safe). 16-byte vector accesses are used where these pointers allow, so the same plan
// serves any buffers. Returns the launch's cudaGetLastError().
cudaError_t launch_depthwise_conv(const DepthwiseConvPlan& plan, const DepthwiseConvTensors& tensors,
                                  cudaStream_t stream);

}  // namespace kiln::cuda
