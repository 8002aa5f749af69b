"""CUDA conformance cases for the nn families: normalization, softmax, reduce, pooling and
depthwise convolution.

Each case is (case_id, onnx_op, inputs, attrs, opset[, num_outputs]); an input is
(name, dtype, shape) for a random runtime input or (name, dtype, values, "const") for a constant
initializer. ReduceLogSum of random data may see negative sums: NaN on both backends. Shapes are
chosen to reach every kernel path of src/backends/cuda/{normalization,softmax,reduce,pooling}
_kernels.cu: warp- and block-per-row, register-cached and long rows, 16-byte vector and scalar
loads (odd lengths), middle-axis and general reductions, split (workspace) reductions. The
depthwise Conv cases reach src/backends/cuda/depthwise_conv_kernels.cu (when the build's timing
picks it over cuDNN; tests/gpu/test_cuda_depthwise.py forces it): the 3x3/5x5/7x7 specialisations
at strides 1 and 2, the generic kernel, odd sizes, row tiles and several planes per block.
"""

import zlib

import numpy as np

CASES = []


def add(case_id, op, inputs, attrs=None, opset=18, num_outputs=1):
    if num_outputs == 1:
        CASES.append((case_id, op, inputs, attrs or {}, opset))
    else:
        CASES.append((case_id, op, inputs, attrs or {}, opset, num_outputs))


def shape_id(shape):
    return "x".join(str(d) for d in shape)


# ---- Softmax / LogSoftmax -------------------------------------------------------------------------
# (shape, axis): last-axis rows of every size class, then middle/leading axes (column kernel).
SOFTMAX_SHAPES = [
    ([4, 7], -1),          # warp, scalar loads (odd)
    ([8, 128], -1),        # warp, vector loads, 8 per lane
    ([3, 1000], 1),        # warp, 32 per lane
    ([2, 1001], -1),       # warp, scalar
    ([2, 3000], -1),       # block, 16 per thread
    ([2, 6000], -1),       # block, 32 per thread
    ([2, 5001], -1),       # block, scalar
    ([2, 20000], -1),      # online (rows longer than the register cache)
    ([17], 0),             # rank 1
    ([1, 1], -1),          # single element
    ([5, 3, 4], 0),        # leading axis
    ([2, 7, 13], 1),       # middle axis
    ([2, 3, 4], -2),       # negative middle axis
    ([1, 1000, 3], 1),     # long column
    ([2, 3, 4, 5], 2),
]
for op in ["Softmax", "LogSoftmax"]:
    for shape, axis in SOFTMAX_SHAPES:
        add(f"{op.lower()}_{shape_id(shape)}_axis{axis}", op, [("x", "float32", shape)],
            {"axis": axis}, 13)
    for shape, axis in [([4, 768], -1), ([2, 1000], -1), ([3, 4, 5], 1), ([2, 5000], -1),
                        ([3, 13], -1)]:
        add(f"{op.lower()}_f16_{shape_id(shape)}_axis{axis}", op, [("x", "float16", shape)],
            {"axis": axis}, 13)
add("softmax_default_axis_opset21", "Softmax", [("x", "float32", [3, 1, 7])], {}, 21)

