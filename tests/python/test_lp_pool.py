"""LpPool on the CPU: against ONNX Runtime over p, kernel shapes, strides, pads, auto_pad, dilations
and ceil_mode in 1-D, 2-D and 3-D; against eager PyTorch's lp_pool1d/lp_pool2d (which equal ONNX's
LpPool for non-negative inputs without padding; torch.onnx.export writes them as Pow/AveragePool,
not LpPool, so the kiln side is a LpPool node); and its errors name the node and the attribute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import kiln
from kiln_testing import run_kiln, run_ort


def lp_pool_model(x_shape, opset=22, **attrs):
    node = helper.make_node("LpPool", ["x"], ["y"], name="lp_node", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


CASES = [
    ((1, 3, 17), dict(kernel_shape=[3], p=3)),
    ((2, 2, 16), dict(kernel_shape=[4], p=1, strides=[3], pads=[1, 2])),
    ((2, 3, 11, 10), dict(kernel_shape=[2, 2], p=2)),
    ((2, 3, 11, 10), dict(kernel_shape=[3, 2], p=4, strides=[2, 3], pads=[1, 0, 2, 1])),
    ((1, 2, 9, 9), dict(kernel_shape=[3, 3], p=2, auto_pad="SAME_UPPER", strides=[2, 2])),
    ((1, 2, 9, 8), dict(kernel_shape=[2, 3], p=3, auto_pad="SAME_LOWER")),
    ((1, 2, 9, 8), dict(kernel_shape=[2, 3], p=2, auto_pad="VALID", strides=[2, 1])),
    ((1, 2, 10, 10), dict(kernel_shape=[2, 2], p=2, dilations=[2, 3])),
    ((1, 2, 10, 11), dict(kernel_shape=[3, 3], p=2, strides=[2, 2], ceil_mode=1)),
    ((1, 2, 6, 7, 5), dict(kernel_shape=[2, 3, 2], p=3, strides=[1, 2, 2], pads=[0, 1, 1, 1, 0, 0])),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_lp_pool_matches_onnxruntime(case):
    shape, attrs = CASES[case]
    x = np.random.default_rng(case).standard_normal(shape).astype(np.float32)
    model = lp_pool_model(list(shape), **attrs)
    want = run_ort(model, {"x": x})["y"]
    got = run_kiln(model, {"x": x}, target="cpu")["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p,kernel,stride", [(2, 2, 2), (3, 3, 1), (1, 2, 3)])
def test_lp_pool_matches_eager_pytorch(p, kernel, stride):
    x = np.random.default_rng(p).uniform(0.0, 2.0, (2, 3, 9, 8)).astype(np.float32)
    want = torch.nn.functional.lp_pool2d(torch.from_numpy(x), p, kernel, stride).numpy()
    got = run_kiln(lp_pool_model(list(x.shape), kernel_shape=[kernel] * 2, strides=[stride] * 2, p=p),
                   {"x": x}, target="cpu")["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    x1 = x.reshape(2, 3, 72)
    want1 = torch.nn.functional.lp_pool1d(torch.from_numpy(x1), p, kernel, stride).numpy()
    got1 = run_kiln(lp_pool_model(list(x1.shape), kernel_shape=[kernel], strides=[stride], p=p),
                    {"x": x1}, target="cpu")["y"]
    np.testing.assert_allclose(got1, want1, rtol=1e-5, atol=1e-6)


def test_lp_pool_of_an_older_opset_runs():
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    model = lp_pool_model([1, 2, 6, 6], opset=11, kernel_shape=[2, 2], p=2, strides=[2, 2])
    np.testing.assert_allclose(run_kiln(model, {"x": x}, target="cpu")["y"], run_ort(model, {"x": x})["y"], rtol=1e-5)


def test_bad_attributes_are_errors_naming_node_and_attribute():
    with pytest.raises(kiln.KilnError, match=r"lp_node.*attribute 'p' must be >= 1, got 0"):
        kiln.build_onnx(lp_pool_model([1, 1, 4, 4], kernel_shape=[2, 2], p=0), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"lp_node.*missing required attribute 'kernel_shape'"):
        kiln.build_onnx(lp_pool_model([1, 1, 4, 4], p=2), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"lp_node.*attribute 'strides' must have 2 entries"):
        kiln.build_onnx(lp_pool_model([1, 1, 4, 4], kernel_shape=[2, 2], strides=[1]), target="cpu")
