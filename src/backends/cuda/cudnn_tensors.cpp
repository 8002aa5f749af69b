#include "backends/cuda/cudnn_tensors.hpp"

#include <climits>

#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/library_handles.hpp"

namespace kiln::cuda {

cudnnDataType_t cudnn_data_type(const LaunchContext& ctx, DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return CUDNN_DATA_FLOAT;
    case DType::kFloat16:
      return CUDNN_DATA_HALF;
    case DType::kBFloat16:
      return CUDNN_DATA_BFLOAT16;
    default:
      ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(dtype),
               " is not supported by cuDNN here; supported: float32, float16, bfloat16");
  }
}

std::vector<int> cudnn_dims(const LaunchContext& ctx, const Shape& shape) {
  if (shape_numel(shape) > INT_MAX) {
    ctx.fail(ErrorCode::kUnsupported, "tensor ", shape_to_string(shape),
             " has 2^31 or more elements, beyond cuDNN's 32-bit descriptors");
  }
  std::vector<int> dims(shape.begin(), shape.end());
  if (dims.size() == 3) dims.insert(dims.begin() + 2, 1);
  return dims;
}

cudnnTensorDescriptor_t dense_tensor_desc(cudnnDataType_t type, const std::vector<int>& dims) {
  std::vector<int> strides(dims.size(), 1);
  for (size_t i = dims.size() - 1; i-- > 0;) strides[i] = strides[i + 1] * dims[i + 1];
  cudnnTensorDescriptor_t desc = nullptr;
  KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc));
  KILN_CUDNN_CHECK(cudnnSetTensorNdDescriptor(desc, type, static_cast<int>(dims.size()),
                                              dims.data(), strides.data()));
  return desc;
}

}  // namespace kiln::cuda
