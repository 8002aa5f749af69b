"""Conformance cases (CUDA vs CPU backend) for ConvTranspose: src/backends/cuda/conv_transpose_*.

Each entry: (case_id, onnx_op, inputs, attrs, opset). An input is (name, dtype, shape) for a
random runtime input (floats uniform in [-2, 2]) or (name, dtype, values, "const") for an
initializer. Constant weights are drawn in [-0.5, 0.5] to keep sums of many products well inside
the float32 tolerances.

Paths covered on CUDA: cuDNN's backward-data convolution writing Y directly (symmetric pads,
output_padding < stride, 1-D as 2-D of height 1, groups, depthwise, dilation, stride > kernel,
3-D, runtime weights) and the full-result-then-crop path (asymmetric pads from explicit pads,
SAME_UPPER/SAME_LOWER and output_shape; output_padding >= stride where dilation allows it).

ORT_REJECTS lists the cases ONNX Runtime refuses although ONNX and PyTorch define them
(output_padding >= stride but < dilation): tests/python/test_conv_transpose_ops.py checks those
against PyTorch instead.
"""

import numpy as np

F32, F16 = "float32", "float16"

CASES = []
ORT_REJECTS = set()


def const(name, dtype, shape, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    return (name, dtype, rng.uniform(-scale, scale, size=shape).astype(dtype).tolist(), "const")


def add(case_id, x_shape, w_shape, attrs=None, bias=True, dtype=F32, runtime_weight=False,
        opset=18):
    group = (attrs or {}).get("group", 1)
    seed = len(CASES)
    inputs = [("x", dtype, list(x_shape))]
    inputs.append(("w", dtype, list(w_shape)) if runtime_weight
                  else const("w", dtype, w_shape, seed))
    if bias:
        inputs.append(const("b", dtype, [w_shape[1] * group], seed + 1000, scale=1.0))
    CASES.append((f"convt_{case_id}", "ConvTranspose", inputs, attrs or {}, opset))


# ---- 1-D ----------------------------------------------------------------------------------------
add("1d_basic", [2, 3, 9], [3, 4, 3])
add("1d_stride2_pad1_outpad1", [1, 4, 16], [4, 2, 4],
    {"strides": [2], "pads": [1, 1], "output_padding": [1]}, bias=False)
add("1d_opset13", [1, 3, 7], [3, 2, 5], {"strides": [3], "pads": [2, 2]}, opset=13)
add("1d_same_upper", [2, 4, 10], [4, 3, 3], {"strides": [2], "auto_pad": "SAME_UPPER"})
# Full extent 4 * 5 + 3 = 23 < in * stride = 24: ORT's output keeps 23 (no padding, cuDNN direct).
add("1d_same_lower_stride4", [1, 3, 6], [3, 2, 3], {"strides": [4], "auto_pad": "SAME_LOWER"})

# ---- 2-D: cuDNN writes Y directly ---------------------------------------------------------------
add("2d_k2s2_unet_up", [2, 16, 8, 8], [16, 8, 2, 2], {"strides": [2, 2]})
add("2d_k4s2p1_dcgan", [1, 8, 7, 7], [8, 4, 4, 4], {"strides": [2, 2], "pads": [1, 1, 1, 1]})
add("2d_k3s2p1_outpad1", [1, 6, 5, 6], [6, 3, 3, 3],
    {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]})
add("2d_group2_dilation2", [1, 4, 6, 6], [4, 3, 3, 3],
    {"group": 2, "dilations": [2, 2], "strides": [2, 1]})
add("2d_depthwise", [1, 8, 6, 6], [8, 1, 3, 3],
    {"group": 8, "strides": [2, 2], "pads": [1, 1, 1, 1]})
add("2d_stride3_gt_kernel2", [1, 3, 5, 5], [3, 2, 2, 2], {"strides": [3, 3]})
add("2d_valid_kernel_shape", [2, 3, 4, 5], [3, 2, 3, 2],
    {"auto_pad": "VALID", "kernel_shape": [3, 2], "strides": [1, 2]}, bias=False)
add("2d_runtime_weight", [1, 3, 5, 5], [3, 2, 3, 3], {"strides": [2, 2]}, runtime_weight=True)
add("2d_opset21", [1, 2, 4, 4], [2, 3, 3, 3], {"pads": [1, 1, 1, 1]}, opset=21)
add("2d_larger", [2, 32, 16, 16], [32, 16, 4, 4], {"strides": [2, 2], "pads": [1, 1, 1, 1]})

# ---- 2-D: full result, then crop ----------------------------------------------------------------
add("2d_asymmetric_pads", [1, 4, 5, 6], [4, 3, 3, 3],
    {"strides": [2, 2], "pads": [0, 1, 1, 0]})
add("2d_same_upper", [1, 4, 5, 6], [4, 2, 3, 3], {"strides": [2, 2], "auto_pad": "SAME_UPPER"})
add("2d_same_lower", [1, 4, 5, 6], [4, 2, 3, 3], {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
    bias=False)
add("2d_output_shape", [1, 3, 5, 6], [3, 2, 3, 3], {"strides": [2, 2], "output_shape": [10, 14]})
add("2d_output_shape_outpad", [1, 3, 5, 6], [3, 2, 3, 3],
    {"strides": [2, 2], "output_shape": [11, 12], "output_padding": [1, 1]})
add("2d_grouped_asymmetric", [2, 6, 4, 4], [6, 2, 4, 4],
    {"group": 3, "strides": [2, 2], "pads": [1, 2, 2, 1]})
add("2d_outpad_below_dilation", [1, 2, 5, 5], [2, 3, 2, 2],
    {"dilations": [2, 2], "output_padding": [1, 1]})
ORT_REJECTS.add("convt_2d_outpad_below_dilation")

# ---- 3-D ----------------------------------------------------------------------------------------
add("3d_k2s2", [1, 4, 3, 4, 5], [4, 2, 2, 2, 2], {"strides": [2, 2, 2]})
add("3d_asymmetric", [1, 3, 4, 5, 3], [3, 2, 3, 3, 2],
    {"strides": [2, 1, 2], "pads": [1, 1, 0, 1, 0, 0]}, bias=False)

# ---- float16 tensors ----------------------------------------------------------------------------
add("2d_f16", [1, 8, 6, 6], [8, 4, 4, 4], {"strides": [2, 2], "pads": [1, 1, 1, 1]}, dtype=F16)
add("1d_f16_crop", [2, 4, 9], [4, 4, 3], {"strides": [2], "auto_pad": "SAME_LOWER"}, dtype=F16)