# ---- LayerNormalization ---------------------------------------------------------------------------
# (x shape, axis, scale/bias shape, with bias, epsilon)
LAYER_NORM = [
    ([4, 768], -1, [768], True, 1e-5),
    ([2, 3, 1024], -1, [1024], False, 1e-5),
    ([3, 7], -1, [7], True, 1e-5),           # scalar loads
    ([5, 100], 1, [100], True, 1e-3),        # warp, 8 per lane
    ([2, 4, 5], 1, [4, 5], True, 1e-5),      # normalized over two axes
    ([3, 4], 0, [3, 4], True, 1e-5),         # a single row
    ([2, 3000], -1, [3000], True, 1e-5),     # block, 16 per thread
    ([2, 6144], -1, [6144], True, 1e-5),     # block, 32 per thread
    ([2, 9001], -1, [9001], True, 1e-5),     # long rows (three passes)
    ([2, 3, 4], 1, [4], True, 1e-5),         # Scale/B broadcast to [3, 4]
    ([2, 3, 4], 1, [1, 4], False, 1e-5),     # broadcast with a unit axis
]
for shape, axis, pshape, bias, eps in LAYER_NORM:
    inputs = [("x", "float32", shape), ("scale", "float32", pshape)]
    if bias:
        inputs.append(("bias", "float32", pshape))
    add(f"layernorm_{shape_id(shape)}_axis{axis}_p{shape_id(pshape)}{'_bias' if bias else ''}",
        "LayerNormalization", inputs, {"axis": axis, "epsilon": eps}, 17)
for shape, bias in [([4, 768], True), ([8, 1024], True), ([3, 1000], False), ([2, 77], True)]:
    inputs = [("x", "float16", shape), ("scale", "float16", shape[-1:])]
    if bias:
        inputs.append(("bias", "float16", shape[-1:]))
    add(f"layernorm_f16_{shape_id(shape)}{'_bias' if bias else ''}", "LayerNormalization",
        inputs, {"axis": -1}, 17)

# Y, Mean and InvStdDev (float32 statistics by default stash_type).
add("layernorm_4x768_three_outputs", "LayerNormalization",
    [("x", "float32", [4, 768]), ("scale", "float32", [768]), ("bias", "float32", [768])],
    {"axis": -1}, 17, 3)
add("layernorm_2x3x5_axis1_three_outputs", "LayerNormalization",
    [("x", "float32", [2, 3, 5]), ("scale", "float32", [3, 5])], {"axis": 1}, 17, 3)
add("layernorm_f16_2x77_three_outputs", "LayerNormalization",
    [("x", "float16", [2, 77]), ("scale", "float16", [77]), ("bias", "float16", [77])],
    {"axis": -1}, 17, 3)


# ---- BatchNormalization ---------------------------------------------------------------------------
def batch_norm_inputs(shape, dtype):
    channels = shape[1]
    return [
        ("x", dtype, shape),
        ("scale", dtype, [0.5 + 0.25 * (c % 5) for c in range(channels)], "const"),
        ("bias", dtype, [0.1 * c - 0.3 for c in range(channels)], "const"),
        ("mean", dtype, [0.05 * (c % 7) - 0.1 for c in range(channels)], "const"),
        ("var", dtype, [0.2 + 0.3 * (c % 4) for c in range(channels)], "const"),
    ]


for shape, eps in [([2, 3, 5, 5], 1e-5),      # small planes (flat kernel)
                   ([2, 16, 32, 32], 1e-5),   # planes, vector loads
                   ([2, 5, 33, 17], 1e-3),    # planes, scalar loads
                   ([4, 8], 1e-5),            # rank 2
                   ([2, 3, 100], 1e-5),       # rank 3
                   ([1, 4, 3, 4, 5], 1e-5)]:  # rank 5
    add(f"batchnorm_{shape_id(shape)}", "BatchNormalization", batch_norm_inputs(shape, "float32"),
        {"epsilon": eps}, 15)
for shape in [[2, 8, 16, 16], [2, 3, 7, 7]]:
    add(f"batchnorm_f16_{shape_id(shape)}", "BatchNormalization",
        batch_norm_inputs(shape, "float16"), {}, 15)

# ---- Reduce* --------------------------------------------------------------------------------------
REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
              "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]


def axes_input(axes, dtype="int64"):
    return [("axes", dtype, axes, "const")] if axes is not None else []


