"""GridSample on the CPU (no CUDA kernel yet) against PyTorch's grid_sample, which ONNX's definition
follows: 2-D and 3-D, every mode and padding mode, both align_corners, with grid points inside,
on the edges and well outside the image; and its errors name the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import kiln

TORCH_MODE = {"linear": "bilinear", "nearest": "nearest", "cubic": "bicubic"}


def _model(x_shape, grid_shape, opset=22, **attrs):
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="sample", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape),
                                            helper.make_tensor_value_info("grid", TensorProto.FLOAT, grid_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


# Cubic takes 2-D images only (PyTorch's bicubic too).
@pytest.mark.parametrize("spatial,mode", [(2, "linear"), (2, "nearest"), (2, "cubic"), (3, "linear"), (3, "nearest")])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_matches_pytorch(spatial, mode, padding, align):
    rng = np.random.default_rng(spatial * 100 + align)
    x_shape = [2, 3, 5, 6] if spatial == 2 else [2, 3, 4, 5, 3]
    out = [4, 7] if spatial == 2 else [3, 4, 2]
    grid_shape = [2, *out, spatial]
    x = rng.standard_normal(x_shape).astype(np.float32)
    # Inside, on the corners and outside [-1, 1], where the padding modes differ.
    grid = rng.uniform(-1.7, 1.7, grid_shape).astype(np.float32)
    grid.reshape(-1, spatial)[:4] = [[-1] * spatial, [1] * spatial, [0.999] * spatial, [-1.0001] * spatial]
    model = _model(x_shape, grid_shape, mode=mode, padding_mode=padding, align_corners=align)
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x, "grid": grid})["y"]
    want = torch.nn.functional.grid_sample(torch.from_numpy(x).double(), torch.from_numpy(grid).double(),
                                           mode=TORCH_MODE[mode], padding_mode=padding,
                                           align_corners=bool(align)).float().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_opset_16_names_of_the_modes_are_accepted():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    grid = np.zeros((1, 1, 1, 2), dtype=np.float32)
    for mode in ("bilinear", "bicubic"):
        model = _model([1, 1, 4, 4], [1, 1, 1, 2], opset=16, mode=mode, align_corners=1)
        got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x, "grid": grid})["y"]
        np.testing.assert_allclose(got.ravel(), [7.5], rtol=1e-6)  # the centre of a 4x4 ramp


def test_bad_modes_and_shapes_are_errors_naming_the_node():
    with pytest.raises(kiln.KilnError, match=r"sample.*attribute 'mode' must be linear, nearest or cubic, got 'area'"):
        kiln.build_onnx(_model([1, 1, 4, 4], [1, 2, 2, 2], mode="area"), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"sample.*grid's last dim must be 2"):
        kiln.build_onnx(_model([1, 1, 4, 4], [1, 2, 2, 3]), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"sample.*cubic interpolation takes 2-D images"):
        kiln.build_onnx(_model([1, 1, 4, 4, 4], [1, 2, 2, 2, 3], mode="cubic"), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"sample.*'padding_mode' must be zeros, border or reflection, got 'wrap'"):
        kiln.build_onnx(_model([1, 1, 4, 4], [1, 2, 2, 2], padding_mode="wrap"), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"sample.*'align_corners' must be 0 or 1, got 2"):
        kiln.build_onnx(_model([1, 1, 4, 4], [1, 2, 2, 2], align_corners=2), target="cpu")


@pytest.mark.parametrize("theta_shape,size,expected", [
    ([2, 2, 4], [2, 3, 5, 6], r"theta\) must be \[N, 2, 3\]"),
    ([2, 2, 3], [2, 3, 5], r"size\) must hold 4 .* or 5"),
    ([3, 2, 3], [2, 3, 5, 6], r"size\) has batch 2 but theta has 3"),
])
def test_affine_grid_errors_name_the_node(theta_shape, size, expected):
    node = helper.make_node("AffineGrid", ["theta", "size"], ["grid"], name="affine")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("theta", TensorProto.FLOAT, theta_shape)],
                              [helper.make_tensor_value_info("grid", TensorProto.FLOAT, None)],
                              [helper.make_tensor("size", TensorProto.INT64, [len(size)], size)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    with pytest.raises(kiln.KilnError, match="affine.*" + expected):
        kiln.build_onnx(model, target="cpu")


@pytest.mark.parametrize("spatial", [2, 3])
@pytest.mark.parametrize("align", [0, 1])
@pytest.mark.parametrize("size_is_an_input", [False, True])
def test_affine_grid_matches_pytorch_and_feeds_grid_sample(spatial, align, size_is_an_input):
    # AffineGrid's size is a value input: a constant gives the grid a static shape, a graph input
    # one known once the input is (the CPU computes it while propagating shapes).
    rng = np.random.default_rng(11 + spatial)
    size = np.array([2, 3, 5, 6] if spatial == 2 else [2, 3, 4, 5, 2], dtype=np.int64)
    theta = rng.uniform(-1, 1, (2, spatial, spatial + 1)).astype(np.float32)
    nodes = [helper.make_node("AffineGrid", ["theta", "size"], ["grid"], name="affine", align_corners=align),
             helper.make_node("GridSample", ["x", "grid"], ["y"], name="sample", align_corners=align)]
    inputs = [helper.make_tensor_value_info("theta", TensorProto.FLOAT, list(theta.shape)),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, *map(int, size[2:])])]
    inits = []
    if size_is_an_input:
        inputs.append(helper.make_tensor_value_info("size", TensorProto.INT64, [len(size)]))
    else:
        inits.append(helper.make_tensor("size", TensorProto.INT64, [len(size)], size.tolist()))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("grid", TensorProto.FLOAT, None),
                                                   helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    x = rng.standard_normal((2, 3, *size[2:])).astype(np.float32)
    feeds = {"theta": theta, "x": x, **({"size": size} if size_is_an_input else {})}
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)
    want_grid = torch.nn.functional.affine_grid(torch.from_numpy(theta).double(), size.tolist(),
                                                align_corners=bool(align))
    np.testing.assert_allclose(got["grid"], want_grid.float().numpy(), rtol=1e-5, atol=1e-6)
    want_y = torch.nn.functional.grid_sample(torch.from_numpy(x).double(), want_grid, align_corners=bool(align))
    np.testing.assert_allclose(got["y"], want_y.float().numpy(), rtol=1e-5, atol=1e-5)
