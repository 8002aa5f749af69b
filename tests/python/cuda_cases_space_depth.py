"""Conformance cases (CUDA vs CPU backend, and CPU vs ONNX Runtime or the ONNX definition in
tests/python/test_space_depth_ops.py) for DepthToSpace and SpaceToDepth:
src/backends/{cpu,cuda}/space_depth_kernels.*.

Each entry: (case_id, onnx_op, inputs, attrs, opset[, num_outputs]). An input is
(name, dtype, shape) for a random runtime input (floats uniform in [-2, 2], integers in [-5, 5]).

Both ops are one strided copy (a transpose of a 6-D view); the cases cover both DepthToSpace modes,
block sizes 1-4, sizes that the copy's shared-memory tiles do and do not divide, and every
element width (1, 2, 4, 8 bytes).
"""

F32, F16, I64, I32 = "float32", "float16", "int64", "int32"

CASES = []


def add(case_id, op, shape, dtype=F32, **attrs):
    CASES.append((case_id, op, [("x", dtype, shape)], attrs, 13))


# ---- DepthToSpace ----------------------------------------------------------------------------
add("sd_d2s_dcr", "DepthToSpace", [2, 8, 3, 5], blocksize=2)
add("sd_d2s_crd", "DepthToSpace", [2, 8, 3, 5], blocksize=2, mode="CRD")
add("sd_d2s_dcr_b3", "DepthToSpace", [1, 18, 4, 7], blocksize=3)
add("sd_d2s_crd_b3", "DepthToSpace", [1, 18, 4, 7], blocksize=3, mode="CRD")
add("sd_d2s_b1", "DepthToSpace", [2, 3, 4, 5], blocksize=1)
add("sd_d2s_pixel_shuffle_large", "DepthToSpace", [2, 64, 33, 31], blocksize=2, mode="CRD")
add("sd_d2s_super_resolution_b4", "DepthToSpace", [1, 48, 64, 64], blocksize=4, mode="CRD")
add("sd_d2s_dcr_large", "DepthToSpace", [2, 32, 40, 24], blocksize=4)
add("sd_d2s_f16", "DepthToSpace", [2, 16, 9, 10], F16, blocksize=2, mode="CRD")
add("sd_d2s_f16_dcr", "DepthToSpace", [1, 36, 8, 8], F16, blocksize=3)
add("sd_d2s_int64", "DepthToSpace", [2, 8, 3, 3], I64, blocksize=2)
add("sd_d2s_int32", "DepthToSpace", [1, 9, 2, 5], I32, blocksize=3, mode="CRD")
add("sd_d2s_uint8", "DepthToSpace", [2, 4, 5, 6], "uint8", blocksize=2)
add("sd_d2s_int8", "DepthToSpace", [1, 16, 7, 3], "int8", blocksize=4, mode="CRD")
add("sd_d2s_bool", "DepthToSpace", [1, 4, 3, 3], "bool", blocksize=2)

# ---- SpaceToDepth ----------------------------------------------------------------------------
add("sd_s2d", "SpaceToDepth", [2, 3, 8, 6], blocksize=2)
add("sd_s2d_b3", "SpaceToDepth", [1, 4, 9, 6], blocksize=3)
add("sd_s2d_b1", "SpaceToDepth", [2, 3, 4, 5], blocksize=1)
add("sd_s2d_large_b4", "SpaceToDepth", [1, 16, 64, 128], blocksize=4)
add("sd_s2d_pixel_unshuffle", "SpaceToDepth", [2, 3, 66, 62], blocksize=2)
add("sd_s2d_f16", "SpaceToDepth", [2, 5, 12, 8], F16, blocksize=2)
add("sd_s2d_int64", "SpaceToDepth", [1, 2, 6, 6], I64, blocksize=3)
add("sd_s2d_int32", "SpaceToDepth", [2, 3, 4, 4], I32, blocksize=2)
add("sd_s2d_uint8", "SpaceToDepth", [1, 3, 8, 8], "uint8", blocksize=4)
add("sd_s2d_bool", "SpaceToDepth", [1, 2, 4, 6], "bool", blocksize=2)
