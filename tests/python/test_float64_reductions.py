"""float64 data through Reduce*, CumSum, CumProd, ArgMax/ArgMin and TopK on kiln's CPU backend:
results in double precision against numpy (values that float32 arithmetic would lose). The CUDA
kernels of these ops take no float64 and refuse it at load, naming the layer."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

OPSET = 18


def _model(op, extra_inits=(), extra_inputs=(), outputs=1, shape=(2, 4), **attrs) -> bytes:
    inits = [numpy_helper.from_array(np.asarray(v), name) for name, v in extra_inits]
    node = helper.make_node(op, ["x", *extra_inputs], [f"y{i}" for i in range(outputs)], name=op.lower(), **attrs)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, list(shape))],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.UNDEFINED, None) for i in range(outputs)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()


def _run(model: bytes, x: np.ndarray) -> dict:
    return kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})


# 1e15 + 1 - 1e15 is 1 in double and 0 in float32.
CANCELLING = np.array([[1e15, 1.0, -1e15, 0.25], [3.0, -2.5, 1e-300, 7.0]], np.float64)


@pytest.mark.parametrize("op,reference", [
    ("ReduceSum", lambda x: x.sum(axis=1, keepdims=True)),
    ("ReduceMean", lambda x: x.mean(axis=1, keepdims=True)),
    ("ReduceMax", lambda x: x.max(axis=1, keepdims=True)),
    ("ReduceMin", lambda x: x.min(axis=1, keepdims=True)),
    ("ReduceProd", lambda x: x.prod(axis=1, keepdims=True)),
    ("ReduceSumSquare", lambda x: (x * x).sum(axis=1, keepdims=True)),
    ("ReduceL1", lambda x: np.abs(x).sum(axis=1, keepdims=True)),
    ("ReduceL2", lambda x: np.sqrt((x * x).sum(axis=1, keepdims=True))),
    ("ReduceLogSumExp", lambda x: np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) + x.max(1, keepdims=True)),
])
def test_reductions_keep_double_precision(op, reference):
    x = CANCELLING if op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin") else \
        np.array([[0.5, -1.25, 2.0, 1e-8], [3.0, 1.0 + 1e-12, -0.75, 4.0]], np.float64)
    got = _run(_model(op, [("axes", np.array([1], np.int64))], ["axes"]), x)["y0"]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, reference(x), rtol=1e-14, atol=0)
    if op == "ReduceSum":
        assert got[0, 0] == 1.25  # float32 arithmetic would give 0.25


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_and_cumprod_in_double(exclusive, reverse):
    axis = np.array(1, np.int64)
    for op, scan, identity in [("CumSum", np.cumsum, 0.0), ("CumProd", np.cumprod, 1.0)]:
        x = CANCELLING if op == "CumSum" else np.array([[1.0 + 1e-12, 3.0, 0.5], [2.0, -1e150, 1e150]])
        got = _run(_model(op, [("axis", axis)], ["axis"], shape=x.shape, exclusive=exclusive, reverse=reverse), x)["y0"]
        work = np.flip(x, 1) if reverse else x
        want = scan(work, axis=1)
        if exclusive:
            want = np.concatenate([np.full((x.shape[0], 1), identity), want[:, :-1]], axis=1)
        if reverse:
            want = np.flip(want, 1)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0, err_msg=f"{op} exclusive={exclusive} reverse={reverse}")


def test_argmax_argmin_and_topk_tell_apart_values_float32_merges():
    # 1 + 1e-12 and 1 are the same float32 number.
    x = np.array([[1.0, 1.0 + 1e-12, 0.5, 1.0 - 1e-12]], np.float64)
    assert _run(_model("ArgMax", shape=x.shape, axis=1), x)["y0"].tolist() == [[1]]
    assert _run(_model("ArgMin", shape=x.shape, axis=1), x)["y0"].tolist() == [[2]]
    got = _run(_model("TopK", [("k", np.array([3], np.int64))], ["k"], outputs=2, shape=x.shape, axis=1), x)
    assert got["y0"].dtype == np.float64
    assert got["y0"].tolist() == [[1.0 + 1e-12, 1.0, 1.0 - 1e-12]]
    assert got["y1"].tolist() == [[1, 0, 3]]