# (shape, axes or None for absent, keepdims, noop_with_empty_axes); covered for every op.
REDUCE_CORE = [
    ([3, 4, 5], [-1], 1, 0),        # short rows (thread per output)
    ([8, 300], [1], 0, 0),          # warp per row, vector loads
    ([5, 7, 13], [1], 1, 0),        # middle axis
    ([2, 3, 4, 5], [0, 2], 1, 0),   # general (alternating axes)
    ([6, 37], None, 1, 0),          # axes absent: everything
]
# Extra layouts for a few ops.
REDUCE_EXTRA = [
    ([2, 3000], [1], 1, 0),          # block per row
    ([7, 1001], [-1], 0, 0),         # warp per row, scalar loads
    ([256, 1024], None, 0, 0),       # one long row split across blocks (workspace)
    ([4096, 3], [0], 1, 0),          # middle axis split across blocks (workspace)
    ([2, 3, 4, 5], [1, 2], 0, 0),    # adjacent axes merge into one middle axis
    ([2, 3, 4, 5], [2, 3], 1, 0),    # trailing axes merge into rows
    ([2, 1, 5], [1], 1, 0),          # reducing a unit axis only
    ([3, 4], [], 1, 1),              # empty axes with noop_with_empty_axes
    ([3, 4], [], 0, 0),              # empty axes without it: everything
    ([2, 3, 4, 5, 6], [0, 2, 4], 0, 0),
]
for op in REDUCE_OPS:
    extra = REDUCE_EXTRA if op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceLogSumExp") else []
    for shape, axes, keepdims, noop in REDUCE_CORE + extra:
        if op == "ReduceProd" and shape_id(shape) in ("256x1024", "4096x3"):
            continue  # products of that many random values under- or overflow
        axes_id = "none" if axes is None else ("empty" if not axes else "_".join(map(str, axes)))
        attrs = {"keepdims": keepdims}
        if noop:
            attrs["noop_with_empty_axes"] = 1
        add(f"{op.lower()}_{shape_id(shape)}_axes{axes_id}_k{keepdims}{'_noop' if noop else ''}",
            op, [("x", "float32", shape)] + axes_input(axes), attrs, 18)
# float16
for op, shape, axes in [("ReduceSum", [4, 1000], [1]), ("ReduceMean", [2, 3, 4, 5], [2, 3]),
                        ("ReduceMax", [8, 64], None), ("ReduceLogSumExp", [4, 300], [-1]),
                        ("ReduceMean", [16, 9], [0]), ("ReduceL2", [3, 5, 7], [0, 2])]:
    add(f"{op.lower()}_f16_{shape_id(shape)}", op, [("x", "float16", shape)] + axes_input(axes),
        {"keepdims": 1}, 18)
# integers (Sum, Max, Min, Prod)
for dtype in ["int64", "int32"]:
    for op in ["ReduceSum", "ReduceMax", "ReduceMin"]:
        add(f"{op.lower()}_{dtype}_3x4x5_axes1", op,
            [("x", dtype, [3, 4, 5]), ("axes", "int64", [1], "const")], {"keepdims": 0}, 18)
        add(f"{op.lower()}_{dtype}_6x100_axesm1", op,
            [("x", dtype, [6, 100]), ("axes", "int64", [-1], "const")], {"keepdims": 1}, 18)
    add(f"reduceprod_{dtype}_3x4_axes1", "ReduceProd",
        [("x", dtype, [3, 4]), ("axes", "int64", [1], "const")], {"keepdims": 1}, 18)
# opset 13: axes as an attribute (ReduceSum takes the input already)
add("reducemean_opset13_axes_attr", "ReduceMean", [("x", "float32", [2, 3, 4])],
    {"axes": [1], "keepdims": 1}, 13)
add("reducesum_opset13_axes_input", "ReduceSum",
    [("x", "float32", [2, 3, 4]), ("axes", "int64", [0, 2], "const")], {"keepdims": 0}, 13)

