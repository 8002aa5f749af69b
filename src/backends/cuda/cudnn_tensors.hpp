// cuDNN tensor descriptors for the convolution families (Conv, ConvTranspose): dtype mapping,
// dims in cuDNN's form and dense NCHW-order descriptors.
#pragma once

#include <cudnn.h>

#include <vector>

#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda {

// float32, float16 or bfloat16 as cuDNN's type; kUnsupported naming the node otherwise.
cudnnDataType_t cudnn_data_type(const LaunchContext& ctx, DType dtype);

// `shape` as cuDNN dims: cuDNN wants at least 4-D tensors, so a rank-3 shape (1-D spatial) gets a
// height of 1. cuDNN's descriptors hold 32-bit dims and strides: kUnsupported naming the node for
// a tensor of 2^31 or more elements.
std::vector<int> cudnn_dims(const LaunchContext& ctx, const Shape& shape);

// A new descriptor of a dense (row-major) tensor of `dims`; the caller destroys it.
cudnnTensorDescriptor_t dense_tensor_desc(cudnnDataType_t type, const std::vector<int>& dims);

}  // namespace kiln::cuda
