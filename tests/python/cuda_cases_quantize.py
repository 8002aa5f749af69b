"""Conformance cases (CUDA vs CPU backend on the GPU machine; CPU vs ONNX Runtime in
tests/python/test_quantize_linear_cases.py) for QuantizeLinear and DequantizeLinear:
src/backends/{cpu,cuda}/quantize_kernels.*.

Each entry: (case_id, onnx_op, inputs, attrs, opset). Scales and zero points are initializers
("const"); x is random (floats uniform in [-2, 2], integers in [-5, 5]). The cases cover
per-tensor, per-axis (axis 0, 1 and the last) and blocked scales, with and without a zero point,
int8/uint8/int16 codes, float32/float16 inputs and outputs, and rounding ties.
"""

F32, F16 = "float32", "float16"

CASES = []


def q(case_id, shape, scale, zero_point=None, dtype=F32, zp_dtype="int8", scale_dtype=F32, opset=21, **attrs):
    inputs = [("x", dtype, shape), ("scale", scale_dtype, scale, "const")]
    if zero_point is not None:
        inputs.append(("zero_point", zp_dtype, zero_point, "const"))
    CASES.append((case_id, "QuantizeLinear", inputs, attrs, opset))


def dq(case_id, shape, scale, zero_point=None, dtype="int8", scale_dtype=F32, opset=21, **attrs):
    inputs = [("x", dtype, shape), ("scale", scale_dtype, scale, "const")]
    if zero_point is not None:
        inputs.append(("zero_point", dtype, zero_point, "const"))
    CASES.append((case_id, "DequantizeLinear", inputs, attrs, opset))


# ---- QuantizeLinear ------------------------------------------------------------------------------
q("qdq_q_tensor_int8", [4, 33], 0.02, 0)
q("qdq_q_tensor_uint8", [2, 3, 17], 0.01, 128, zp_dtype="uint8")
q("qdq_q_no_zero_point", [1000], 0.05)  # uint8 by default: negatives clamp to 0
q("qdq_q_int16", [3, 40], 1e-4, -7, zp_dtype="int16")
q("qdq_q_axis1", [2, 4, 5, 3], [0.01, 0.02, 0.05, 0.1], [0, 1, -2, 3], axis=1)
q("qdq_q_axis0", [3, 7], [0.5, 0.25, 0.125], [0, 0, 0], axis=0)
q("qdq_q_axis_last", [5, 6], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1, 2, 3, 4, 5, 6], axis=-1)
q("qdq_q_blocked", [2, 8, 3], [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [[0.7, 0.8, 0.9], [1.0, 1.1, 1.2]]],
  [[[0, 0, 0], [1, 1, 1]], [[2, 2, 2], [3, 3, 3]]], axis=1, block_size=4)
q("qdq_q_saturates", [64], 0.001, 10)  # |x| up to 2 over 0.001: far past int8
q("qdq_q_f16_both", [3, 50], 0.03, 0, dtype=F16, scale_dtype=F16)  # divided in float16
CASES.append(("qdq_q_ties", "QuantizeLinear",
              [("x", F32, [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.5, float("nan")], "values"),
               ("scale", F32, 1.0, "const"), ("zero_point", "int8", 0, "const")], {}, 21))

# ---- DequantizeLinear ----------------------------------------------------------------------------
dq("qdq_dq_tensor_int8", [4, 33], 0.02, 3)
dq("qdq_dq_tensor_uint8", [2, 3, 17], 0.01, 128, dtype="uint8")
dq("qdq_dq_no_zero_point", [1000], 0.05)
dq("qdq_dq_int16", [3, 40], 1e-3, -7, dtype="int16")
dq("qdq_dq_axis1", [2, 4, 5, 3], [0.01, 0.02, 0.05, 0.1], [0, 1, -2, 3], axis=1)
dq("qdq_dq_axis0_weights", [16, 3, 3, 3], [0.01 * (i + 1) for i in range(16)], [0] * 16, axis=0)
dq("qdq_dq_blocked", [2, 8, 3], [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [[0.7, 0.8, 0.9], [1.0, 1.1, 1.2]]],
   [[[0, 0, 0], [1, 1, 1]], [[2, 2, 2], [3, 3, 3]]], axis=1, block_size=4)
dq("qdq_dq_f16_scale", [3, 50], 0.03, 0, scale_dtype=F16)  # float16 output
