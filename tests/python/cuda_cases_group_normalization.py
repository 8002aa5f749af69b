"""Conformance cases (CUDA vs CPU backend, and CPU vs ONNX Runtime in
tests/python/test_group_normalization_ops.py) for InstanceNormalization and GroupNormalization:
src/backends/{cpu,cuda}/group_normalization_kernels.*.

Each entry: (case_id, onnx_op, inputs, attrs, opset[, num_outputs]). An input is
(name, dtype, shape) for a random runtime input (floats uniform in [-2, 2]),
(name, dtype, values, "const") for an initializer, or None for an absent optional input.

Notes for readers: the CUDA kernels normalise one (n, group) row per block when the row fits one
chunk (256 threads x 32 elements = 8192 elements) and split longer rows into chunks whose
statistics are merged; rows whose channel size is a multiple of the 16-byte vector width use
vector accesses. The shapes below cover both paths, chunk tails, odd sizes (scalar path), tiny
rows, many rows, and the opset-18 GroupNormalization form (scale/bias per group).

ONNX has no shape inference for GroupNormalization (a function op): kiln_testing's OpCase.model()
must type an output that inference leaves untyped (like input 0) for these cases to build.
"""

F32, F16 = "float32", "float16"

CASES = []


def add(case_id, op, inputs, attrs=None, opset=18):
    CASES.append((case_id, op, inputs, attrs or {}, opset))


def affine(dtype, size, const=False):
    if const:
        import numpy as np
        rng = np.random.default_rng(size)
        return [("scale", dtype, rng.uniform(0.5, 1.5, size).astype(dtype).tolist(), "const"),
                ("bias", dtype, rng.uniform(-1, 1, size).astype(dtype).tolist(), "const")]
    return [("scale", dtype, [size]), ("bias", dtype, [size])]


def instance_norm(case_id, shape, dtype=F32, const=False, **attrs):
    add(case_id, "InstanceNormalization", [("x", dtype, shape)] + affine(dtype, shape[1], const),
        attrs, opset=17)


def group_norm(case_id, shape, groups, dtype=F32, per_group=False, const=False, **attrs):
    # Per-group cases (the deprecated opset-18 form) are written at opset 21 too, because the ONNX
    # checker rejects GroupNormalization-18 as deprecated; kiln tells the forms apart by the size
    # of scale/bias. test_group_normalization_ops.py runs them at opset 18 against ONNX Runtime.
    add(case_id, "GroupNormalization",
        [("x", dtype, shape)] + affine(dtype, groups if per_group else shape[1], const),
        {"num_groups": groups, **attrs}, opset=21)


# ---- InstanceNormalization -------------------------------------------------------------------
instance_norm("gn_instance_nchw", [2, 3, 5, 7])
instance_norm("gn_instance_rank3", [2, 4, 10])
instance_norm("gn_instance_rank5", [1, 3, 4, 5, 6])
instance_norm("gn_instance_vec_spatial_8x8", [4, 16, 8, 8], epsilon=1e-3)
instance_norm("gn_instance_one_chunk_64x64", [1, 4, 64, 64], const=True)
instance_norm("gn_instance_two_chunks_128x128", [1, 2, 128, 128])
instance_norm("gn_instance_odd_chunk_tail_300x301", [1, 1, 300, 301])
instance_norm("gn_instance_many_tiny_rows", [64, 200, 1, 3])
instance_norm("gn_instance_spatial_one", [2, 5, 1, 1])
instance_norm("gn_instance_f16", [2, 8, 32, 32], F16)
instance_norm("gn_instance_f16_split_odd", [1, 3, 97, 101], F16)
instance_norm("gn_instance_f16_style_transfer", [1, 32, 96, 96], F16, const=True)

# ---- GroupNormalization (opset 21: per channel; opset 18: per group) ---------------------------
group_norm("gn_group_resnet_32x8", [2, 32, 16, 16], 8)
group_norm("gn_group_one_group", [1, 64, 32, 32], 1)
group_norm("gn_group_groups_eq_channels", [2, 6, 5, 5], 6)
group_norm("gn_group_odd_spatial", [3, 6, 7, 9], 3, epsilon=1e-2)
group_norm("gn_group_rank2", [4, 6], 3)
group_norm("gn_group_rank3", [2, 12, 33], 4)
group_norm("gn_group_rank5", [1, 8, 4, 6, 5], 2)
group_norm("gn_group_unet_320x32x32", [1, 320, 32, 32], 32, const=True)
group_norm("gn_group_unet_f16", [2, 320, 16, 16], 32, F16)
group_norm("gn_group_f16_large_rows", [1, 64, 48, 48], 4, F16)
group_norm("gn_group_stash_type", [2, 8, 6, 6], 4, stash_type=1)
group_norm("gn_group_opset18_per_group", [2, 6, 5, 4], 3, per_group=True)
group_norm("gn_group_opset18_per_group_long", [1, 16, 64, 64], 2, per_group=True)
group_norm("gn_group_opset18_per_group_f16", [2, 8, 16, 16], 2, F16, per_group=True)