# ---- MaxPool / AveragePool ------------------------------------------------------------------------
# (case suffix, shape, attrs) shared by both windowed pools.
POOLS = [
    ("2d_k2s2", [1, 3, 8, 8], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("2d_k3s2p1", [2, 4, 13, 13], {"kernel_shape": [3, 3], "strides": [2, 2],
                                   "pads": [1, 1, 1, 1]}),
    ("2d_k3s1p1", [1, 2, 7, 9], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("2d_asym_pads", [1, 2, 9, 8], {"kernel_shape": [3, 2], "strides": [2, 1],
                                    "pads": [0, 1, 2, 0]}),
    ("2d_ceil", [1, 2, 7, 7], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("2d_ceil_pads", [1, 2, 8, 8], {"kernel_shape": [3, 3], "strides": [2, 2],
                                    "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ("2d_same_upper", [1, 2, 7, 7], {"kernel_shape": [3, 3], "strides": [2, 2],
                                     "auto_pad": "SAME_UPPER"}),
    ("2d_same_lower", [1, 2, 8, 8], {"kernel_shape": [4, 4], "strides": [3, 3],
                                     "auto_pad": "SAME_LOWER"}),
    ("2d_valid", [1, 2, 9, 9], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"}),
    ("1d", [2, 3, 20], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    ("3d", [1, 2, 6, 6, 6], {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]}),
    ("3d_pads", [1, 2, 5, 6, 7], {"kernel_shape": [3, 3, 3], "pads": [1, 1, 1, 1, 1, 1]}),
    ("2d_big", [2, 64, 56, 56], {"kernel_shape": [3, 3], "strides": [2, 2],
                                 "pads": [1, 1, 1, 1]}),
]
for suffix, shape, attrs in POOLS:
    add(f"maxpool_{suffix}", "MaxPool", [("x", "float32", shape)], attrs, 18)
    add(f"averagepool_{suffix}", "AveragePool", [("x", "float32", shape)], attrs, 18)
    if "pads" in attrs or "auto_pad" in attrs:
        add(f"averagepool_{suffix}_include_pad", "AveragePool", [("x", "float32", shape)],
            dict(attrs, count_include_pad=1), 18)
add("maxpool_2d_dilation2", "MaxPool", [("x", "float32", [1, 2, 9, 9])],
    {"kernel_shape": [3, 3], "dilations": [2, 2]}, 18)
add("maxpool_2d_dilation2_pads_ceil", "MaxPool", [("x", "float32", [1, 2, 10, 10])],
    {"kernel_shape": [3, 3], "dilations": [2, 2], "strides": [2, 2], "pads": [2, 2, 2, 2],
     "ceil_mode": 1}, 18)
add("averagepool_2d_dilation2_opset19", "AveragePool", [("x", "float32", [1, 2, 9, 9])],
    {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1]}, 19)
add("averagepool_2d_dilation2_include_pad_opset19", "AveragePool",
    [("x", "float32", [1, 2, 9, 9])],
    {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    19)
add("averagepool_2d_ceil_include_pad", "AveragePool", [("x", "float32", [1, 2, 8, 8])],
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1,
     "count_include_pad": 1}, 18)
for op in ["MaxPool", "AveragePool"]:
    add(f"{op.lower()}_f16_2d_k3s2p1", op, [("x", "float16", [2, 8, 15, 15])],
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 18)

# ---- GlobalAveragePool / GlobalMaxPool -----------------------------------------------------------
GLOBAL_SHAPES = [
    [2, 3, 7, 7],        # rows of 49: warp per row, scalar loads
    [1, 16, 1, 1],       # rows of 1
    [2, 5, 3, 4],        # rows of 12: thread per row
    [2, 8, 16, 16],      # rows of 256: vector loads
    [2, 4, 100, 100],    # block per row
    [1, 2, 300, 300],    # few long rows: split across blocks (workspace)
    [1, 2, 4, 5, 6],     # 3-D
    [2, 3, 10],          # 1-D
]
for op in ["GlobalAveragePool", "GlobalMaxPool"]:
    for shape in GLOBAL_SHAPES:
        add(f"{op.lower()}_{shape_id(shape)}", op, [("x", "float32", shape)], {}, 18)
    for shape in [[2, 64, 7, 7], [1, 32, 56, 56]]:
        add(f"{op.lower()}_f16_{shape_id(shape)}", op, [("x", "float16", shape)], {}, 18)

# ---- depthwise Conv (group == channels) ------------------------------------------------------
# (case suffix, x shape, kernel (kH, kW), strides, pads, bias, extra attributes). Weights are small
# (|w| <= 0.25) so that float32 sums of 49 or 81 taps stay well inside the float32 tolerance.
DEPTHWISE = [
    ("3x3_s1_p1_15x17", [1, 8, 15, 17], (3, 3), [1, 1], [1, 1, 1, 1], True, {}),
    ("3x3_s2_p1_15x17_b3", [3, 16, 15, 17], (3, 3), [2, 2], [1, 1, 1, 1], True, {}),
    ("3x3_s2_nopad", [1, 8, 16, 16], (3, 3), [2, 2], [0, 0, 0, 0], False, {}),
    ("3x3_s2_pad_end", [1, 8, 16, 16], (3, 3), [2, 2], [0, 0, 1, 1], True, {}),  # TF "SAME": Pad + Conv
    ("5x5_s1_p2_b3", [3, 24, 14, 13], (5, 5), [1, 1], [2, 2, 2, 2], True, {}),
    ("5x5_s2_p2", [1, 40, 17, 15], (5, 5), [2, 2], [2, 2, 2, 2], False, {}),
    ("7x7_s1_p3", [1, 32, 24, 24], (7, 7), [1, 1], [3, 3, 3, 3], True, {}),
    ("7x7_s1_p3_7x7_planes_b3", [3, 37, 7, 7], (7, 7), [1, 1], [3, 3, 3, 3], True, {}),
    ("7x7_s2_p3", [1, 8, 13, 9], (7, 7), [2, 2], [3, 3, 3, 3], True, {}),
    ("3x3_s1_p1_64x64_row_tiles", [2, 16, 64, 64], (3, 3), [1, 1], [1, 1, 1, 1], True, {}),
    ("9x9_s1_p4_generic", [1, 8, 11, 10], (9, 9), [1, 1], [4, 4, 4, 4], True, {}),
    ("3x5_s1x3_generic", [1, 5, 10, 12], (3, 5), [1, 3], [1, 2, 1, 2], True, {}),
    ("1x1", [2, 6, 5, 6], (1, 1), [1, 1], [0, 0, 0, 0], True, {}),
    ("3x3_1x1_image_b3", [3, 4, 1, 1], (3, 3), [1, 1], [1, 1, 1, 1], True, {}),
    # Left to cuDNN by the own kernel's predicate: dilation, and a channel multiplier of 2.
    ("3x3_dilation2", [1, 8, 11, 11], (3, 3), [1, 1], [2, 2, 2, 2], True, {"dilations": [2, 2]}),
    ("3x3_multiplier2", [1, 4, 9, 9], (3, 3), [1, 1], [1, 1, 1, 1], True, {"multiplier": 2}),
]
for suffix, x_shape, (kh, kw), strides, pads, bias, extra in DEPTHWISE:
    case_id = f"conv_depthwise_{suffix}"
    channels = x_shape[1]
    out_channels = channels * extra.get("multiplier", 1)
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    inputs = [("x", "float32", x_shape),
              ("w", "float32", rng.uniform(-0.25, 0.25, size=(out_channels, 1, kh, kw)).tolist(), "const")]
    if bias:
        inputs.append(("b", "float32", rng.uniform(-0.5, 0.5, size=out_channels).tolist(), "const"))
    attrs = {"group": channels, "kernel_shape": [kh, kw], "strides": strides, "pads": pads}
    if "dilations" in extra:
        attrs["dilations"] = extra["dilations"]
    add(case_id, "Conv", inputs, attrs, 18)

assert len({case[0] for case in CASES}) == len(CASES), "duplicate case ids"
