"""ai.onnx ops the importer expands into the ops that compute them (src/frontend/onnx/
function_ops.hpp), and LRN, a CPU kernel added beside them. The official backend cases
(tests/onnx_backend) check their values on the cases ONNX ships; here: bad attributes and arities
are errors naming the node, and each runs on models ONNX Runtime (or, where it refuses the case,
the op's definition in numpy) also runs."""

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


def _lrn_reference(x, size, alpha, beta, bias):
    """ONNX's formula in float64: the channel window c - floor((size-1)/2) .. c + ceil((size-1)/2)."""
    x64 = x.astype(np.float64)
    channels = x.shape[1]
    square_sum = np.zeros_like(x64)
    for c in range(channels):
        lo, hi = max(0, c - (size - 1) // 2), min(channels - 1, c + size - 1 - (size - 1) // 2)
        square_sum[:, c] = (x64[:, lo:hi + 1] ** 2).sum(axis=1)
    return (x64 / (bias + alpha / size * square_sum) ** beta).astype(np.float32)


@pytest.mark.parametrize("shape,size", [((2, 7, 5), 4), ((1, 6, 3, 2, 2), 3), ((2, 3, 4, 4), 7), ((1, 9, 3, 3), 5)])
def test_lrn_windows_match_the_definition(shape, size):
    # LRN is a CPU kernel (no composition); even sizes reach one channel further up than down.
    # ONNX Runtime takes only 4-D inputs and odd sizes: compared with it where it can.
    node = helper.make_node("LRN", ["x"], ["y"], name="lrn", size=size, alpha=0.02, beta=0.6, bias=1.5)
    model = _model(node, [_info("x", TensorProto.FLOAT, list(shape))], [_info("y", TensorProto.FLOAT, list(shape))],
                   opset=13)
    x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})["y"]
    np.testing.assert_allclose(got, _lrn_reference(x, size, 0.02, 0.6, 1.5), rtol=1e-5, atol=1e-6)
    if len(shape) == 4 and size % 2 == 1:
        np.testing.assert_allclose(got, run_ort(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)


def test_lrn_without_its_size_is_an_error():
    node = helper.make_node("LRN", ["x"], ["y"], name="lrn")
    model = _model(node, [_info("x", TensorProto.FLOAT, [1, 3, 4, 4])], [_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
                   opset=13)
    with pytest.raises(kiln.KilnError, match=r"lrn.*attribute 'size' is required"):
        kiln.build_onnx(model, target="cpu")
    node = helper.make_node("LRN", ["x"], ["y"], name="lrn", size=0)
    model = _model(node, [_info("x", TensorProto.FLOAT, [1, 3, 4, 4])], [_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
                   opset=13)
    with pytest.raises(kiln.KilnError, match=r"lrn.*attribute 'size' must be >= 1, got 0"):
        kiln.build_onnx(model, target="cpu")


@pytest.mark.parametrize("op,coefficients", [("HannWindow", [0.5, -0.5]), ("HammingWindow", [25 / 46, -21 / 46]),
                                             ("BlackmanWindow", [0.42, -0.5, 0.08])])
@pytest.mark.parametrize("periodic", [0, 1])
def test_windows_follow_their_cosine_sums(op, coefficients, periodic):
    node = helper.make_node(op, ["size"], ["y"], name="window", periodic=periodic, output_datatype=TensorProto.DOUBLE)
    graph = helper.make_graph([node], "g", [], [_info("y", TensorProto.DOUBLE, None)],
                              [helper.make_tensor("size", TensorProto.INT32, [], [10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({})["y"]
    n = np.arange(10)
    period = 10 if periodic else 9
    want = sum(a * np.cos(2 * np.pi * k * n / period) for k, a in enumerate(coefficients))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, atol=1e-6)
