"""Every op kiln supports, on single-node ONNX models, against ONNX Runtime.

Each case builds a model with onnx.helper (opset 17 unless the id says otherwise; some at 13 and
18-21 to exercise the importer's normalisation to the opset-21 forms; kiln reads opsets 13..21), compiles it with
kiln.build_onnx (fp32, cpu), runs it with kiln.Engine and compares with ONNX Runtime (graph
optimisations off). Tolerances: rtol 1e-5 / atol 1e-6 for float32 (looser only for ops whose
CPU implementations legitimately differ in the last bits, noted per case); integer and bool
outputs must match exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from kiln_testing import OpCase, assert_outputs_match, node_case, run_kiln, run_ort

F32 = np.float32
I64 = np.int64


def rand(*shape, low=-2.0, high=2.0, seed=0):
    rng = np.random.default_rng(seed + 7919 * len(shape) + sum(shape))
    return rng.uniform(low, high, size=shape).astype(F32)


def randint(*shape, low=-5, high=6, seed=0):
    rng = np.random.default_rng(seed + 104729 + sum(shape))
    return rng.integers(low, high, size=shape).astype(I64)


def away_from_zero(*shape, seed=0):
    x = rand(*shape, low=0.5, high=2.0, seed=seed)
    signs = np.where(rand(*shape, seed=seed + 1) < 0, -1, 1).astype(F32)
    return x * signs


def i64(*values):
    return np.array(values, dtype=I64)


CASES: list[OpCase] = []


def add(case: OpCase) -> None:
    CASES.append(case)


# ---- unary elementwise ---------------------------------------------------------------------
UNARY_SHAPES = [(1,), (7,), (2, 13, 7), (1, 3, 5, 5)]
for op, make_input, tol in [
    ("Relu", lambda s: rand(*s), {}),
    ("Sigmoid", lambda s: rand(*s, low=-8, high=8), {}),
    ("Tanh", lambda s: rand(*s, low=-4, high=4), {}),
    ("Erf", lambda s: rand(*s, low=-3, high=3), {"atol": 1e-5, "rtol": 1e-5}),  # erf approximations
    ("Sqrt", lambda s: rand(*s, low=0.0, high=9.0), {}),
    ("Reciprocal", lambda s: away_from_zero(*s), {}),
    ("Neg", lambda s: rand(*s), {}),
    ("Exp", lambda s: rand(*s, low=-5, high=5), {}),
    ("Log", lambda s: rand(*s, low=0.01, high=50.0), {}),
    ("Identity", lambda s: rand(*s), {}),
    ("HardSwish", lambda s: rand(*s, low=-5, high=5), {}),
]:
    for shape in UNARY_SHAPES:
        add(node_case(f"{op}-{'x'.join(map(str, shape))}", op, [("x", make_input(shape))], **tol))
add(node_case("Relu-opset13", "Relu", [("x", rand(4, 5))], opset=13))
add(node_case("Neg-int64", "Neg", [("x", randint(3, 4))]))
add(node_case("Identity-int64", "Identity", [("x", randint(2, 3))]))
add(node_case("Sigmoid-opset21", "Sigmoid", [("x", rand(2, 9, low=-6, high=6))], opset=21))

add(node_case("LeakyRelu-default", "LeakyRelu", [("x", rand(3, 7))]))
add(node_case("LeakyRelu-alpha0.2", "LeakyRelu", [("x", rand(2, 3, 4))], {"alpha": 0.2}))
add(node_case("LeakyRelu-opset13", "LeakyRelu", [("x", rand(5,))], {"alpha": 0.3}, opset=13))
add(node_case("HardSigmoid-default", "HardSigmoid", [("x", rand(3, 13, low=-6, high=6))]))
add(node_case("HardSigmoid-custom", "HardSigmoid", [("x", rand(4, 5, low=-6, high=6))],
              {"alpha": 0.5, "beta": 0.25}))
add(node_case("HardSwish-opset21", "HardSwish", [("x", rand(2, 7, low=-5, high=5))], opset=21))
for approximate in ("none", "tanh"):
    # Gelu's erf / tanh evaluation differs in the last bits between libraries.
    add(node_case(f"Gelu-{approximate}-opset20", "Gelu", [("x", rand(3, 17, low=-5, high=5))],
                  {"approximate": approximate}, opset=20, atol=1e-5, rtol=1e-5))
add(node_case("Gelu-default-opset21", "Gelu", [("x", rand(1, 7, 7, low=-5, high=5))], opset=21,
              atol=1e-5, rtol=1e-5))

# Clip: inputs since opset 11, attributes before.
add(node_case("Clip-min-max-opset13", "Clip",
              [("x", rand(3, 7)), ("c_min", np.array(-0.5, F32)), ("c_max", np.array(0.75, F32))],
              opset=13))
add(node_case("Clip-min-only", "Clip", [("x", rand(3, 7)), ("c_min", np.array(0.1, F32))]))
add(node_case("Clip-max-only", "Clip", [("x", rand(13,)), None, ("c_max", np.array(0.0, F32))]))
add(node_case("Clip-none", "Clip", [("x", rand(2, 5))]))
add(node_case("Clip-int64", "Clip",
              [("x", randint(4, 5)), ("c_min", np.array(-2, I64)), ("c_max", np.array(3, I64))]))

# ---- binary elementwise with broadcasting ----------------------------------------------------
BROADCAST_PAIRS = [
    ((2, 3, 4), (2, 3, 4)),
    ((2, 3, 4), (4,)),
    ((2, 1, 4), (3, 1)),
    ((1,), (5, 7)),
    ((), (2, 3)),
    ((13, 1, 7), (1, 5, 1)),
]
for op in ("Add", "Sub", "Mul", "Div"):
    for a_shape, b_shape in BROADCAST_PAIRS:
        b = away_from_zero(*b_shape, seed=3) if op == "Div" else rand(*b_shape, seed=3)
        tag = f"{'x'.join(map(str, a_shape)) or 'scalar'}-{'x'.join(map(str, b_shape)) or 'scalar'}"
        add(node_case(f"{op}-{tag}", op, [("a", rand(*a_shape)), ("b", b)]))
    add(node_case(f"{op}-const-rhs", op, [("a", rand(3, 4)),
                                          ("c_b", away_from_zero(4, seed=9))]))
    add(node_case(f"{op}-int64", op, [("a", randint(3, 4)),
                                      ("b", randint(4, low=1, high=5))]))
    add(node_case(f"{op}-opset13", op, [("a", rand(2, 3)), ("b", away_from_zero(3))], opset=13))
add(node_case("Div-int64-negative", "Div", [("a", i64(-7, 7, -8, 9)), ("b", i64(2, -2, 3, 4))]))
add(node_case("Pow-float", "Pow", [("a", rand(3, 4, low=0.1, high=3)), ("b", rand(3, 4, low=-2, high=2))]))
add(node_case("Pow-broadcast-exponent", "Pow",
              [("a", rand(2, 3, 5, low=0.1, high=3)), ("c_b", np.array(2.0, F32))]))
add(node_case("Pow-negative-base-int-exponent", "Pow",
              [("a", rand(7, low=-3, high=3)), ("c_b", np.array([2.0, 3.0, 0.0, 1.0, 2.0, 3.0, -1.0], F32))]))
add(node_case("Pow-opset13", "Pow", [("a", rand(4, low=0.5, high=2)), ("b", rand(4))], opset=13))

for op in ("Equal", "Less", "Greater"):
    a = randint(3, 5, low=-2, high=3)
    b = randint(5, low=-2, high=3, seed=1)
    add(node_case(f"{op}-int64-broadcast", op, [("a", a), ("b", b)]))
    fa = np.round(rand(2, 3, 4), 1)
    fb = np.round(rand(3, 1, seed=5), 1)
    fa[0, :, 0] = fb[:, 0]  # some exact ties
    add(node_case(f"{op}-float-broadcast", op, [("a", fa), ("b", fb)]))
add(node_case("Equal-opset13", "Equal", [("a", i64(1, 2, 3)), ("b", i64(1, 0, 3))], opset=13))

# Variadic Sum/Mean/Min/Max: one, three and four broadcasting inputs (CUDA folds them into
# two-input ops; the CPU takes them as they are).
for op in ("Sum", "Mean", "Min", "Max"):
    add(node_case(f"{op}-one-input", op, [("a", rand(3, 4))]))
    add(node_case(f"{op}-three-broadcast", op, [("a", rand(2, 1, 5)), ("b", rand(3, 1, seed=1)),
                                                  ("c", rand(2, 3, 5, seed=2))]))
    add(node_case(f"{op}-four-inputs", op, [("a", rand(4, 6)), ("b", rand(6, seed=1)),
                                             ("c", rand(4, 6, seed=2)), ("d", rand(1, 6, seed=3))]))
for op in ("Min", "Max"):  # (ONNX's Sum and Mean are float-only)
    add(node_case(f"{op}-three-int64", op, [("a", randint(3, 4)), ("b", randint(4, seed=1)),
                                             ("c", randint(3, 1, seed=2))]))

cond = rand(2, 3, 4) > 0
add(node_case("Where-same-shape", "Where", [("cond", cond), ("a", rand(2, 3, 4)), ("b", rand(2, 3, 4, seed=4))]))
add(node_case("Where-broadcast", "Where", [("cond", rand(3, 1) > 0), ("a", rand(2, 1, 5)), ("b", rand(5, seed=2))]))
add(node_case("Where-int64", "Where", [("cond", rand(4) > 0), ("a", randint(3, 4)), ("c_b", np.array(-1, I64))]))

# ---- Cast --------------------------------------------------------------------------------------
for to, src, name in [
    (TensorProto.INT64, rand(3, 7, low=-9, high=9), "float-to-int64"),
    (TensorProto.INT32, rand(13, low=-9, high=9), "float-to-int32"),
    (TensorProto.FLOAT, randint(2, 5), "int64-to-float"),
    (TensorProto.BOOL, np.array([0.0, 1.5, -0.0, -2.0, 0.25], F32), "float-to-bool"),
    (TensorProto.FLOAT, rand(6) > 0, "bool-to-float"),
    (TensorProto.FLOAT16, rand(3, 4), "float-to-float16"),
    (TensorProto.INT64, randint(4, 3).astype(np.int32), "int32-to-int64"),
    (TensorProto.FLOAT, rand(2, 3), "float-to-float"),
]:
    add(node_case(f"Cast-{name}", "Cast", [("x", src)], {"to": to}))
add(node_case("Cast-opset13", "Cast", [("x", rand(5, low=-9, high=9))], {"to": TensorProto.INT64},
              opset=13))

# ---- Softmax / normalisation ---------------------------------------------------------------
for axis in (-1, 1, 0):
    add(node_case(f"Softmax-axis{axis}", "Softmax", [("x", rand(2, 5, 7, low=-5, high=5))], {"axis": axis}))
add(node_case("Softmax-default-axis", "Softmax", [("x", rand(3, 13))]))
add(node_case("Softmax-opset13", "Softmax", [("x", rand(2, 3, 4))], {"axis": -2}, opset=13))
add(node_case("Softmax-opset21", "Softmax", [("x", rand(3, 1, 7))], {"axis": 0}, opset=21))

for axis, eps, with_bias, shape in [(-1, 1e-5, True, (2, 5, 8)), (1, 1e-3, False, (2, 3, 4)),
                                    (-2, 1e-5, True, (3, 7, 5)), (0, 1e-5, True, (4, 6))]:
    norm_shape = shape[axis:] if axis >= 0 else shape[len(shape) + axis:]
    inputs = [("x", rand(*shape)), ("c_scale", rand(*norm_shape, low=0.5, high=1.5, seed=1))]
    if with_bias:
        inputs.append(("c_bias", rand(*norm_shape, seed=2)))
    add(node_case(f"LayerNormalization-axis{axis}-{'bias' if with_bias else 'nobias'}",
                  "LayerNormalization", inputs, {"axis": axis, "epsilon": eps}, rtol=1e-5, atol=2e-6))

for opset, shape, eps in [(15, (2, 3, 5, 5), 1e-5), (13, (1, 4, 7, 3), 1e-3), (14, (3, 6), 1e-5),
                          (15, (2, 3, 9), 1e-5)]:
    c = shape[1]
    add(node_case(f"BatchNormalization-{'x'.join(map(str, shape))}-opset{opset}", "BatchNormalization",
                  [("x", rand(*shape)), ("c_scale", rand(c, low=0.5, high=1.5, seed=1)),
                   ("c_bias", rand(c, seed=2)), ("c_mean", rand(c, seed=3)),
                   ("c_var", rand(c, low=0.2, high=2.0, seed=4))],
                  {"epsilon": eps}, opset=opset))

# ---- Conv ----------------------------------------------------------------------------------
for name, x_shape, w_shape, attrs, bias in [
    ("3x3-pad1", (1, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    ("3x3-nopad-nobias", (2, 2, 7, 9), (5, 2, 3, 3), {}, False),
    ("stride2", (1, 3, 13, 13), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, True),
    ("dilation2", (1, 2, 11, 11), (3, 2, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, True),
    ("depthwise", (1, 6, 9, 9), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}, True),
    ("grouped", (1, 4, 6, 6), (6, 2, 3, 3), {"group": 2}, True),
    ("1x1", (2, 8, 5, 5), (3, 8, 1, 1), {}, True),
    ("asymmetric-pads", (1, 2, 7, 6), (3, 2, 3, 2), {"pads": [0, 1, 2, 0], "strides": [1, 2]}, False),
    ("auto-pad-same-upper", (1, 3, 7, 7), (2, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, True),
    ("auto-pad-same-lower", (1, 3, 8, 8), (2, 3, 4, 4), {"auto_pad": "SAME_LOWER"}, True),
    ("auto-pad-valid", (1, 3, 8, 8), (2, 3, 3, 3), {"auto_pad": "VALID"}, True),
    ("rect-kernel", (1, 1, 13, 7), (2, 1, 5, 1), {"pads": [2, 0, 2, 0], "kernel_shape": [5, 1]}, True),
    ("conv1d", (2, 3, 17), (4, 3, 5), {"pads": [2, 2], "strides": [2]}, True),
]:
    inputs = [("x", rand(*x_shape)), ("c_w", rand(*w_shape, low=-0.5, high=0.5, seed=1))]
    if bias:
        inputs.append(("c_b", rand(w_shape[0], seed=2)))
    add(node_case(f"Conv-{name}", "Conv", inputs, attrs, atol=1e-5))
add(node_case("Conv-opset21", "Conv", [("x", rand(1, 2, 5, 5)), ("c_w", rand(2, 2, 3, 3, seed=1))],
              {"pads": [1, 1, 1, 1]}, opset=21, atol=1e-5))
add(node_case("Conv-runtime-weight", "Conv", [("x", rand(1, 2, 5, 5)), ("w", rand(3, 2, 3, 3, seed=1))],
              {}, atol=1e-5))

# ---- pooling ---------------------------------------------------------------------------------
for name, shape, attrs in [
    ("k2s2", (1, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("k3s1p1", (2, 2, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("k3s2-ceil", (1, 2, 13, 13), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("k3s2-floor", (1, 2, 13, 13), {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ("rect", (1, 1, 9, 6), {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1]}),
    ("same-upper", (1, 2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("1d", (2, 3, 11), {"kernel_shape": [3], "strides": [2]}),
]:
    add(node_case(f"MaxPool-{name}", "MaxPool", [("x", rand(*shape))], attrs))
    add(node_case(f"AveragePool-{name}", "AveragePool", [("x", rand(*shape))], attrs))
add(node_case("MaxPool-dilation2", "MaxPool", [("x", rand(1, 2, 9, 9))],
              {"kernel_shape": [2, 2], "dilations": [2, 2]}))
add(node_case("MaxPool-opset13", "MaxPool", [("x", rand(1, 2, 6, 6))],
              {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=13))
add(node_case("MaxPool-opset21", "MaxPool", [("x", rand(1, 2, 7, 7))],
              {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, opset=21))
add(node_case("AveragePool-count-include-pad", "AveragePool", [("x", rand(1, 2, 7, 7))],
              {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}))
add(node_case("AveragePool-exclude-pad", "AveragePool", [("x", rand(1, 2, 7, 7))],
              {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0}))
add(node_case("AveragePool-opset13", "AveragePool", [("x", rand(1, 2, 6, 6))],
              {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=13))
add(node_case("AveragePool-opset21", "AveragePool", [("x", rand(1, 2, 7, 7))],
              {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, opset=21))
for shape in [(1, 3, 8, 8), (2, 5, 7, 13), (1, 4, 1, 1), (2, 3, 9)]:
    add(node_case(f"GlobalAveragePool-{'x'.join(map(str, shape))}", "GlobalAveragePool",
                  [("x", rand(*shape))]))

# ---- Gemm / MatMul -------------------------------------------------------------------------
for name, a_shape, b_shape, c_shape, attrs in [
    ("plain", (3, 4), (4, 5), (5,), {}),
    ("transB", (2, 7), (3, 7), (3,), {"transB": 1}),
    ("transA", (7, 2), (7, 3), (1, 3), {"transA": 1}),
    ("transAB-alpha-beta", (4, 3), (5, 4), (3, 5), {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}),
    ("scalar-bias", (2, 3), (3, 4), (), {"beta": 0.5}),
    ("col-bias", (3, 4), (4, 2), (3, 1), {}),
    ("no-bias", (1, 13), (13, 7), None, {"alpha": 1.5}),
]:
    inputs = [("a", rand(*a_shape)), ("c_b", rand(*b_shape, seed=1))]
    if c_shape is not None:
        inputs.append(("c_c", rand(*c_shape, seed=2)))
    add(node_case(f"Gemm-{name}", "Gemm", inputs, attrs, atol=1e-5))
add(node_case("Gemm-runtime-b-opset13", "Gemm", [("a", rand(3, 4)), ("b", rand(4, 2, seed=1))],
              {}, opset=13, atol=1e-5))
for name, a_shape, b_shape in [
    ("2d", (3, 4), (4, 5)),
    ("batched", (2, 3, 4), (2, 4, 5)),
    ("batched-x-2d", (2, 3, 4), (4, 6)),
    ("broadcast-batch", (2, 1, 3, 4), (5, 4, 6)),
    ("1d-x-2d", (4,), (4, 3)),
    ("2d-x-1d", (3, 4), (4,)),
    ("1d-x-1d", (7,), (7,)),
    ("odd", (1, 13), (13, 7)),
]:
    add(node_case(f"MatMul-{name}", "MatMul", [("a", rand(*a_shape)), ("b", rand(*b_shape, seed=1))],
                  atol=1e-5))
add(node_case("MatMul-const-weight", "MatMul", [("a", rand(2, 5, 8)), ("c_w", rand(8, 3, seed=1))],
              atol=1e-5))
add(node_case("MatMul-opset13", "MatMul", [("a", rand(3, 4)), ("b", rand(4, 2, seed=1))], opset=13,
              atol=1e-5))

# ---- reductions ----------------------------------------------------------------------------
for op in ("ReduceMean", "ReduceSum", "ReduceMax"):
    x = rand(2, 3, 5, 7)
    for axes, keepdims in [([1], 1), ([-1], 0), ([0, 2], 1), ([1, -1], 0), (None, 1), (None, 0)]:
        tag = f"axes{'_'.join(map(str, axes)) if axes else 'all'}-keep{keepdims}"
        # opset 18: axes is an input for all three.
        inputs = [("x", x)] + ([("c_axes", i64(*axes))] if axes else [])
        add(node_case(f"{op}-{tag}-opset18", op, inputs, {"keepdims": keepdims}, opset=18,
                      atol=1e-5))
        # opset 13: ReduceSum takes an axes input, the others an attribute.
        if op == "ReduceSum":
            add(node_case(f"{op}-{tag}-opset13", op, inputs, {"keepdims": keepdims}, opset=13,
                          atol=1e-5))
        else:
            attrs = {"keepdims": keepdims, **({"axes": axes} if axes else {})}
            add(node_case(f"{op}-{tag}-opset13", op, [("x", x)], attrs, opset=13, atol=1e-5))
    add(node_case(f"{op}-default-keepdims-opset21", op, [("x", rand(3, 4)), ("c_axes", i64(0))],
                  opset=21, atol=1e-5))
    if op != "ReduceMean":  # kiln's ReduceMean is float-only (integer means truncate in ORT)
        add(node_case(f"{op}-int64", op, [("x", randint(3, 4)), ("c_axes", i64(1))], opset=18))
add(node_case("ReduceSum-noop-empty-axes", "ReduceSum", [("x", rand(2, 3))],
              {"noop_with_empty_axes": 1}, opset=18))

# ---- shape manipulation ----------------------------------------------------------------------
for name, shape, target in [
    ("flatten", (2, 3, 4), (2, -1)),
    ("zero-copies-dim", (2, 3, 4), (0, 12)),
    ("to-4d", (24,), (1, 2, 3, 4)),
    ("infer-middle", (6, 7), (3, -1, 7)),
    ("to-scalar-ish", (1, 1), (1,)),
]:
    add(node_case(f"Reshape-{name}", "Reshape", [("x", rand(*shape)), ("c_shape", i64(*target))]))
add(node_case("Reshape-int64", "Reshape", [("x", randint(2, 6)), ("c_shape", i64(3, 4))]))
add(node_case("Reshape-opset13", "Reshape", [("x", rand(4, 3)), ("c_shape", i64(2, 6))], opset=13))
add(node_case("Reshape-allowzero-opset14", "Reshape", [("x", rand(0, 3)), ("c_shape", i64(3, 0))],
              {"allowzero": 1}, opset=14))

for perm in ([1, 0, 2], [2, 0, 1], [0, 3, 1, 2], None):
    rank = 4 if perm and len(perm) == 4 else 3
    shape = (2, 3, 4, 5)[:rank] if perm else (2, 7, 3)
    attrs = {"perm": perm} if perm else {}
    add(node_case(f"Transpose-{'_'.join(map(str, perm)) if perm else 'reverse'}", "Transpose",
                  [("x", rand(*shape))], attrs))
add(node_case("Transpose-int64", "Transpose", [("x", randint(3, 4))], {"perm": [1, 0]}))
add(node_case("Transpose-opset13", "Transpose", [("x", rand(2, 3))], opset=13))

for axis in (0, 1, 2, -1, -3):
    add(node_case(f"Flatten-axis{axis}", "Flatten", [("x", rand(2, 3, 4, 5))], {"axis": axis}))
add(node_case("Flatten-default", "Flatten", [("x", rand(3, 1, 7))]))
add(node_case("Flatten-opset13", "Flatten", [("x", rand(2, 3, 4))], {"axis": 2}, opset=13))

for axis, shapes in [(0, [(1, 3), (2, 3)]), (1, [(2, 3, 4), (2, 5, 4), (2, 1, 4)]),
                     (-1, [(2, 3), (2, 7)]), (2, [(1, 2, 3, 4), (1, 2, 5, 4)])]:
    inputs = [(f"x{i}", rand(*s, seed=i)) for i, s in enumerate(shapes)]
    add(node_case(f"Concat-axis{axis}-{len(shapes)}inputs", "Concat", inputs, {"axis": axis}))
add(node_case("Concat-int64-with-const", "Concat", [("x", randint(2, 2)), ("c_y", i64(7, 8).reshape(1, 2))],
              {"axis": 0}))
add(node_case("Concat-opset13", "Concat", [("a", rand(2, 3)), ("b", rand(2, 3, seed=1))], {"axis": 1},
              opset=13))

# Split: split sizes as input since opset 13, as attribute before; num_outputs since 18.
add(node_case("Split-equal-3", "Split", [("x", rand(6, 4))], {"axis": 0}, num_outputs=3))
add(node_case("Split-sizes-input-opset13", "Split", [("x", rand(2, 7)), ("c_split", i64(2, 5))],
              {"axis": -1}, opset=13, num_outputs=2))
add(node_case("Split-equal-opset13", "Split", [("x", rand(3, 9))], {"axis": 1},
              opset=13, num_outputs=3))
add(node_case("Split-num-outputs-uneven-opset18", "Split", [("x", rand(2, 7))],
              {"axis": 1, "num_outputs": 3}, opset=18, num_outputs=3))
add(node_case("Split-int64", "Split", [("x", randint(4, 2)), ("c_split", i64(1, 3))], {"axis": 0},
              num_outputs=2))

for name, shape, starts, ends, axes, steps in [
    ("basic", (5, 6), [1, 2], [4, 5], [0, 1], None),
    ("negative", (5, 6), [-3], [-1], [1], None),
    ("step2", (7, 4), [0], [7], [0], [2]),
    ("reverse", (3, 8), [-1], [-9223372036854775807], [1], [-1]),
    ("clamped-ends", (4, 5), [1], [9223372036854775807], [0], None),
    ("negative-axis", (2, 3, 13), [2], [11], [-1], [3]),
    ("no-axes", (4, 6), [1, 1], [3, 5], None, None),
    ("empty", (4, 5), [3], [1], [0], None),
]:
    inputs = [("x", rand(*shape)), ("c_starts", i64(*starts)), ("c_ends", i64(*ends))]
    if axes is not None or steps is not None:
        inputs.append(("c_axes", i64(*(axes if axes is not None else range(len(starts))))))
    if steps is not None:
        inputs.append(("c_steps", i64(*steps)))
    add(node_case(f"Slice-{name}", "Slice", inputs))
add(node_case("Slice-int64-opset13", "Slice", [("x", randint(6,)), ("c_starts", i64(1)), ("c_ends", i64(5))],
              opset=13))

for name, data, indices, axis in [
    ("axis0", rand(5, 4), i64(0, 3, 3, 1), 0),
    ("axis1-2d-indices", rand(3, 6), i64(0, 5, 2, 1).reshape(2, 2), 1),
    ("negative-axis", rand(2, 3, 7), i64(6, 0), -1),
    ("negative-indices", rand(5, 3), i64(-1, -5, 2), 0),
    ("scalar-index", rand(4, 3), np.array(2, I64), 0),
    ("int64-data", randint(6, 2), i64(5, 0), 0),
]:
    add(node_case(f"Gather-{name}-const-indices", "Gather", [("x", data), ("c_idx", indices)], {"axis": axis}))
    add(node_case(f"Gather-{name}-runtime-indices", "Gather", [("x", data), ("idx", indices)], {"axis": axis}))
add(node_case("Gather-opset13", "Gather", [("x", rand(4, 3)), ("c_idx", i64(1, 2))], {"axis": 0}, opset=13))

for name, shape, axes in [("front", (3, 4), [0]), ("back", (3, 4), [-1]), ("two", (3, 4), [0, 3]),
                          ("middle", (2, 5), [1])]:
    add(node_case(f"Unsqueeze-{name}-opset13", "Unsqueeze", [("x", rand(*shape)), ("c_axes", i64(*axes))],
                  opset=13))
    add(node_case(f"Unsqueeze-{name}-opset21", "Unsqueeze", [("x", rand(*shape)), ("c_axes", i64(*axes))],
                  opset=21))
add(node_case("Unsqueeze-scalar", "Unsqueeze", [("x", np.array(3.5, F32)), ("c_axes", i64(0))]))
for name, shape, axes in [("one", (1, 3, 1, 4), [0]), ("negative", (2, 3, 1), [-1]),
                          ("two", (1, 3, 1, 4), [0, 2]), ("all", (1, 3, 1, 1), None)]:
    inputs = [("x", rand(*shape))] + ([("c_axes", i64(*axes))] if axes else [])
    add(node_case(f"Squeeze-{name}-opset13", "Squeeze", inputs, opset=13))
    add(node_case(f"Squeeze-{name}-opset21", "Squeeze", inputs, opset=21))

for name, attrs, opset in [("all", {}, 17), ("start1", {"start": 1}, 17), ("end-neg", {"end": -1}, 17),
                           ("start-end", {"start": -3, "end": 3}, 17), ("opset13", {}, 13)]:
    add(node_case(f"Shape-{name}", "Shape", [("x", rand(2, 3, 5, 7))], attrs, opset=opset))

# Expand: output shape is the broadcast of the input and the shape values.
for name, shape, target in [("row", (3, 1), (3, 4)), ("prepend", (4,), (2, 3, 4)),
                            ("ones-in-shape", (2, 1, 5), (1, 3, 1)), ("scalar", (), (2, 2))]:
    add(node_case(f"Expand-{name}", "Expand", [("x", rand(*shape)), ("c_shape", i64(*target))]))
add(node_case("Expand-int64-opset13", "Expand", [("x", randint(1, 3)), ("c_shape", i64(2, 3))], opset=13))

# Dropout is the identity at inference.
add(node_case("Dropout-opset13", "Dropout", [("x", rand(3, 7))], opset=13))
add(node_case("Dropout-ratio-input", "Dropout", [("x", rand(2, 5)), ("c_ratio", np.array(0.3, F32))]))
add(node_case("Dropout-opset21", "Dropout", [("x", rand(4,))], opset=21))

# Pad: pads as an input since opset 11, axes input since 18.
for name, mode, shape, pads, value in [
    ("constant-zero", "constant", (2, 3), [1, 2, 0, 1], None),
    ("constant-value", "constant", (1, 2, 3, 3), [0, 0, 1, 1, 0, 0, 2, 0], 1.5),
    ("reflect", "reflect", (3, 5), [1, 2, 2, 1], None),
    ("edge", "edge", (2, 4, 3), [0, 1, 2, 1, 0, 1], None),
    ("negative-crop", "constant", (4, 5), [-1, 1, 0, -2], None),
]:
    inputs = [("x", rand(*shape)), ("c_pads", i64(*pads))]
    if value is not None:
        inputs.append(("c_value", np.array(value, F32)))
    add(node_case(f"Pad-{name}", "Pad", inputs, {"mode": mode}))
add(node_case("Pad-axes-opset18", "Pad", [("x", rand(2, 3, 4)), ("c_pads", i64(1, 2, 0, 1)),
                                          None, ("c_axes", i64(-1, 1))], {"mode": "constant"}, opset=18))
add(node_case("Pad-int64-opset13", "Pad", [("x", randint(2, 3)), ("c_pads", i64(1, 0, 0, 1)),
                                           ("c_value", np.array(9, I64))], opset=13))
add(node_case("Pad-reflect-opset21", "Pad", [("x", rand(3, 4)), ("c_pads", i64(0, 2, 0, 1))],
              {"mode": "reflect"}, opset=21))

# Resize: nearest and linear, scales or sizes.
EMPTY_F32 = np.zeros((0,), F32)
for name, shape, scales, sizes, attrs, opset in [
    ("nearest-scales2-asymmetric-floor", (1, 2, 3, 4), [1, 1, 2, 2], None,
     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, 13),
    ("nearest-default", (1, 1, 4, 5), [1, 1, 2, 3], None, {"mode": "nearest"}, 13),
    ("nearest-sizes-downscale", (1, 2, 7, 9), None, [1, 2, 3, 4], {"mode": "nearest"}, 18),
    ("nearest-round-prefer-ceil", (1, 1, 5, 5), [1, 1, 1.5, 1.5], None,
     {"mode": "nearest", "nearest_mode": "round_prefer_ceil"}, 18),
    ("linear-half-pixel", (1, 2, 4, 4), [1, 1, 2, 2], None, {"mode": "linear"}, 13),
    ("linear-align-corners", (2, 1, 3, 5), None, [2, 1, 7, 9],
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, 13),
    # Scales that do not give a whole length: align_corners maps the output's whole-element size
    # onto the input, as ONNX Runtime and PyTorch do (ONNX's reference uses in * scale instead:
    # tests/onnx_backend/expected_failures.txt).
    ("linear-align-corners-scales-down", (1, 2, 4, 7), [1, 1, 0.6, 0.6], None,
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, 13),
    ("nearest-align-corners-scales-up", (1, 1, 3, 5), [1, 1, 1.7, 2.3], None,
     {"mode": "nearest", "coordinate_transformation_mode": "align_corners"}, 18),
    ("linear-asymmetric", (1, 1, 4, 6), [1, 1, 0.5, 1.5], None,
     {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, 18),
    ("linear-pytorch-half-pixel", (1, 3, 5, 4), None, [1, 3, 10, 1],
     {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, 13),
    ("linear-downscale", (1, 1, 8, 8), [1, 1, 0.5, 0.5], None, {"mode": "linear"}, 19),
]:
    inputs = [("x", rand(*shape)), ("c_roi", EMPTY_F32)]
    if scales is not None:
        inputs.append(("c_scales", np.array(scales, F32)))
    else:
        inputs += [None, ("c_sizes", i64(*sizes))]
    add(node_case(f"Resize-{name}-opset{opset}", "Resize", inputs, attrs, opset=opset, atol=1e-5))
add(node_case("Resize-nearest-no-roi-opset18", "Resize", [("x", rand(1, 1, 2, 3)), None,
                                                          ("c_scales", np.array([1, 1, 2, 2], F32))],
              {"mode": "nearest"}, opset=18))


# ---- constant producers: fed into an Add with a runtime input so the engine computes something
def with_add(case_id: str, producer, x: np.ndarray, consts=None, opset=17) -> OpCase:
    add_node = helper.make_node("Add", ["x", "produced"], ["y"], name="add")
    return OpCase(case_id, [producer, add_node], {"x": x}, consts or {}, ["y"], opset)


add(with_add("Constant-value-tensor",
             helper.make_node("Constant", [], ["produced"], name="const",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [3], [1.0, -2.0, 0.5])),
             rand(2, 3)))
add(with_add("Constant-value-float",
             helper.make_node("Constant", [], ["produced"], name="const", value_float=2.5), rand(4)))
add(with_add("Constant-value-ints",
             helper.make_node("Constant", [], ["produced"], name="const", value_ints=[1, 2, 3]),
             randint(2, 3)))
add(with_add("Constant-opset13",
             helper.make_node("Constant", [], ["produced"], name="const",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [], [4.0])),
             rand(3), opset=13))
add(with_add("ConstantOfShape-default-zero",
             helper.make_node("ConstantOfShape", ["c_shape"], ["produced"], name="cos"),
             rand(2, 3), {"c_shape": i64(2, 3)}))
add(with_add("ConstantOfShape-float-value",
             helper.make_node("ConstantOfShape", ["c_shape"], ["produced"], name="cos",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.75])),
             rand(4, 1, 5), {"c_shape": i64(3, 1)}))
add(with_add("ConstantOfShape-int64-value",
             helper.make_node("ConstantOfShape", ["c_shape"], ["produced"], name="cos",
                              value=helper.make_tensor("v", TensorProto.INT64, [1], [7])),
             randint(2, 4), {"c_shape": i64(4)}))
add(with_add("Range-float",
             helper.make_node("Range", ["c_start", "c_limit", "c_delta"], ["produced"], name="range"),
             rand(5), {"c_start": np.array(1.0, F32), "c_limit": np.array(3.4, F32),
                       "c_delta": np.array(0.5, F32)}))
add(with_add("Range-int64-negative-delta",
             helper.make_node("Range", ["c_start", "c_limit", "c_delta"], ["produced"], name="range"),
             randint(3, 4), {"c_start": np.array(10, I64), "c_limit": np.array(2, I64),
                             "c_delta": np.array(-2, I64)}))
# Shape feeding ConstantOfShape: a shape computed from a runtime input.
add(OpCase("ConstantOfShape-of-Shape",
           [helper.make_node("Shape", ["x"], ["s"], name="shape"),
            helper.make_node("ConstantOfShape", ["s"], ["ones"], name="cos",
                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
            helper.make_node("Add", ["x", "ones"], ["y"], name="add")],
           {"x": rand(2, 5)}))

# ---- GatherND (BERT's torch export uses it with batch_dims) ----------------------------------
for name, data, indices, batch_dims in [
    ("rows", rand(5, 4), i64(3, 0, -1).reshape(3, 1), 0),
    ("scalars", rand(5, 4), i64(0, 1, 4, -4, -5, 3).reshape(3, 2), 0),
    ("2d-tuples-3d-data", rand(4, 3, 6), i64(1, 2, 3, 0, -2, -1, 0, 0).reshape(2, 2, 2), 0),
    ("single-tuple", rand(6, 7, 2), i64(5, -7), 0),
    ("batch1", rand(2, 9, 8), i64(8, 0, -1, 3, 4, 4).reshape(2, 3, 1), 1),
    ("batch1-full-tuple", rand(3, 4, 5), i64(1, 4, 0, 0, 3, -1).reshape(3, 2), 1),
    ("batch2", rand(2, 3, 4, 5), i64(0, 3, 2, 1, -1, 2).reshape(2, 3, 1), 2),
    ("int64-data", randint(4, 3, 2), i64(3, 2, 0, -3).reshape(2, 2), 0),
]:
    attrs = {"batch_dims": batch_dims} if batch_dims else {}
    add(node_case(f"GatherND-{name}-const-indices", "GatherND", [("x", data), ("c_idx", indices)],
                  attrs))
    add(node_case(f"GatherND-{name}-runtime-indices", "GatherND", [("x", data), ("idx", indices)],
                  attrs))
add(node_case("GatherND-opset13", "GatherND", [("x", rand(3, 4)), ("c_idx", i64(2, 1).reshape(2, 1))],
              opset=13))
add(node_case("GatherND-batch1-opset13", "GatherND",
              [("x", rand(2, 4, 3)), ("idx", i64(3, 0, 1, 1).reshape(2, 2, 1))], {"batch_dims": 1},
              opset=13))

_ids = [c.id for c in CASES]
assert len(_ids) == len(set(_ids)), [i for i in _ids if _ids.count(i) > 1]

# Every op the registry supports, so that a new op without a case here shows up in review.
COVERED_OPS = sorted({n.op_type for c in CASES for n in c.nodes})


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_op_matches_onnxruntime(case: OpCase):
    model = case.model()
    want = run_ort(model, case.feeds)
    got = run_kiln(model, case.feeds)
    assert_outputs_match(got, want, case.rtol, case.atol)


def test_every_listed_op_has_cases():
    listed = {
        "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Erf",
        "HardSigmoid", "HardSwish", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm",
        "MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Exp", "Log",
        "Softmax", "LayerNormalization", "ReduceMean", "ReduceSum", "ReduceMax", "Reshape",
        "Transpose", "Flatten", "Concat", "Split", "Slice", "Gather", "Unsqueeze", "Squeeze",
        "Shape", "Cast", "Constant", "ConstantOfShape", "Expand", "Where", "Equal", "Less",
        "Greater", "Range", "Identity", "Dropout", "Pad", "Resize",
    }
    assert listed <= set(COVERED_OPS), sorted(listed - set(COVERED_OPS))
