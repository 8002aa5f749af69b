"""The integer ops (MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv, DynamicQuantizeLinear)
and the small gaps closed beside them (bool ReduceMax/ReduceMin, 16-bit Range, SpaceToDepth CRD,
MaxPool's Indices, MaxUnpool, Upsample, opset 6 broadcasting at an axis and per-channel PRelu) on
the CPU backend, against onnx's reference implementation (ReferenceEvaluator) and ONNX Runtime.
Integer outputs must match exactly; errors name the node and the input.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import kiln
from kiln_testing import run_kiln, run_ort

RNG = np.random.default_rng(13)


def make_model(node, inputs: dict, opset: int, initializers=(), outputs=None):
    """A one-node model whose graph inputs are `inputs` (name -> array)."""
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                    for n, a in inputs.items()]
    outs = [onnx.ValueInfoProto(name=o) for o in (outputs or node.output)]
    graph = helper.make_graph([node], "g", graph_inputs, outs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def reference(model, inputs):
    names = [o.name for o in model.graph.output]
    return dict(zip(names, ReferenceEvaluator(model).run(None, inputs)))


def assert_same(got, want, exact=True):
    for name, ref in want.items():
        out = got[name]
        assert out.dtype == ref.dtype and out.shape == ref.shape, (name, out.dtype, out.shape, ref.dtype, ref.shape)
        if exact:
            np.testing.assert_array_equal(out, ref, err_msg=name)
        else:
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6, err_msg=name)


def q(dtype, shape):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, size=shape).astype(dtype)


# ---- MatMulInteger / QLinearMatMul --------------------------------------------------------------

@pytest.mark.parametrize("a_type,b_type", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("a_shape,b_shape", [((4, 3), (3, 2)), ((2, 5, 7), (7, 3)), ((2, 1, 3, 6), (4, 6, 5)),
                                             ((6,), (6, 4)), ((3, 6), (6,))])
def test_matmul_integer_matches_reference(a_type, b_type, a_shape, b_shape):
    n = b_shape[-1] if len(b_shape) > 1 else 1
    inputs = {"A": q(a_type, a_shape), "B": q(b_type, b_shape), "a_zero_point": q(a_type, ()),
              "b_zero_point": q(b_type, (n,) if len(b_shape) > 1 else ())}
    model = make_model(helper.make_node("MatMulInteger", list(inputs), ["Y"]), inputs, 10)
    assert_same(run_kiln(model, inputs), reference(model, inputs))


def test_matmul_integer_per_row_zero_point_matches_onnxruntime():
    # The spec's per-row a_zero_point ([M]); onnx's reference broadcasts it along K instead.
    inputs = {"A": q(np.uint8, (4, 3)), "B": q(np.uint8, (3, 5)), "a_zero_point": q(np.uint8, (4,)),
              "b_zero_point": q(np.uint8, (5,))}
    model = make_model(helper.make_node("MatMulInteger", list(inputs), ["Y"]), inputs, 10)
    a = inputs["A"].astype(np.int32) - inputs["a_zero_point"].astype(np.int32)[:, None]
    b = inputs["B"].astype(np.int32) - inputs["b_zero_point"].astype(np.int32)
    np.testing.assert_array_equal(run_kiln(model, inputs)["Y"], a @ b)


def qlinear_matmul_inputs(dtype, scale_type, a_shape, b_shape, per_column):
    n = b_shape[-1]
    scale = lambda shape: (RNG.uniform(0.001, 0.05, size=shape)).astype(scale_type)
    return {"a": q(dtype, a_shape), "a_scale": scale((1,)), "a_zero_point": q(dtype, (1,)),
            "b": q(dtype, b_shape), "b_scale": scale((n,) if per_column else (1,)),
            "b_zero_point": q(dtype, (n,) if per_column else (1,)),
            "y_scale": scale((1,)), "y_zero_point": q(dtype, (1,))}


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("scale_type", [np.float32, np.float16])
@pytest.mark.parametrize("a_shape,b_shape,per_column", [((2, 4), (4, 3), False), ((3, 2, 9), (9, 5), True),
                                                        ((2, 3, 8), (2, 8, 4), False), ((1, 16), (16, 7), True)])
def test_qlinear_matmul_matches_reference(dtype, scale_type, a_shape, b_shape, per_column):
    inputs = qlinear_matmul_inputs(dtype, scale_type, a_shape, b_shape, per_column)
    model = make_model(helper.make_node("QLinearMatMul", list(inputs), ["y"]), inputs, 21)
    assert_same(run_kiln(model, inputs), reference(model, inputs))


def test_qlinear_matmul_float32_matches_onnxruntime_opset10():
    inputs = qlinear_matmul_inputs(np.uint8, np.float32, (5, 6), (6, 4), False)
    inputs = {k: (v.reshape(()) if v.size == 1 else v) for k, v in inputs.items()}
    model = make_model(helper.make_node("QLinearMatMul", list(inputs), ["y"]), inputs, 10)
    got, want = run_kiln(model, inputs)["y"], run_ort(model, inputs)["y"]
    # ONNX Runtime rounds through float32; a sum exactly between two integers may differ by one.
    assert np.abs(got.astype(np.int32) - want.astype(np.int32)).max() <= 1


# ---- ConvInteger / QLinearConv ------------------------------------------------------------------

CONV_GEOMETRIES = [
    ((1, 1, 3, 3), (2, 1, 2, 2), {"pads": [1, 1, 1, 1]}),
    ((2, 4, 7, 6), (6, 2, 3, 3), {"group": 2, "strides": [2, 1], "pads": [1, 0, 1, 2]}),
    ((1, 3, 9), (4, 3, 3), {"dilations": [2]}),
    ((1, 2, 4, 5, 3), (2, 2, 2, 2, 2), {"auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("x_shape,w_shape,attrs", CONV_GEOMETRIES)
def test_conv_integer_matches_reference(dtype, x_shape, w_shape, attrs):
    inputs = {"x": q(dtype, x_shape), "w": q(dtype, w_shape), "x_zero_point": q(dtype, ()),
              # onnx's reference takes a per-channel w_zero_point for 2-D convolutions only
              "w_zero_point": q(dtype, (w_shape[0],) if len(w_shape) == 4 else ())}
    model = make_model(helper.make_node("ConvInteger", list(inputs), ["y"], **attrs), inputs, 10)
    assert_same(run_kiln(model, inputs), reference(model, inputs))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("x_shape,w_shape,attrs", CONV_GEOMETRIES[:2])
@pytest.mark.parametrize("bias", [False, True])
def test_qlinear_conv_matches_reference(dtype, x_shape, w_shape, attrs, bias):
    m = w_shape[0]
    inputs = {"x": q(dtype, x_shape), "x_scale": np.float32(0.02), "x_zero_point": q(dtype, ()),
              "w": q(dtype, w_shape), "w_scale": RNG.uniform(0.001, 0.01, m).astype(np.float32),
              "w_zero_point": q(dtype, (m,)), "y_scale": np.float32(0.5), "y_zero_point": q(dtype, ())}
    if bias:
        inputs["B"] = RNG.integers(-5000, 5000, m).astype(np.int32)
    inputs = {k: np.asarray(v) for k, v in inputs.items()}
    model = make_model(helper.make_node("QLinearConv", list(inputs), ["y"], **attrs), inputs, 10)
    assert_same(run_kiln(model, inputs), reference(model, inputs))


# ---- DynamicQuantizeLinear ----------------------------------------------------------------------

@pytest.mark.parametrize("values", [
    RNG.normal(size=(3, 7)).astype(np.float32),
    RNG.uniform(1, 5, size=(11,)).astype(np.float32),      # all positive: min clamps to 0
    -RNG.uniform(1, 5, size=(2, 2, 5)).astype(np.float32),  # all negative: max clamps to 0
    np.zeros((4,), np.float32),                             # max == min: scale 1
])
def test_dynamic_quantize_linear_matches_reference_and_onnxruntime(values):
    inputs = {"x": values}
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "y_scale", "y_zero_point"])
    model = make_model(node, inputs, 11)
    got = run_kiln(model, inputs)
    assert_same(got, reference(model, inputs))
    if values.any():  # all zeros: ONNX Runtime gives scale 1, the spec's formula 1/255
        assert_same(got, run_ort(model, inputs))


# ---- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,inputs,needle", [
    ("MatMulInteger", {"A": q(np.uint8, (2, 3)), "B": q(np.uint8, (4, 2))}, "inner dimension"),
    ("MatMulInteger", {"A": np.zeros((2, 3), np.float32), "B": q(np.uint8, (3, 2))}, "input 0 \\(A\\)"),
    ("MatMulInteger", {"A": q(np.uint8, (2, 3)), "B": q(np.uint8, (3, 2)), "a_zero_point": q(np.int8, ())},
     "a_zero_point"),
    ("MatMulInteger", {"A": q(np.uint8, (2, 3)), "B": q(np.uint8, (3, 2)), "a_zero_point": q(np.uint8, ()),
                       "b_zero_point": q(np.uint8, (3,))}, "b_zero_point"),
    ("ConvInteger", {"x": q(np.uint8, (1, 3, 4, 4)), "w": q(np.uint8, (2, 2, 2, 2))}, "channels"),
    ("ConvInteger", {"x": q(np.uint8, (1, 1, 4, 4)), "w": q(np.uint8, (2, 1, 2, 2)),
                     "x_zero_point": q(np.uint8, (2,))}, "x_zero_point"),
])
def test_malformed_integer_ops_are_errors_naming_the_input(op, inputs, needle):
    model = make_model(helper.make_node(op, list(inputs), ["y"], name="int_node"), inputs, 10)
    with pytest.raises(kiln.KilnError, match=f"int_node.*{needle}"):
        run_kiln(model, inputs)


def test_qlinear_matmul_float8_is_refused_naming_the_input():
    inputs = qlinear_matmul_inputs(np.uint8, np.float32, (2, 4), (4, 3), False)
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                    for n, a in inputs.items()]
    graph_inputs[0] = helper.make_tensor_value_info("a", TensorProto.FLOAT8E4M3FN, [2, 4])
    graph = helper.make_graph([helper.make_node("QLinearMatMul", list(inputs), ["y"], name="qmm")], "g",
                              graph_inputs, [onnx.ValueInfoProto(name="y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(kiln.KilnError, match="qmm.*input 0 \\(a\\)"):
        kiln.build_onnx(model.SerializeToString(), target="cpu")


# ---- the small gaps -----------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("shape,axes,keepdims", [((3, 4), [1], 1), ((2, 3, 4), [0, 2], 0), ((2, 0, 4), [1], 1),
                                                 ((5,), None, 0)])
def test_bool_reduce_max_min_match_reference(op, shape, axes, keepdims):
    inputs = {"data": RNG.integers(0, 2, size=shape).astype(bool)}
    node_inputs = ["data"]
    initializers = []
    if axes is not None:
        initializers = [numpy_helper.from_array(np.array(axes, np.int64), "axes")]
        node_inputs.append("axes")
    model = make_model(helper.make_node(op, node_inputs, ["reduced"], keepdims=keepdims), inputs, 20, initializers)
    assert_same(run_kiln(model, inputs), reference(model, inputs))


def test_bool_reduce_sum_stays_refused():
    inputs = {"data": np.ones((2, 2), bool)}
    model = make_model(helper.make_node("ReduceSum", ["data"], ["reduced"]), inputs, 20)
    with pytest.raises(kiln.UnsupportedError, match="bool"):
        run_kiln(model, inputs)


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
@pytest.mark.parametrize("start,limit,delta", [(1.0, 5.0, 2.0), (10.0, 3.0, -0.5), (0.0, 1.0, 0.125)])
def test_16_bit_range_matches_float32_rounded(dtype, start, limit, delta):
    import ml_dtypes

    np_type = ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
    elem = TensorProto.BFLOAT16 if dtype == "bfloat16" else TensorProto.FLOAT16
    nodes = [helper.make_node("Range", ["s", "l", "d"], ["y"])]
    inits = [helper.make_tensor(n, elem, [], [v]) for n, v in (("s", start), ("l", limit), ("d", delta))]
    graph = helper.make_graph(nodes, "g", [], [onnx.ValueInfoProto(name="y")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 27)])
    got = np.asarray(run_kiln(model, {})["y"]).view(np.uint16)
    want = np.arange(np.float32(start), np.float32(limit), np.float32(delta), dtype=np.float32).astype(np_type)
    np.testing.assert_array_equal(got, want.view(np.uint16))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("shape,blocksize", [((1, 2, 4, 6), 2), ((2, 3, 6, 9), 3)])
def test_space_to_depth_modes_match_reference(mode, shape, blocksize):
    inputs = {"x": RNG.normal(size=shape).astype(np.float32)}
    model = make_model(helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=blocksize, mode=mode), inputs, 28)
    assert_same(run_kiln(model, inputs), reference(model, inputs))


@pytest.mark.parametrize("shape,attrs", [
    ((1, 1, 5, 5), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 3, 6, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((1, 2, 9), {"kernel_shape": [3], "dilations": [2]}),
    ((1, 2, 4, 5, 6), {"kernel_shape": [2, 2, 3], "strides": [1, 2, 2]}),
])
@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_indices_match_onnxruntime(shape, attrs, storage_order):
    if storage_order and len(shape) != 4:
        pytest.skip("ONNX Runtime defines storage_order for 2-D pooling")
    inputs = {"x": RNG.permutation(np.prod(shape)).reshape(shape).astype(np.float32)}  # no ties
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], storage_order=storage_order, **attrs)
    model = make_model(node, inputs, 12)
    assert_same(run_kiln(model, inputs), run_ort(model, inputs))


@pytest.mark.parametrize("with_shape", [False, True])
@pytest.mark.parametrize("shape,attrs", [
    ((1, 1, 4, 4), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 3, 5, 5), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 8), {"kernel_shape": [2], "strides": [2]}),
])
def test_max_unpool_inverts_max_pool_as_the_reference(with_shape, shape, attrs):
    x = RNG.permutation(np.prod(shape)).reshape(shape).astype(np.float32)
    pool = make_model(helper.make_node("MaxPool", ["x"], ["y", "i"], **attrs), {"x": x}, 12)
    pooled = run_ort(pool, {"x": x})
    inputs = {"xT": pooled["y"], "xI": pooled["i"]}
    names = ["xT", "xI"]
    if with_shape:
        inputs["output_shape"] = np.array(list(shape[:2]) + [d + 1 for d in shape[2:]], np.int64)
        names.append("output_shape")
    model = make_model(helper.make_node("MaxUnpool", names, ["y"], **attrs), inputs, 22)
    assert_same(run_kiln(model, inputs), reference(model, inputs))


def test_max_unpool_index_outside_the_shape_is_an_error():
    inputs = {"xT": np.ones((1, 1, 2, 2), np.float32), "xI": np.array([0, 1, 2, 99], np.int64).reshape(1, 1, 2, 2)}
    node = helper.make_node("MaxUnpool", ["xT", "xI"], ["y"], name="unpool", kernel_shape=[2, 2], strides=[2, 2])
    with pytest.raises(kiln.KilnError, match="unpool.*index 99"):
        run_kiln(make_model(node, inputs, 22), inputs)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("scales", [[1.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.5, 2.5]])
def test_upsample_matches_onnxruntime(mode, opset, scales):
    inputs = {"x": RNG.normal(size=(1, 2, 3, 4)).astype(np.float32)}
    if opset == 7:
        node = helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=scales)
        inits = []
    else:
        node = helper.make_node("Upsample", ["x", "scales"], ["y"], mode=mode)
        inits = [numpy_helper.from_array(np.array(scales, np.float32), "scales")]
    model = make_model(node, inputs, opset, inits)
    assert_same(run_kiln(model, inputs), run_ort(model, inputs), exact=False)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("a_shape,b_shape,axis", [((2, 3), (3,), 1), ((2, 3, 4, 5), (3, 4), 1),
                                                  ((2, 3, 4), (2,), 0), ((2, 3), (1, 3), 0)])
def test_opset6_broadcast_at_an_axis_matches_numpy(op, a_shape, b_shape, axis):
    inputs = {"a": RNG.normal(size=a_shape).astype(np.float32), "b": RNG.uniform(1, 2, size=b_shape).astype(np.float32)}
    model = make_model(helper.make_node(op, ["a", "b"], ["y"], broadcast=1, axis=axis), inputs, 6)
    b = inputs["b"].reshape(b_shape + (1,) * (len(a_shape) - axis - len(b_shape)))
    fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    np.testing.assert_allclose(run_kiln(model, inputs)["y"], fn(inputs["a"], b), rtol=1e-6)


def test_opset6_broadcast_at_a_negative_axis_is_an_error_naming_the_node():
    inputs = {"a": np.ones((2, 3), np.float32), "b": np.ones((3,), np.float32)}
    model = make_model(helper.make_node("Add", ["a", "b"], ["y"], name="old_add", broadcast=1, axis=-1), inputs, 6)
    with pytest.raises(kiln.InvalidArgumentError, match="old_add.*axis"):
        run_kiln(model, inputs)


@pytest.mark.parametrize("x_shape,slope_shape", [((2, 3, 4), (3,)), ((2, 3, 4, 5), (3,)), ((2, 3), (3,)),
                                                 ((2, 3, 4), (1,)), ((2, 3, 4), (2, 3, 4))])
def test_opset6_prelu_slope_is_per_channel(x_shape, slope_shape):
    inputs = {"x": RNG.normal(size=x_shape).astype(np.float32)}
    slope = RNG.uniform(0.1, 0.9, size=slope_shape).astype(np.float32)
    model = make_model(helper.make_node("PRelu", ["x", "slope"], ["y"]), inputs, 6,
                       [numpy_helper.from_array(slope, "slope")])
    aligned = slope.reshape(slope_shape + (1,) * max(len(x_shape) - 1 - len(slope_shape), 0))
    x = inputs["x"]
    np.testing.assert_allclose(run_kiln(model, inputs)["y"], np.where(x < 0, x * aligned, x), rtol=1e-6)
