"""Det and ReverseSequence on the CPU (no CUDA kernels yet): Det against numpy's determinant
(batched, singular, pivoting needed, NaN), ReverseSequence against ONNX Runtime in both axis
orders; bad lengths and shapes are errors naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import run_ort


def _run(model, feeds):
    return kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)


def _det_model(shape):
    node = helper.make_node("Det", ["x"], ["y"], name="det")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])


def test_det_matches_numpy():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    x[0, 0] = [[0, 1, 2, 3], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]  # a zero first pivot: rows swap
    x[0, 1] = [[1, 2, 3, 4], [2, 4, 6, 8], [0, 1, 0, 1], [1, 0, 1, 0]]  # singular
    x[1, 2, 1, 1] = np.nan
    got = _run(_det_model([2, 3, 4, 4]), {"x": x})["y"]
    with np.errstate(invalid="ignore"):  # the NaN matrix
        want = np.linalg.det(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(got[1, 2])


def test_det_of_a_non_square_matrix_is_an_error():
    with pytest.raises(kiln.KilnError, match=r"det.*must be square"):
        kiln.build_onnx(_det_model([3, 4]), target="cpu")


def _reverse_model(shape, lens, batch_axis, time_axis):
    node = helper.make_node("ReverseSequence", ["x", "lens"], ["y"], name="reverse", batch_axis=batch_axis,
                            time_axis=time_axis)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
                              [numpy_helper.from_array(np.asarray(lens, dtype=np.int64), "lens")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])


@pytest.mark.parametrize("batch_axis,time_axis", [(1, 0), (0, 1)])
def test_reverse_sequence_matches_onnx_runtime(batch_axis, time_axis):
    shape = [5, 4, 3] if batch_axis == 1 else [4, 5, 3]
    model = _reverse_model(shape, [5, 0, 3, 1], batch_axis, time_axis)
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(_run(model, {"x": x})["y"], run_ort(model, {"x": x})["y"])


def test_a_sequence_longer_than_the_time_axis_is_an_error():
    model = _reverse_model([3, 2], [4, 1], 1, 0)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"reverse.*sequence_lens\[0\] = 4 is outside \[0, 3\]"):
        engine.run({"x": np.zeros((3, 2), np.float32)})


def test_reverse_sequence_axes_must_be_0_and_1():
    with pytest.raises(kiln.KilnError, match=r"reverse.*batch_axis and time_axis must be 0 and 1 in some order, got 1 and 1"):
        kiln.build_onnx(_reverse_model([3, 2], [1, 1], 1, 1), target="cpu")
