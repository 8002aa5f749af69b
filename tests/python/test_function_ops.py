"""ai.onnx ops the standard defines as functions, which the importer expands into the ops that
compute them (src/frontend/onnx/function_ops.hpp). The official backend cases
(tests/onnx_backend) check their values; here: bad attributes and arities are errors naming the
node, and an expansion runs on a model ONNX Runtime also runs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import kiln
from kiln_testing import run_ort


def _model(node, inputs, outputs, opset=23):
    graph = helper.make_graph([node], "f", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _info(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_an_unknown_loss_reduction_is_an_error_naming_the_node():
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], name="nll", reduction="average")
    model = _model(node, [_info("x", TensorProto.FLOAT, [2, 3]), _info("t", TensorProto.INT64, [2])],
                   [_info("y", TensorProto.FLOAT, [])])
    with pytest.raises(kiln.KilnError, match=r"node 'nll' \(NegativeLogLikelihoodLoss\): reduction 'average'"):
        kiln.build_onnx(model, target="cpu")


def test_rms_normalization_in_another_stash_type_is_refused():
    node = helper.make_node("RMSNormalization", ["x", "s"], ["y"], name="rms", stash_type=11)
    model = _model(node, [_info("x", TensorProto.FLOAT, [2, 4]), _info("s", TensorProto.FLOAT, [4])],
                   [_info("y", TensorProto.FLOAT, [2, 4])])
    with pytest.raises(kiln.KilnError, match=r"node 'rms' \(RMSNormalization\): stash_type 11"):
        kiln.build_onnx(model, target="cpu")


def test_a_loss_without_its_target_is_an_error():
    node = helper.make_node("SoftmaxCrossEntropyLoss", ["x"], ["y"], name="sce")
    model = _model(node, [_info("x", TensorProto.FLOAT, [2, 3])], [_info("y", TensorProto.FLOAT, [])])
    with pytest.raises(kiln.KilnError, match=r"node 'sce' \(SoftmaxCrossEntropyLoss\): takes 2 to 3 inputs, got 1"):
        kiln.build_onnx(model, target="cpu")


def test_weighted_loss_with_ignored_targets_and_log_prob_matches_onnx_runtime():
    rng = np.random.default_rng(4)
    node = helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t", "w"], ["y", "log_prob"], name="sce",
                            reduction="mean", ignore_index=-1)
    model = _model(node, [_info("x", TensorProto.FLOAT, [4, 5, 3]), _info("t", TensorProto.INT64, [4, 3]),
                          _info("w", TensorProto.FLOAT, [5])],
                   [_info("y", TensorProto.FLOAT, []), _info("log_prob", TensorProto.FLOAT, [4, 5, 3])], opset=13)
    feeds = {"x": rng.standard_normal((4, 5, 3)).astype(np.float32),
             "t": np.array([[0, 4, -1], [2, -1, 1], [3, 3, 0], [-1, 1, 2]], dtype=np.int64),
             "w": rng.uniform(0.5, 2.0, 5).astype(np.float32)}
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)
    want = run_ort(model, feeds)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["log_prob"], want["log_prob"], rtol=1e-5, atol=1e-6)


def test_lp_normalization_with_another_p_is_refused():
    node = helper.make_node("LpNormalization", ["x"], ["y"], name="lp", p=3)
    model = _model(node, [_info("x", TensorProto.FLOAT, [2, 4])], [_info("y", TensorProto.FLOAT, [2, 4])], opset=13)
    with pytest.raises(kiln.KilnError, match=r"node 'lp' \(LpNormalization\): p must be 1 or 2, got 3"):
        kiln.build_onnx(model, target="cpu")


@pytest.mark.parametrize("opset", [11, 13])
def test_hardmax_takes_the_first_maximum_in_either_form(opset):
    # Before opset 13 Hardmax works on the input coerced to 2-D at `axis`; from 13 along `axis`.
    node = helper.make_node("Hardmax", ["x"], ["y"], name="hm", axis=1)
    model = _model(node, [_info("x", TensorProto.FLOAT, [2, 3, 4])], [_info("y", TensorProto.FLOAT, [2, 3, 4])],
                   opset=opset)
    x = np.random.default_rng(6).integers(0, 3, size=(2, 3, 4)).astype(np.float32)  # ties included
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})["y"]
    np.testing.assert_array_equal(got, run_ort(model, {"x": x})["y"])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_one_hot_at_every_axis_matches_onnx_runtime(axis):
    # Negative indices counting from depth, out-of-range ones (all off values).
    node = helper.make_node("OneHot", ["i", "depth", "values"], ["y"], name="oh", axis=axis)
    model = _model(node, [_info("i", TensorProto.INT64, [2, 3]), _info("depth", TensorProto.INT64, [1]),
                          _info("values", TensorProto.FLOAT, [2])], [_info("y", TensorProto.FLOAT, None)], opset=11)
    feeds = {"i": np.array([[0, 4, -1], [2, -5, 9]], dtype=np.int64), "depth": np.array([5], dtype=np.int64),
             "values": np.array([-2.0, 3.0], dtype=np.float32)}
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"]
    np.testing.assert_array_equal(got, run_ort(model, feeds)["y"])
