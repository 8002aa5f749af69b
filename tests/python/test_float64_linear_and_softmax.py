"""float64 Softmax, LogSoftmax, Hardmax, MatMul, Gemm and Einsum and int8/uint8 MaxPool on kiln's
CPU backend against ONNX's reference evaluator (and ONNX Runtime): results in double precision
(values float32 arithmetic would lose). The CUDA kernels of these ops take float32, float16 and
bfloat16 only, so a cuda build refuses such layers by name. Also Unsqueeze with a scalar axes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import kiln


def _model(op, inputs, opset=21, name="f64_node", **attrs):
    node = helper.make_node(op, list(inputs), ["y"], name=name, **attrs)
    graph_inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for k, v in inputs.items()]
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name="y")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check(op, inputs, rtol=1e-12, atol=1e-12, with_ort=True, with_reference=True, **attrs):
    model = _model(op, inputs, **attrs)
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(inputs)["y"]
    wants = []
    if with_reference:
        wants.append(ReferenceEvaluator(model).run(None, inputs)[0])
    if with_ort:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        wants.append(session.run(None, inputs)[0])
    for want in wants:
        assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return got


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("shape,axis", [((5,), 0), ((3, 4), -1), ((2, 3, 4), 1), ((2, 3, 4, 5), 0)])
def test_float64_softmax_family_matches_the_reference(op, shape, axis):
    rng = np.random.default_rng(len(shape) * 10 + axis)
    x = rng.standard_normal(shape) * 3 + 1e-9 * rng.standard_normal(shape)
    _check(op, {"x": x}, with_ort=op != "Hardmax", axis=axis)  # ONNX Runtime: no float64 Hardmax


def test_float64_softmax_keeps_differences_float32_would_lose():
    x = np.array([[0.0, 1e-12, 2e-12]], np.float64)
    got = _check("Softmax", {"x": x}, rtol=1e-15, atol=0)
    assert got[0, 0] < got[0, 1] < got[0, 2]


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((4,), (4, 3)),
                                             ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (4,)), ((3, 0), (0, 2))])
def test_float64_matmul_matches_the_reference(a_shape, b_shape):
    rng = np.random.default_rng(len(a_shape) * 10 + len(b_shape))
    _check("MatMul", {"a": rng.standard_normal(a_shape), "b": rng.standard_normal(b_shape)})


@pytest.mark.parametrize("trans_a,trans_b,c_shape", [(0, 0, (5,)), (1, 0, (3, 5)), (0, 1, (1, 5)), (1, 1, ())])
def test_float64_gemm_matches_the_reference(trans_a, trans_b, c_shape):
    rng = np.random.default_rng(trans_a * 2 + trans_b)
    a = rng.standard_normal((4, 3) if trans_a else (3, 4))
    b = rng.standard_normal((5, 4) if trans_b else (4, 5))
    _check("Gemm", {"a": a, "b": b, "c": rng.standard_normal(c_shape)}, transA=trans_a, transB=trans_b,
           alpha=0.75, beta=-1.5)


def test_float64_matmul_sums_in_double():
    a = np.array([[1.0, 1e-10, -1.0]], np.float64)
    b = np.array([[1.0], [1.0], [1.0]], np.float64)
    got = _check("MatMul", {"a": a, "b": b}, rtol=1e-15, atol=0)
    assert got[0, 0] != 0.0


@pytest.mark.parametrize("equation,shapes", [("ij,jk->ik", [(3, 4), (4, 2)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
                                             ("i,i", [(5,), (5,)]), ("ij->ji", [(3, 4)]), ("ij->", [(3, 4)])])
def test_float64_einsum_matches_the_reference(equation, shapes):
    rng = np.random.default_rng(len(equation))
    inputs = {f"x{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
    _check("Einsum", inputs, equation=equation)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("attrs", [{"kernel_shape": [2, 2]}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
                                   {"kernel_shape": [2, 3], "dilations": [2, 1], "ceil_mode": 1}])
def test_integer_maxpool_matches_the_reference(dtype, attrs):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(len(attrs))
    x = rng.integers(info.min, info.max, (2, 3, 7, 6), endpoint=True).astype(dtype)
    # The reference pads int8 with NaN and fails; ONNX Runtime is the comparison there.
    _check("MaxPool", {"x": x}, rtol=0, atol=0, with_reference=dtype == np.uint8, **attrs)


def test_integer_maxpool_with_indices_matches_the_reference():
    x = np.random.default_rng(3).integers(0, 255, (1, 2, 5, 5)).astype(np.uint8)
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], name="pool", kernel_shape=[2, 2], storage_order=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, x.shape)],
                              [onnx.ValueInfoProto(name="y"), onnx.ValueInfoProto(name="i")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(got["y"], want[0])
    np.testing.assert_array_equal(got["i"], want[1])


def test_int32_maxpool_is_refused_naming_the_node():
    x = np.zeros((1, 1, 4, 4), np.int32)
    with pytest.raises(kiln.KilnError, match=r"f64_node.*input 0 \(X\) has dtype int32; supported: float32, "
                                             r"float16, bfloat16, int8, uint8"):
        kiln.build_onnx(_model("MaxPool", {"x": x}, kernel_shape=[2, 2]), target="cpu")


@pytest.mark.parametrize("axes,shape", [(0, (1, 3, 4)), (-1, (3, 4, 1)), (2, (3, 4, 1))])
def test_unsqueeze_takes_a_scalar_axes(axes, shape):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    node = helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsq")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                              [onnx.ValueInfoProto(name="y")],
                              initializer=[onnx.numpy_helper.from_array(np.array(axes, np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})["y"]
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.shape == shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op,inputs,attrs", [
    ("Softmax", {"x": np.zeros((2, 3))}, {}),
    ("MatMul", {"a": np.zeros((2, 3)), "b": np.zeros((3, 2))}, {}),
    ("Gemm", {"a": np.zeros((2, 3)), "b": np.zeros((3, 2))}, {}),
    ("MaxPool", {"x": np.zeros((1, 1, 4, 4), np.uint8)}, {"kernel_shape": [2, 2]}),
])
def test_cuda_build_refuses_the_layer_by_name(op, inputs, attrs):
    model = _model(op, inputs, **attrs)
    try:
        engine = kiln.build_onnx(model, target="cuda", cuda_arch=90, allow_host_layers=False)
    except kiln.KilnError as error:
        assert f"layer 'f64_node' (op '{op}')" in str(error) and "; the cuda kernel takes float32" in str(error)
        return
    with pytest.raises(kiln.KilnError, match="built without CUDA"):
        kiln.Engine(engine)
    pytest.skip("this kiln has no CUDA backend, so no list of CUDA kernels to check against")
