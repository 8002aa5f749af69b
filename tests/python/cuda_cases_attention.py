"""Conformance cases (CUDA vs CPU backend in tests/gpu/test_cuda_conformance.py, and CPU vs ONNX
Runtime in tests/python/test_onnx_attention.py) for ONNX Attention (opset 23). kiln has no CUDA
Attention kernel: the builder lowers the node into the attention pattern, which fuses into
FusedAttention where the tensor-core kernel runs it (fp16/bf16, head dims multiples of 16) and
runs as MatMul/Softmax/... elsewhere, so these cases check both routes against the CPU kernel.

Each entry: (case_id, onnx_op, inputs, attrs, opset[, num_outputs]). An input is
(name, dtype, shape) for a random runtime input (floats uniform in [-2, 2]), or None for an absent
optional input.
"""

F32, F16, BOOL = "float32", "float16", "bool"

CASES = []


def add(case_id, q, k, v, mask=None, past=None, dtype=F32, outputs=1, **attrs):
    inputs = [("q", dtype, q), ("k", dtype, k), ("v", dtype, v)]
    if mask is not None:
        inputs.append(("mask", mask[0] if mask[0] == BOOL else dtype, mask[1]))
    if past is not None:
        while len(inputs) < 4:
            inputs.append(None)
        inputs += [("past_key", dtype, past[0]), ("past_value", dtype, past[1])]
    CASES.append((case_id, "Attention", inputs, attrs, 23, outputs))


add("attention_4d", [2, 3, 5, 16], [2, 3, 7, 16], [2, 3, 7, 16])
add("attention_4d_fp16_fused", [2, 3, 33, 64], [2, 3, 33, 64], [2, 3, 33, 64], dtype=F16)
add("attention_3d_causal_fp16", [2, 9, 64], [2, 9, 64], [2, 9, 64], dtype=F16, is_causal=1,
    q_num_heads=2, kv_num_heads=2)
add("attention_4d_float_mask", [2, 2, 6, 32], [2, 2, 6, 32], [2, 2, 6, 32],
    mask=(F32, [2, 1, 6, 6]))
add("attention_4d_bool_mask_fp16", [1, 2, 8, 32], [1, 2, 8, 32], [1, 2, 8, 32],
    mask=(BOOL, [8, 8]), dtype=F16)
add("attention_gqa_causal", [2, 4, 5, 8], [2, 2, 5, 8], [2, 2, 5, 8], is_causal=1)
add("attention_scaled_softcap", [1, 2, 4, 8], [1, 2, 6, 8], [1, 2, 6, 8], scale=0.3, softcap=2.0)
add("attention_past_present", [1, 2, 3, 16], [1, 2, 3, 16], [1, 2, 3, 16],
    past=([1, 2, 4, 16], [1, 2, 4, 16]), outputs=3, is_causal=1)
add("attention_value_head_differs", [2, 2, 4, 16], [2, 2, 6, 16], [2, 2, 6, 32])
add("attention_causal_cross_lengths", [1, 2, 3, 8], [1, 2, 5, 8], [1, 2, 5, 8], is_causal=1)
