// kiln::DeformConv: ONNX DeformConv (opset 19) / torchvision deform_conv2d, 2-D (README.md here).
#pragma once

#include <vector>

#include "common/plugin_support.hpp"
#include "deform_conv/deform_conv_math.hpp"

namespace kiln::plugins_lib {

class DeformConv : public PluginOp {
 public:
  // Fields (ONNX names): dilations [2] (default 1, 1), group (>= 1, default 1), kernel_shape [2]
  // (default: W's), offset_group (>= 1, default 1), pads [4] (h_begin, w_begin, h_end, w_end;
  // default 0), strides [2] (default 1, 1).
  DeformConv(const kiln_plugin_field* fields, int32_t num_fields);
  void supports(const kiln_dtype* dtypes, int32_t num_inputs) const;
  // Inputs X [N, C, H, W], W [oC, C/group, kH, kW], offset [N, offset_group*kH*kW*2, oH, oW]
  // ((dy, dx) pairs per kernel position), optional B [oC], optional mask
  // [N, offset_group*kH*kW, oH, oW]. Output [N, oC, oH, oW] in X's dtype.
  void infer(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
             kiln_plugin_output_desc* outputs, int32_t num_outputs) const;
  // The CPU kernel's columns: C*kH*kW x oH*oW floats.
  int64_t workspace(kiln_plugin_backend backend, const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                    const kiln_plugin_tensor_desc* outputs, int32_t num_outputs) const;
  void execute_cpu(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                   kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace) const;
  // Enqueues one thread per output element (CUDA builds); without CUDA: KILN_ERROR_UNSUPPORTED.
  void execute_cuda(const kiln_plugin_tensor* inputs, int32_t num_inputs,
                    kiln_plugin_tensor* outputs, int32_t num_outputs, void* workspace,
                    void* stream) const;

 private:
  // Geometry from run-time (or build-time, -1 where dynamic) shapes; refuses inconsistent ones.
  DeformConvParams params_for(const kiln_plugin_tensor_desc* inputs, int32_t num_inputs) const;

  std::vector<int64_t> dilations_, kernel_shape_, pads_, strides_;
  int64_t group_ = 1, offset_group_ = 1;
};

extern const kiln_plugin_creator kDeformConvCreator;

// CUDA builds (deform_conv_cuda.cu): enqueues the kernel on `stream`; pointers are device ones,
// bias and mask may be null.
void launch_deform_conv_cuda(const DeformConvParams& p, const void* x, const void* w,
                             const void* offset, const void* bias, const void* mask, void* y,
                             bool float16, void* stream);

}  // namespace kiln::plugins_lib
