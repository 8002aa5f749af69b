// The CUDA ConvTranspose layer's own kernel (conv_transpose_col2im.cu): the output window cut
// out of the full transposed convolution, plus the bias.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kiln/types.hpp"

namespace kiln::cuda {

// Spatial extents padded to three axes (leading 1s for 1-D and 2-D).
struct ConvTransposeCrop {
  int64_t planes = 0;    // N * M
  int64_t channels = 1;  // M: the bias index is plane % channels
  int64_t out[3] = {1, 1, 1};
  int64_t full[3] = {1, 1, 1};
  int64_t pad_begin[3] = {0, 0, 0};
};

// y[plane, o] = full[plane, o + pad_begin] (0 past full's extent) + bias[plane % channels]
// (bias may be null). float32, float16 or bfloat16 (else cudaErrorInvalidValue); does not
// synchronise. Returns the launch status.
cudaError_t launch_conv_transpose_crop(DType dtype, const void* full, const void* bias, void* y,
                                       const ConvTransposeCrop& crop, cudaStream_t stream);

}  // namespace kiln::cuda
