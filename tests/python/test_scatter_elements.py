"""ScatterElements (and opset 9-10's Scatter, its old name) on the CPU against ONNX Runtime: every
reduction, negative indices, an axis that is not the last, index tensors smaller than data; and
out-of-range indices are errors naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import run_ort


def _model(op, data_shape, indices, opset=18, **attrs):
    node = helper.make_node(op, ["data", "indices", "updates"], ["y"], name="scatter", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, data_shape),
                                            helper.make_tensor_value_info("updates", TensorProto.FLOAT, indices.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, data_shape)],
                              [numpy_helper.from_array(indices, "indices")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_scatter_elements_matches_onnx_runtime(reduction, axis):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((4, 5, 3)).astype(np.float32)
    size, axis_n = data.shape[axis], axis % 3
    shape = [3, 4, 2]
    # Distinct positions along the axis in each line (ONNX leaves the order of duplicates open for
    # "none"), a third of them written as negative indices.
    lines = [rng.permutation(size)[:shape[axis_n]] for _ in range(int(np.prod(shape)) // shape[axis_n])]
    other = [s for i, s in enumerate(shape) if i != axis_n]
    indices = np.moveaxis(np.stack(lines).reshape(other + [shape[axis_n]]), -1, axis_n)
    indices = np.where(rng.random(indices.shape) < 0.3, indices - size, indices).astype(np.int64)
    updates = rng.standard_normal(indices.shape).astype(np.float32)
    model = _model("ScatterElements", list(data.shape), indices, axis=axis, reduction=reduction)
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"data": data, "updates": updates})["y"]
    np.testing.assert_allclose(got, run_ort(model, {"data": data, "updates": updates})["y"], rtol=1e-6)


def test_old_scatter_is_scatter_elements():
    data = np.zeros((3, 3), dtype=np.float32)
    indices = np.array([[1, 0, 2], [0, 2, 1]], dtype=np.int64)
    updates = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = _model("Scatter", [3, 3], indices, opset=10, axis=0)
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"data": data, "updates": updates})["y"]
    np.testing.assert_array_equal(got, run_ort(model, {"data": data, "updates": updates})["y"])


def test_an_index_out_of_range_is_an_error():
    indices = np.array([[3]], dtype=np.int64)
    model = _model("ScatterElements", [3, 3], indices)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"scatter.*index 3 .* out of range for axis 0 of size 3"):
        engine.run({"data": np.zeros((3, 3), np.float32), "updates": np.ones((1, 1), np.float32)})


def test_updates_not_shaped_like_the_indices_are_an_error():
    node = helper.make_node("ScatterElements", ["data", "indices", "updates"], ["y"], name="scatter")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [3, 3]),
                                            helper.make_tensor_value_info("updates", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3])],
                              [numpy_helper.from_array(np.zeros((1, 3), dtype=np.int64), "indices")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(kiln.KilnError, match=r"scatter.*updates has shape \[2, 2\] but indices has \[1, 3\]"):
        kiln.build_onnx(model, target="cpu")
